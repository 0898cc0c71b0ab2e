//! `make bench-load` and `make soak`: a closed-loop mixed workload against the sidecar and the
//! SQL API, on loopback, against the 100k-memory database of `bench-sidecar`.
//!
//! Each client loops until its step ends, picking an operation by weight:
//! * 55% AssembleContext (gRPC, the bench org's 100 agents, a new question each call);
//! * 22% `ibex_core.search` in SQL as the application role (`p_record_access => false`);
//! * 13% `ibex_core.remember` in SQL as the application role, into an org of the run's own
//!   (purged at the end, so the 100k dataset stays as seeded);
//! * 10% proxied chat completions (`POST /v1/chat/completions`) for the run's org, against a
//!   local OpenAI-protocol server started here (50 ms per answer); each call is a session of its
//!   own that it completes, so the sidecar records its turns and usage and archives it to S3
//!   (the archive count is printed at the end). A 429 must carry Retry-After (else an error).
//!
//! `make bench-load`: steps of `IBEX_BENCH_LOAD_SECONDS` (60) at 1, 8, 32 and 128 clients
//! (`IBEX_BENCH_LOAD_CLIENTS`). Per step: throughput, p50/p99 per operation of the admitted
//! calls, shed (admission: RESOURCE_EXHAUSTED) and error counts, and the resident memory of the
//! sidecar and of Postgres (proportional set size summed over its processes) before and after.
//! Ends with `BENCH load_errors_below_admission` (errors in steps where nothing was shed) and
//! `BENCH load_rps_32`.
//!
//! `make soak`: one step of `IBEX_BENCH_SOAK_SECONDS` (600) at 32 clients, sampling the sidecar's
//! memory and open files and Postgres' connections every 30 s; growth between the first third
//! and the end is the verdict.
//!
//! Environment (scripts/bench-sidecar.sh sets it): IBEX_BENCH_URL_100K (superuser, set-up),
//! IBEX_BENCH_APP_URL (application role), IBEX_BENCH_GRPC, IBEX_BENCH_HTTP, IBEX_BENCH_LLM (the
//! address the sidecar's upstream_base_url points at), IBEX_BENCH_SIDECAR_PID.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use ibex_bench::context::{agent_queries, setup, Setup, AGENTS};
use ibex_bench::dataset::Rng;
use ibex_bench::fake_llm::FakeLlm;
use ibex_bench::report::{machine, verdict, Figures};
use ibex_bench::stats::Samples;
use ibex_sidecar::grpc::proto::context::v1::context_service_client::ContextServiceClient;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::Mutex;
use tonic::transport::Channel;
use uuid::Uuid;

/// Connections of the SQL clients' pool.
const SQL_POOL: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Context,
    Search,
    Remember,
    Proxy,
}

impl Op {
    fn pick(rng: &mut Rng) -> Op {
        match rng.below(100) {
            0..55 => Op::Context,
            55..77 => Op::Search,
            77..90 => Op::Remember,
            _ => Op::Proxy,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Op::Context => "AssembleContext",
            Op::Search => "search (SQL)",
            Op::Remember => "remember (SQL)",
            Op::Proxy => "chat proxy",
        }
    }
}

enum Outcome {
    Ok(Duration),
    /// Answered, but directive-only (a source missed its deadline).
    Degraded(Duration),
    /// Refused at admission (RESOURCE_EXHAUSTED): the server said it was full.
    Shed,
    Error(String),
}

#[derive(Default)]
struct OpStats {
    admitted: Samples,
    degraded: usize,
    shed: usize,
    errors: usize,
}

#[derive(Default)]
struct Step {
    clients: usize,
    seconds: f64,
    ops: BTreeMap<Op, OpStats>,
    first_error: Option<String>,
}

impl Step {
    fn calls(&self) -> usize {
        self.ops.values().map(|s| s.admitted.len() + s.shed + s.errors).sum()
    }
    fn shed(&self) -> usize {
        self.ops.values().map(|s| s.shed).sum()
    }
    fn errors(&self) -> usize {
        self.ops.values().map(|s| s.errors).sum()
    }
    fn answered_per_second(&self) -> f64 {
        self.ops.values().map(|s| s.admitted.len()).sum::<usize>() as f64 / self.seconds
    }
}

