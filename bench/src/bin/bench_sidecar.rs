//! `make bench-sidecar`: the sidecar as a client sees it.
//!
//! 1. AssembleContext over gRPC against 100k memories (100 agents x 1,000, the database
//!    `make bench-memory` seeds), one call in flight, each a 4-message conversation whose last
//!    user message is a question about the agent's people. Client-side latency p50/p95/p99, the
//!    share of degraded answers, and the server's own per-source timings.
//! 2. Single-text embedding over HTTP (`POST /v1/embed`): on a miss (texts never seen), against
//!    in-process inference of the same texts in this process (the same model files, one thread,
//!    as each of the server's model instances), alternating text by text so both see the same
//!    machine state; then on a hit (the same texts again).
//! 3. Embedding cache hit rate on a replay shaped like extraction: per session, at every turn the
//!    agent's recent memories (up to 20) are embedded again together with two candidate facts,
//!    a third of which repeat a memory the agent already has. Texts carry a run id, so nothing
//!    cached by an earlier run counts.
//!
//! Environment (scripts/bench-sidecar.sh sets it): IBEX_BENCH_URL_100K (superuser URL of the
//! seeded database), IBEX_BENCH_GRPC and IBEX_BENCH_HTTP (the sidecar under test),
//! IBEX_MODEL_DIR and IBEX_ORT_LIB (for in-process inference), IBEX_BENCH_CALLS (default 300),
//! IBEX_BENCH_EMBED_TEXTS (default 200).

use std::time::Instant;

use anyhow::{bail, Context};
use ibex_bench::context::{agent_queries, setup, Setup, AGENTS, MODEL, PER_AGENT};
use ibex_bench::dataset::Rng;
use ibex_bench::report::{machine, verdict, Figures};
use ibex_bench::stats::Samples;
use ibex_engine::{Embedder, EmbedderConfig};
use ibex_sidecar::grpc::proto::context::v1 as pb;
use pb::context_service_client::ContextServiceClient;
use serde_json::{json, Value};
use uuid::Uuid;

const WARMUP_CALLS: usize = 30;

fn env(name: &str) -> anyhow::Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set (run through `make bench-sidecar`)"))
}

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[derive(Default)]
struct AssembleStats {
    client: Samples,
    server: Samples,
    hot: Samples,
    cold: Samples,
    directive: Samples,
    degraded: usize,
    reasons: Vec<String>,
    memories: usize,
}

async fn assemble_bench(grpc: &str, s: &Setup, calls: usize) -> anyhow::Result<AssembleStats> {
    let mut client = ContextServiceClient::connect(format!("http://{grpc}")).await?;
    let queries: Vec<Vec<String>> = (0..AGENTS).map(agent_queries).collect();
    let mut rng = Rng::new(4242);
    let mut stats = AssembleStats::default();
    for i in 0..WARMUP_CALLS + calls {
        let a = rng.below(AGENTS);
        let q = &queries[a][rng.below(queries[a].len())];
        let request = s.request(a, q)?;
        let started = Instant::now();
        let r = client.assemble_context(request).await?.into_inner();
        let took = started.elapsed();
        if i < WARMUP_CALLS {
            continue;
        }
        stats.client.push(took);
        stats.server.0.push(r.total_millis);
        for t in &r.timings {
            match t.name.as_str() {
                "hot" => stats.hot.0.push(t.millis),
                "cold" => stats.cold.0.push(t.millis),
                "directive" => stats.directive.0.push(t.millis),
                _ => {}
            }
        }
        stats.memories += r.memories.len();
        if r.degraded {
            stats.degraded += 1;
            if stats.reasons.len() < 3 {
                stats.reasons.push(r.degraded_reason);
            }
        }
    }
    Ok(stats)
}

/// A fact-like text of memory length, unique to this run.
fn fact(run: &str, i: usize) -> String {
    let subjects = [
        "The user",
        "Priya",
        "Dr. Okafor",
        "The billing team",
        "Grandma",
        "Our customer in Lisbon",
    ];
    let facts = [
        "prefers short answers with the numbers first",
        "moved the weekly planning meeting to Thursday afternoon",
        "is allergic to peanuts and avoids restaurants that cannot guarantee it",
        "keeps the spare office key in the blue drawer",
        "wants invoices sent as PDF before the fifth of each month",
        "reads science fiction on the train to work",
    ];
    format!(
        "{} {} (note {i}, run {run}).",
        subjects[i % subjects.len()],
        facts[(i / subjects.len()) % facts.len()]
    )
}

struct EmbedStats {
    miss: Samples,
    inproc: Samples,
    hit: Samples,
}

