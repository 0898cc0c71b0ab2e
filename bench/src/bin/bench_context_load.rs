//! `make bench-context-load`: AssembleContext under an open-loop load.
//!
//! Calls are started at a fixed rate whatever happened to the earlier ones (open loop: a slow
//! server does not slow the offered load down, as it would with N callers in a loop), against the
//! 100k-memory database of `bench-sidecar`. Each call is classified: ok, degraded
//! (directive-only), shed (RESOURCE_EXHAUSTED at admission) or error.
//!
//! Every call's question is new (a dataset query followed by a call number), as the next user
//! message of a real conversation is: each call pays its query embedding. Repeated questions would
//! be served from the embedding cache and measure only the cheap path.
//!
//! 1. Capacity: the highest rate whose admitted calls have p99 <= 40 ms with <= 1% degraded and
//!    <= 1% shed, found by doubling then bisecting with short probes (bounded count; a rate is
//!    beyond capacity only when two probes miss).
//! 2. Steps of `IBEX_BENCH_STEP_SECONDS` (30) at 50%, 100%, 150% and 300% of capacity: offered
//!    rate, goodput (non-degraded contexts per second), p50/p99 of admitted calls, counts.
//!
//! Ends with `BENCH context_capacity_per_core`, `BENCH context_goodput_ratio_300` (goodput at
//! 300% over goodput at 100%) and `BENCH context_degraded_share_at_capacity`.
//!
//! Environment (scripts/bench-sidecar.sh sets it): IBEX_BENCH_URL_100K, IBEX_BENCH_GRPC.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use ibex_bench::context::{agent_queries, setup, Setup, AGENTS};
use ibex_bench::dataset::Rng;
use ibex_bench::report::{machine, verdict};
use ibex_bench::stats::Samples;
use ibex_sidecar::grpc::proto::context::v1 as pb;
use pb::context_service_client::ContextServiceClient;
use tokio::sync::Mutex;
use tonic::transport::Channel;

const P99_LIMIT_MS: f64 = 40.0;
const SHARE_LIMIT: f64 = 0.01;
const PROBE: Duration = Duration::from_secs(5);
const MAX_PROBES: usize = 12;

#[derive(Default)]
struct Step {
    offered: f64,
    seconds: f64,
    admitted: Samples,
    ok: usize,
    degraded: usize,
    shed: usize,
    errors: usize,
}

impl Step {
    fn calls(&self) -> usize {
        self.ok + self.degraded + self.shed + self.errors
    }
    fn share(&self, n: usize) -> f64 {
        n as f64 / self.calls().max(1) as f64
    }
    fn goodput(&self) -> f64 {
        self.ok as f64 / self.seconds
    }
    fn within_target(&self) -> bool {
        self.admitted.p99() <= P99_LIMIT_MS
            && self.share(self.degraded) <= SHARE_LIMIT
            && self.share(self.shed) <= SHARE_LIMIT
            && self.errors == 0
    }
}

enum Outcome {
    Ok(Duration),
    Degraded(Duration),
    Shed,
    Error(String),
}

struct Load {
    client: ContextServiceClient<Channel>,
    setup: Setup,
    queries: Vec<Vec<String>>,
    /// Numbers every call's question, so that no two calls ask the same thing.
    calls: AtomicU64,
}

impl Load {
    async fn call(&self, agent: usize, query: usize, call: u64) -> Outcome {
        let question = format!("{} (question {call})", self.queries[agent][query]);
        let request = match self.setup.request(agent, &question) {
            Ok(r) => r,
            Err(e) => return Outcome::Error(e.to_string()),
        };
        let started = Instant::now();
        match self.client.clone().assemble_context(request).await {
            Ok(r) if r.get_ref().degraded => Outcome::Degraded(started.elapsed()),
            Ok(_) => Outcome::Ok(started.elapsed()),
            Err(s) if s.code() == tonic::Code::ResourceExhausted => Outcome::Shed,
            Err(s) => Outcome::Error(s.to_string()),
        }
    }