struct Load {
    grpc: ContextServiceClient<Channel>,
    app: PgPool,
    setup: Setup,
    queries: Vec<Vec<String>>,
    /// The run's own org and agent for writes.
    write_org: Uuid,
    write_agent: Uuid,
    http: reqwest::Client,
    proxy_url: String,
    /// A `proxy` token of the run's org.
    proxy_token: String,
}

impl Load {
    async fn call(&self, op: Op, rng: &mut Rng, n: u64) -> Outcome {
        let agent = rng.below(AGENTS);
        let question = format!("{} (question {n})", rng.pick(&self.queries[agent]));
        let started = Instant::now();
        match op {
            Op::Context => {
                let request = match self.setup.request(agent, &question) {
                    Ok(r) => r,
                    Err(e) => return Outcome::Error(e.to_string()),
                };
                match self.grpc.clone().assemble_context(request).await {
                    Ok(r) if r.get_ref().degraded => Outcome::Degraded(started.elapsed()),
                    Ok(_) => Outcome::Ok(started.elapsed()),
                    Err(s) if s.code() == tonic::Code::ResourceExhausted => Outcome::Shed,
                    Err(s) => Outcome::Error(format!("AssembleContext: {s}")),
                }
            }
            Op::Search => {
                let sql = "SELECT count(*) FROM ibex_core.search($1, $2, $3, 10, p_record_access => false)";
                self.sql(self.setup.org, sql, (self.setup.agents[agent], question), started)
                    .await
            }
            Op::Remember => {
                let content = format!("Load note {n}: the user mentioned {question}");
                let sql = "SELECT count(*) FROM ibex_core.remember($1, $2, $3)";
                self.sql(self.write_org, sql, (self.write_agent, content), started)
                    .await
            }
            Op::Proxy => self.proxy(n, &question, started).await,
        }
    }

    /// One proxied chat completion, a session of its own that it completes.
    async fn proxy(&self, n: u64, question: &str, started: Instant) -> Outcome {
        let body = serde_json::json!({
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": question}],
        });
        let sent = self
            .http
            .post(&self.proxy_url)
            .bearer_auth(&self.proxy_token)
            .header("x-ibex-agent-id", self.write_agent.to_string())
            // A new session each call (n repeats from one step to the next).
            .header("x-ibex-session-id", format!("load-{n}-{}", Uuid::new_v4().simple()))
            .header("x-ibex-session-complete", "true")
            .json(&body)
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => match r.bytes().await {
                Ok(_) => Outcome::Ok(started.elapsed()),
                Err(e) => Outcome::Error(format!("chat proxy body: {e}")),
            },
            Ok(r) if r.status() == reqwest::StatusCode::TOO_MANY_REQUESTS => {
                if r.headers().contains_key(reqwest::header::RETRY_AFTER) {
                    Outcome::Shed
                } else {
                    Outcome::Error("chat proxy: 429 without Retry-After".into())
                }
            }
            Ok(r) => Outcome::Error(format!("chat proxy: HTTP {}", r.status())),
            Err(e) => Outcome::Error(format!("chat proxy: {e}")),
        }
    }

    /// One statement as the application role acting for `org`, in its own transaction.
    async fn sql(&self, org: Uuid, sql: &str, (agent, text): (Uuid, String), started: Instant) -> Outcome {
        let run = async {
            let mut tx = self.app.begin().await?;
            sqlx::query("SELECT set_config('ibex.org_id', $1, true)")
                .bind(org.to_string())
                .execute(&mut *tx)
                .await?;
            sqlx::query(sql)
                .bind(org)
                .bind(agent)
                .bind(text)
                .execute(&mut *tx)
                .await?;
            tx.commit().await
        };
        match run.await {
            Ok(()) => Outcome::Ok(started.elapsed()),
            Err(e) => Outcome::Error(format!("SQL: {e}")),
        }
    }

    async fn step(self: &Arc<Self>, clients: usize, length: Duration, seed: u64) -> Step {
        let step = Arc::new(Mutex::new(Step {
            clients,
            seconds: length.as_secs_f64(),
            ..Step::default()
        }));
        let end = Instant::now() + length;
        let tasks: Vec<_> = (0..clients)
            .map(|client| {
                let (load, step) = (Arc::clone(self), Arc::clone(&step));
                tokio::spawn(async move {
                    let mut rng = Rng::new(seed ^ (client as u64).wrapping_mul(0x9E37_79B9));
                    let mut n = (client as u64) << 32;
                    while Instant::now() < end {
                        let op = Op::pick(&mut rng);
                        n += 1;
                        let outcome = load.call(op, &mut rng, n).await;
                        let mut step = step.lock().await;
                        let stats = step.ops.entry(op).or_default();
                        match outcome {
                            Outcome::Ok(d) => stats.admitted.push(d),
                            Outcome::Degraded(d) => {
                                stats.admitted.push(d);
                                stats.degraded += 1;
                            }
                            Outcome::Shed => {
                                stats.shed += 1;
                                drop(step);
                                // A shed caller backs off briefly, as a real one would.
                                tokio::time::sleep(Duration::from_millis(10)).await;
                            }
                            Outcome::Error(e) => {
                                stats.errors += 1;
                                step.first_error.get_or_insert(e);
                            }
                        }
                    }
                })
            })
            .collect();
        for task in tasks {
            let _ = task.await;
        }
        Arc::try_unwrap(step).ok().expect("every client finished").into_inner()
    }
}