/// The sidecar's count of embedding cache hits (`ibex_embed_cache_hits_total`): the answers do not
/// say which texts were hits.
async fn cache_hits(client: &reqwest::Client, http: &str) -> anyhow::Result<u64> {
    let page = client
        .get(format!("http://{http}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    page.lines()
        .find_map(|line| line.strip_prefix("ibex_embed_cache_hits_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v as u64)
        .context("ibex_embed_cache_hits_total not in /metrics")
}

async fn embed_bench(http: &str, token: &str, run: &str, texts: usize) -> anyhow::Result<EmbedStats> {
    let embedder = {
        let config = EmbedderConfig::new(env("IBEX_MODEL_DIR")?, env("IBEX_ORT_LIB")?);
        tokio::task::spawn_blocking(move || Embedder::load(&config)).await??
    };
    let client = reqwest::Client::new();
    let url = format!("http://{http}/v1/embed");
    let post = |text: String| {
        let request = client.post(&url).bearer_auth(token).json(&json!({ "text": text }));
        async move {
            let started = Instant::now();
            let response = request.send().await?;
            let status = response.status();
            let body: Value = response.json().await?;
            let took = started.elapsed();
            if !status.is_success() {
                bail!("POST /v1/embed answered {status}: {body}");
            }
            Ok::<_, anyhow::Error>(took)
        }
    };
    // Warm both paths (connection, allocations, the first inference of each instance).
    for i in 0..20 {
        post(fact(run, 1_000_000 + i)).await?;
        embedder.embed(&fact(run, 2_000_000 + i))?;
    }
    let mut stats = EmbedStats {
        miss: Samples::default(),
        inproc: Samples::default(),
        hit: Samples::default(),
    };
    let all: Vec<String> = (0..texts).map(|i| fact(run, 3_000_000 + i)).collect();
    let before = cache_hits(&client, http).await?;
    for text in &all {
        stats.miss.push(post(text.clone()).await?);
        let started = Instant::now();
        embedder.embed(text)?;
        stats.inproc.push(started.elapsed());
    }
    if cache_hits(&client, http).await? != before {
        bail!("a text never sent before was a cache hit");
    }
    for text in &all {
        stats.hit.push(post(text.clone()).await?);
    }
    if cache_hits(&client, http).await? != before + all.len() as u64 {
        bail!("a text sent moments ago was not cached (is Redis up for the sidecar?)");
    }
    Ok(stats)
}

struct Replay {
    sessions: usize,
    turns: usize,
    texts: usize,
    hits: usize,
}

/// Extraction-shaped traffic through `POST /v1/embed/batch` (see the module docs).
async fn replay(http: &str, token: &str, run: &str) -> anyhow::Result<Replay> {
    const SESSIONS: usize = 40;
    const TURNS: usize = 12;
    const RECENT: usize = 20;
    const CANDIDATES: usize = 2;
    let client = reqwest::Client::new();
    let url = format!("http://{http}/v1/embed/batch");
    let mut rng = Rng::new(7);
    let mut out = Replay {
        sessions: SESSIONS,
        turns: SESSIONS * TURNS,
        texts: 0,
        hits: 0,
    };
    let mut next_fact = 0usize;
    let before = cache_hits(&client, http).await?;
    for session in 0..SESSIONS {
        let mut memories: Vec<String> = Vec::new();
        for _ in 0..TURNS {
            let mut batch: Vec<String> = memories.iter().rev().take(RECENT).cloned().collect();
            for _ in 0..CANDIDATES {
                // A third of the candidates restate something the agent already knows.
                if !memories.is_empty() && rng.below(3) == 0 {
                    batch.push(rng.pick(&memories).clone());
                } else {
                    let text = fact(&format!("{run}-s{session}"), next_fact);
                    next_fact += 1;
                    batch.push(text.clone());
                    memories.push(text);
                }
            }
            out.texts += batch.len();
            let response = client
                .post(&url)
                .bearer_auth(token)
                .json(&json!({ "texts": batch }))
                .send()
                .await?;
            let status = response.status();
            let body: Value = response.json().await?;
            if !status.is_success() {
                bail!("POST /v1/embed/batch answered {status}: {body}");
            }
        }
    }
    out.hits = (cache_hits(&client, http).await? - before) as usize;
    Ok(out)
}

fn row(name: &str, s: &Samples) -> String {
    format!(
        "  {name:<44} {:>8.2} {:>8.2} {:>8.2} {:>7}",
        s.p50(),
        s.p95(),
        s.p99(),
        s.len()
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let url = env("IBEX_BENCH_URL_100K")?;
    let grpc = env("IBEX_BENCH_GRPC")?;
    let http = env("IBEX_BENCH_HTTP")?;
    let calls = env_usize("IBEX_BENCH_CALLS", 300);
    let embed_texts = env_usize("IBEX_BENCH_EMBED_TEXTS", 200);
    let run = Uuid::new_v4().simple().to_string()[..8].to_string();

    println!("bench-sidecar: AssembleContext over gRPC, the embedding API over HTTP, the embedding cache");
    println!("machine: {}", machine());
    println!(
        "inputs: {AGENTS} agents x {PER_AGENT} memories (100k) with one directive each; model {MODEL}; \
         {calls} AssembleContext calls after {WARMUP_CALLS} warm-up, one in flight; {embed_texts} embedding texts; run {run}"
    );
    let s = setup(&url).await?;
    let started = Instant::now();
    let a = assemble_bench(&grpc, &s, calls).await?;
    eprintln!(
        "bench-sidecar: assemble done in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let e = embed_bench(&http, &s.token, &run, embed_texts).await?;
    let r = replay(&http, &s.token, &run).await?;
    let hit_rate = r.hits as f64 / r.texts.max(1) as f64;
    let degraded_rate = a.degraded as f64 / a.client.len().max(1) as f64;

    println!(
        "\n  {:<44} {:>8} {:>8} {:>8} {:>7}",
        "latency (ms)", "p50", "p95", "p99", "n"
    );
    println!("{}", row("AssembleContext, client (gRPC round trip)", &a.client));
    println!("{}", row("  server: whole assembly", &a.server));
    println!("{}", row("  server: directive", &a.directive));
    println!("{}", row("  server: hot (Redis)", &a.hot));
    println!(
        "{}",
        row("  server: cold (query embedding + search_by_vector)", &a.cold)
    );
    println!("{}", row("embedding, HTTP POST /v1/embed, miss", &e.miss));
    println!("{}", row("embedding, in-process, same texts", &e.inproc));
    println!("{}", row("embedding, HTTP POST /v1/embed, hit", &e.hit));
    println!(
        "  degraded answers: {} of {} ({:.1}%){}",
        a.degraded,
        a.client.len(),
        100.0 * degraded_rate,
        if a.reasons.is_empty() {
            String::new()
        } else {
            format!("; e.g. {}", a.reasons.join(" | "))
        }
    );
    println!(
        "  memories per context: {:.1}",
        a.memories as f64 / a.client.len().max(1) as f64
    );
    println!(
        "  cache replay: {} sessions, {} turns, {} texts embedded, {} hits",
        r.sessions, r.turns, r.texts, r.hits
    );
    let ratio = e.miss.p50() / e.inproc.p50();
    println!(
        "{}",
        verdict(
            "AssembleContext p99 <= 25 ms (100k)",
            a.client.p99() <= 25.0,
            format!("{:.2} ms", a.client.p99())
        )
    );
    println!(
        "{}",
        verdict(
            "embedding miss p50 <= 1.2x in-process",
            ratio <= 1.2,
            format!("{ratio:.3}x")
        )
    );
    println!(
        "{}",
        verdict(
            "embedding miss p50 <= 20 ms",
            e.miss.p50() <= 20.0,
            format!("{:.2} ms", e.miss.p50())
        )
    );
    println!(
        "{}",
        verdict(
            "embedding hit p50 <= 1 ms",
            e.hit.p50() <= 1.0,
            format!("{:.3} ms", e.hit.p50())
        )
    );
    println!(
        "{}",
        verdict(
            "cache hit rate > 80%",
            hit_rate > 0.8,
            format!("{:.1}%", 100.0 * hit_rate)
        )
    );
    let mut figures = Figures::default();
    for (name, value) in [
        ("assemble_p50_ms_100k", a.client.p50()),
        ("assemble_p95_ms_100k", a.client.p95()),
        ("assemble_p99_ms_100k", a.client.p99()),
        ("assemble_server_p50_ms_100k", a.server.p50()),
        ("assemble_degraded_rate_100k", degraded_rate),
        ("embed_http_miss_p50_ms", e.miss.p50()),
        ("embed_inproc_p50_ms", e.inproc.p50()),
        ("embed_http_miss_vs_inproc_ratio", ratio),
        ("embed_http_hit_p50_ms", e.hit.p50()),
        ("cache_hit_rate", hit_rate),
    ] {
        figures.add(name, value);
    }
    println!();
    print!("{}", figures.render());
    Ok(())
}