    /// Offers `rate` calls per second for `length`, then waits for the stragglers.
    async fn run(self: &Arc<Self>, rate: f64, length: Duration, seed: u64) -> Step {
        let step = Arc::new(Mutex::new(Step {
            offered: rate,
            seconds: length.as_secs_f64(),
            ..Step::default()
        }));
        let mut rng = Rng::new(seed);
        let total = (rate * length.as_secs_f64()).round() as usize;
        let start = tokio::time::Instant::now();
        let mut tasks = Vec::with_capacity(total);
        for i in 0..total {
            tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / rate)).await;
            let agent = rng.below(AGENTS);
            let query = rng.below(self.queries[agent].len());
            let call = self.calls.fetch_add(1, Ordering::Relaxed);
            let (load, step) = (Arc::clone(self), Arc::clone(&step));
            tasks.push(tokio::spawn(async move {
                let outcome = load.call(agent, query, call).await;
                let mut s = step.lock().await;
                match outcome {
                    Outcome::Ok(took) => {
                        s.ok += 1;
                        s.admitted.push(took);
                    }
                    Outcome::Degraded(took) => {
                        s.degraded += 1;
                        s.admitted.push(took);
                    }
                    Outcome::Shed => s.shed += 1,
                    Outcome::Error(e) => {
                        if s.errors == 0 {
                            eprintln!("bench-context-load: error: {e}");
                        }
                        s.errors += 1;
                    }
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
        match Arc::try_unwrap(step) {
            Ok(step) => step.into_inner(),
            Err(_) => unreachable!("every task holding the step has finished"),
        }
    }
}

fn line(name: &str, s: &Step) -> String {
    format!(
        "  {name:<6} {:>8.1} {:>9.1} {:>8.2} {:>8.2} {:>7} {:>6} {:>8} {:>6}",
        s.offered,
        s.goodput(),
        s.admitted.p50(),
        s.admitted.p99(),
        s.calls(),
        s.shed,
        s.degraded,
        s.errors
    )
}

/// Doubling from a low rate until a probe misses the target, then bisection; bounded probes.
async fn find_capacity(load: &Arc<Load>) -> f64 {
    let (mut good, mut bad) = (0.0f64, f64::INFINITY);
    let mut rate = 20.0;
    for probe in 0..MAX_PROBES {
        let mut step = load.run(rate, PROBE, 100 + probe as u64).await;
        if !step.within_target() {
            // One noisy probe (a checkpoint, a page read) must not set the capacity: a rate is
            // beyond only when a second probe misses too.
            step = load.run(rate, PROBE, 200 + probe as u64).await;
        }
        let ok = step.within_target();
        eprintln!(
            "bench-context-load: probe {rate:.0}/s: p99 {:.1} ms, degraded {:.1}%, shed {:.1}% -> {}",
            step.admitted.p99(),
            100.0 * step.share(step.degraded),
            100.0 * step.share(step.shed),
            if ok { "within" } else { "beyond" }
        );
        if ok {
            good = rate;
        } else {
            bad = rate;
        }
        rate = if bad.is_infinite() {
            rate * 2.0
        } else {
            (good + bad) / 2.0
        };
        if bad.is_finite() && bad - good <= (good * 0.1).max(5.0) {
            break;
        }
    }
    good.max(1.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("IBEX_BENCH_URL_100K").context("IBEX_BENCH_URL_100K (run `make bench-context-load`)")?;
    let grpc = std::env::var("IBEX_BENCH_GRPC").context("IBEX_BENCH_GRPC (run `make bench-context-load`)")?;
    let step_length = Duration::from_secs(
        std::env::var("IBEX_BENCH_STEP_SECONDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(30),
    );
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    println!("bench-context-load: AssembleContext, open loop (fixed offered rate), 100k memories");
    println!("machine: {}", machine());
    let setup = setup(&url).await?;
    let client = ContextServiceClient::connect(format!("http://{grpc}")).await?;
    let load = Arc::new(Load {
        client,
        setup,
        queries: (0..AGENTS).map(agent_queries).collect(),
        calls: AtomicU64::new(0),
    });
    // Warm-up: connections, token cache, directive cache, the index pages in shared buffers.
    load.run(20.0, Duration::from_secs(6), 1).await;

    let capacity = find_capacity(&load).await;
    println!(
        "inputs: capacity {capacity:.0} calls/s ({:.1} per core, {cores} cores); steps of {} s",
        capacity / cores as f64,
        step_length.as_secs()
    );
    println!(
        "\n  {:<6} {:>8} {:>9} {:>8} {:>8} {:>7} {:>6} {:>8} {:>6}",
        "load", "offered", "goodput", "p50 ms", "p99 ms", "calls", "shed", "degraded", "errors"
    );
    let mut steps = Vec::new();
    for (name, factor) in [("50%", 0.5), ("100%", 1.0), ("150%", 1.5), ("300%", 3.0)] {
        let step = load.run(capacity * factor, step_length, 7 + steps.len() as u64).await;
        println!("{}", line(name, &step));
        steps.push(step);
    }
    let at_capacity = &steps[1];
    let ratio = steps[3].goodput() / at_capacity.goodput().max(f64::MIN_POSITIVE);
    let degraded_share = at_capacity.share(at_capacity.degraded);
    let worst_p99 = steps.iter().map(|s| s.admitted.p99()).fold(0.0, f64::max);
    let degraded_ok = steps[..2].iter().all(|s| s.share(s.degraded) <= SHARE_LIMIT);
    println!(
        "{}",
        verdict(
            "degraded <= 1% up to capacity",
            degraded_ok,
            format!("{:.2}% at capacity", 100.0 * degraded_share)
        )
    );
    println!(
        "{}",
        verdict(
            "goodput at 300% >= 0.9x goodput at capacity",
            ratio >= 0.9,
            format!("{ratio:.3}x")
        )
    );
    println!(
        "{}",
        verdict(
            "admitted p99 <= 40 ms at every step",
            worst_p99 <= P99_LIMIT_MS,
            format!("worst {worst_p99:.2} ms")
        )
    );
    println!("BENCH context_capacity_per_core {:.2}", capacity / cores as f64);
    println!("BENCH context_goodput_ratio_300 {ratio:.3}");
    println!("BENCH context_degraded_share_at_capacity {degraded_share:.4}");
    Ok(())
}