/// Resident memory of the sidecar (VmRSS) in MiB.
fn sidecar_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    kib_field(&status, "VmRSS:") / 1024.0
}

fn sidecar_open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Postgres' memory in MiB: the proportional set size summed over its processes (shared buffers
/// counted once across them, not once per backend).
fn postgres_pss_mib() -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().bytes().all(|b| b.is_ascii_digit()))
        .filter(|e| std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == "postgres"))
        .map(|e| {
            kib_field(
                &std::fs::read_to_string(e.path().join("smaps_rollup")).unwrap_or_default(),
                "Pss:",
            )
        })
        .sum::<f64>()
        / 1024.0
}

fn kib_field(text: &str, field: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

async fn connections(conn: &mut PgConnection) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'")
        .fetch_one(conn)
        .await
        .unwrap_or(-1)
}

fn env_seconds(name: &str, default: u64) -> Duration {
    Duration::from_secs(std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default))
}

fn print_step(step: &Step, before: (f64, f64), after: (f64, f64)) {
    println!(
        "\n{} clients, {:.0} s: {} calls, {:.1} answered/s, {} shed, {} errors; sidecar RSS {:.0} -> {:.0} MiB, Postgres PSS {:.0} -> {:.0} MiB",
        step.clients,
        step.seconds,
        step.calls(),
        step.answered_per_second(),
        step.shed(),
        step.errors(),
        before.0,
        after.0,
        before.1,
        after.1
    );
    println!(
        "  {:<16} {:>8} {:>9} {:>9} {:>9} {:>6} {:>6}",
        "operation", "answered", "p50 ms", "p99 ms", "degraded", "shed", "errors"
    );
    for (op, s) in &step.ops {
        println!(
            "  {:<16} {:>8} {:>9.2} {:>9.2} {:>9} {:>6} {:>6}",
            op.name(),
            s.admitted.len(),
            s.admitted.p50(),
            s.admitted.p99(),
            s.degraded,
            s.shed,
            s.errors
        );
    }
    if let Some(e) = &step.first_error {
        println!("  first error: {e}");
    }
}

/// The proxied calls' sessions: completed, and archived to S3 by the sidecar (waiting up to 60 s
/// for the archive queue to catch up with the last step).
async fn report_archives(admin: &mut PgConnection, org: Uuid) {
    let started = Instant::now();
    loop {
        let (completed, archived): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE status = 'completed'), count(*) FILTER (WHERE archived_at IS NOT NULL)
               FROM ibex_core.sessions WHERE org_id = $1",
        )
        .bind(org)
        .fetch_one(&mut *admin)
        .await
        .unwrap_or((-1, -1));
        if archived >= completed || started.elapsed() > Duration::from_secs(60) {
            println!(
                "\nsessions of the proxied calls: {completed} completed, {archived} archived to S3 ({:.0} s after the last step)",
                started.elapsed().as_secs_f64()
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn write_org(admin: &mut PgConnection) -> anyhow::Result<(Uuid, Uuid)> {
    let org: Uuid = sqlx::query_scalar("SELECT id FROM ibex_ops.platform_create_org('bench load', $1, '{}')")
        .bind(format!("bench-load-{}", &Uuid::new_v4().simple().to_string()[..10]))
        .fetch_one(&mut *admin)
        .await?;
    let agent: Uuid =
        sqlx::query_scalar("INSERT INTO ibex_core.agents (org_id, name) VALUES ($1, 'writer') RETURNING id")
            .bind(org)
            .fetch_one(&mut *admin)
            .await?;
    Ok((org, agent))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let admin_url =
        std::env::var("IBEX_BENCH_URL_100K").context("IBEX_BENCH_URL_100K (run through make bench-load)")?;
    let app_url = std::env::var("IBEX_BENCH_APP_URL").context("IBEX_BENCH_APP_URL")?;
    let grpc_addr = std::env::var("IBEX_BENCH_GRPC").context("IBEX_BENCH_GRPC")?;
    let http_addr = std::env::var("IBEX_BENCH_HTTP").context("IBEX_BENCH_HTTP")?;
    let llm_addr: std::net::SocketAddr = std::env::var("IBEX_BENCH_LLM").context("IBEX_BENCH_LLM")?.parse()?;
    let sidecar: u32 = std::env::var("IBEX_BENCH_SIDECAR_PID")
        .context("IBEX_BENCH_SIDECAR_PID")?
        .parse()?;
    let soak = std::env::var("IBEX_BENCH_SOAK_SECONDS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok());
    let length = env_seconds("IBEX_BENCH_LOAD_SECONDS", 60);
    let levels: Vec<usize> = std::env::var("IBEX_BENCH_LOAD_CLIENTS")
        .unwrap_or_else(|_| "1,8,32,128".into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect();

    let setup = setup(&admin_url).await?;
    let mut admin = PgConnection::connect(&admin_url).await?;
    let (write_org, write_agent) = write_org(&mut admin).await?;
    // The upstream of the proxied calls: the sidecar was started pointing at this address.
    let _llm = FakeLlm::start_on(llm_addr, Duration::from_millis(50)).await;
    let proxy_token =
        ibex_sidecar::admin::create_token(&admin_url, write_org, "bench-load-proxy", "proxy", None, Some(1))
            .await?
            .token;
    // An application's pool: SQL callers beyond it wait for a connection, as they would in a
    // deployment. (Each backend that embeds a query loads the model once: a pool the size of
    // the client count would measure 128 model copies, not the API.)
    let pool_size = levels.iter().copied().max().unwrap_or(16).min(SQL_POOL);
    let load = Arc::new(Load {
        grpc: ContextServiceClient::connect(format!("http://{grpc_addr}")).await?,
        app: PgPoolOptions::new()
            .max_connections(pool_size as u32)
            .acquire_timeout(Duration::from_secs(30))
            .connect(&app_url)
            .await?,
        setup,
        queries: (0..AGENTS).map(agent_queries).collect(),
        write_org,
        write_agent,
        http: reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?,
        proxy_url: format!("http://{http_addr}/v1/chat/completions"),
        proxy_token,
    });
    println!("bench-load: {}", machine());
    println!(
        "inputs: 100k memories (100 agents), mix 55% AssembleContext / 22% search / 13% remember / 10% chat proxy (each call a session, completed and archived; upstream 50 ms), closed loop, SQL pool {} connections",
        pool_size
    );

    let mut figures = Figures::default();
    if let Some(seconds) = soak {
        soak_run(&load, &mut admin, sidecar, Duration::from_secs(seconds), &mut figures).await;
    } else {
        let mut errors_below_admission = 0;
        let mut p99_by_clients = Vec::new();
        for (i, &clients) in levels.iter().enumerate() {
            let before = (sidecar_rss_mib(sidecar), postgres_pss_mib());
            let step = load.step(clients, length, 0x10AD + i as u64).await;
            let after = (sidecar_rss_mib(sidecar), postgres_pss_mib());
            print_step(&step, before, after);
            if step.shed() == 0 {
                errors_below_admission += step.errors();
            }
            if clients == 32 {
                figures.add("load_rps_32", step.answered_per_second());
            }
            if let Some(s) = step.ops.get(&Op::Context) {
                p99_by_clients.push((clients, s.admitted.p99(), step.shed()));
            }
        }
        println!();
        println!(
            "{}",
            verdict(
                "no errors below the admission threshold",
                errors_below_admission == 0,
                format!("{errors_below_admission} errors in steps where nothing was shed"),
            )
        );
        // Admitted calls past the admission threshold against the last step that shed nothing.
        let baseline = p99_by_clients
            .iter()
            .take_while(|(_, _, shed)| *shed == 0)
            .last()
            .or(p99_by_clients.first());
        let worst = p99_by_clients
            .iter()
            .filter(|(_, _, shed)| *shed > 0)
            .max_by(|a, b| a.1.total_cmp(&b.1));
        if let (Some(&(base_clients, base_p99, _)), Some(&(clients, p99, _))) = (baseline, worst) {
            println!(
                "{}",
                verdict(
                    "admitted AssembleContext calls do not collapse past admission (p99 within 3x)",
                    p99 <= 3.0 * base_p99,
                    format!("p99 {p99:.1} ms at {clients} clients (shedding) vs {base_p99:.1} ms at {base_clients}"),
                )
            );
        }
        figures.add("load_errors_below_admission", errors_below_admission as f64);
    }
    report_archives(&mut admin, write_org).await;
    sqlx::query("SELECT ibex_ops.platform_delete_org($1)")
        .bind(write_org)
        .execute(&mut admin)
        .await?;
    print!("{}", figures.render());
    Ok(())
}

/// 32 clients for `length`, sampling every 30 s; growth from the first third to the end.
async fn soak_run(load: &Arc<Load>, admin: &mut PgConnection, sidecar: u32, length: Duration, figures: &mut Figures) {
    const SAMPLE: Duration = Duration::from_secs(30);
    let runner = {
        let load = Arc::clone(load);
        tokio::spawn(async move { load.step(32, length, 0x50AC).await })
    };
    let started = Instant::now();
    let mut samples = Vec::new();
    println!(
        "\n{:>6} {:>12} {:>11} {:>12} {:>12}",
        "s", "sidecar MiB", "open files", "connections", "Postgres MiB"
    );
    while started.elapsed() < length {
        tokio::time::sleep(SAMPLE.min(length.saturating_sub(started.elapsed()))).await;
        let sample = (
            started.elapsed().as_secs_f64(),
            sidecar_rss_mib(sidecar),
            sidecar_open_files(sidecar) as f64,
            connections(admin).await as f64,
            postgres_pss_mib(),
        );
        println!(
            "{:>6.0} {:>12.1} {:>11.0} {:>12.0} {:>12.1}",
            sample.0, sample.1, sample.2, sample.3, sample.4
        );
        samples.push(sample);
    }
    let step = runner.await.expect("soak step");
    print_step(
        &step,
        (samples[0].1, samples[0].4),
        (samples[samples.len() - 1].1, samples[samples.len() - 1].4),
    );
    let third = samples[samples.len() / 3];
    let last = samples[samples.len() - 1];
    let growth = |a: f64, b: f64| if a > 0.0 { (b - a) / a } else { 0.0 };
    println!();
    for (label, from, to, limit) in [
        ("sidecar memory", third.1, last.1, 0.10),
        ("sidecar open files", third.2, last.2, 0.10),
        ("Postgres connections", third.3, last.3, 0.10),
        ("Postgres memory", third.4, last.4, 0.10),
    ] {
        println!(
            "{}",
            verdict(
                &format!("{label} does not grow"),
                growth(from, to) <= limit,
                format!(
                    "{from:.1} at {:.0} s -> {to:.1} at {:.0} s ({:+.1}%)",
                    third.0,
                    last.0,
                    100.0 * growth(from, to)
                ),
            )
        );
    }
    figures.add("soak_sidecar_rss_growth", growth(third.1, last.1));
    figures.add("soak_errors", step.errors() as f64);
}
