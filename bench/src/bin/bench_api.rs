//! `make bench-api`: the management REST API as a client sees it, at 100k memories (the org
//! `make bench-memory` seeds: 100 agents x 1,000).
//!
//! 1. list (`GET /v1/memories?limit=50`, the newest page), get (`GET /v1/memories/{id}`, random
//!    ids) and create (`POST /v1/memories`, through the 9-step `remember`, each text new), with one
//!    client and with 16 concurrent clients. Client-side p50/p95/p99.
//! 2. The peer, measured in the same run and interleaved call by call with the single client: the
//!    same SQL over a direct Postgres connection (no HTTP, no auth, no JSON), so the ratio is what
//!    the API layer costs.
//! 3. Keyset paging: every page of the org's 100k memories at limit 200, in order; the median of
//!    the last 50 pages against the first 50 (it must not grow with the page number).
//! 4. The REST auth cache hit rate over the run, from the server's `/metrics`.
//!
//! Creates go to an org of their own (`bench-api-writes`, 10 agents) in the same database, and
//! are deleted at the end: the seeded org stays as other benches expect.
//!
//! Environment (scripts/bench-sidecar.sh bench_api sets it): IBEX_BENCH_URL_100K (superuser URL
//! of the seeded database), IBEX_BENCH_HTTP (the sidecar under test), IBEX_BENCH_CALLS (per
//! operation and client count, default 300).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ibex_bench::dataset::Rng;
use ibex_bench::report::{machine, verdict, Figures};
use ibex_bench::stats::{median, Samples};
use serde_json::{json, Value};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use uuid::Uuid;

const CONCURRENT_CLIENTS: usize = 16;
const WARMUP_CALLS: usize = 30;
const LIST_LIMIT: u32 = 50;
const PAGE_WALK_LIMIT: u32 = 200;
const P99_TARGET_MS: f64 = 20.0;
const PAGE_GROWTH_LIMIT: f64 = 1.5;

fn env(name: &str) -> anyhow::Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set (run through `make bench-api`)"))
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Op {
    List,
    Get,
    Create,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::List => "list",
            Op::Get => "get",
            Op::Create => "create",
        }
    }
}

/// What every call needs: the client, where, who, and the rows to pick from.
struct Target {
    http: reqwest::Client,
    base: String,
    token: String,
    org: Uuid,
    agents: Vec<Uuid>,
    /// Creates go to an org of their own (see [`writer_org`]), with its own token.
    writer: Writer,
    ids: Vec<Uuid>,
    run: Uuid,
}

impl Target {
    /// One call; its latency (and for a create the path `remember` took), or an error naming
    /// the answer.
    async fn call(&self, op: Op, rng: &mut Rng, n: usize) -> anyhow::Result<(Duration, Option<String>)> {
        let request = match op {
            Op::List => self
                .http
                .get(format!("{}/v1/memories", self.base))
                .query(&[("limit", LIST_LIMIT)]),
            Op::Get => self.http.get(format!(
                "{}/v1/memories/{}",
                self.base,
                self.ids[rng.below(self.ids.len())]
            )),
            Op::Create => self.http.post(format!("{}/v1/memories", self.base)).json(&json!({
                "agent_id": self.writer.agents[rng.below(self.writer.agents.len())],
                "content": new_fact(self.run, n),
                "category": "declarative",
                "tags": ["bench-api"],
            })),
        };
        let token = if op == Op::Create {
            &self.writer.token
        } else {
            &self.token
        };
        let started = Instant::now();
        let response = request.bearer_auth(token).send().await?;
        let status = response.status();
        let body = response.bytes().await?;
        let took = started.elapsed();
        if !status.is_success() {
            bail!("{} answered {status}: {}", op.name(), String::from_utf8_lossy(&body));
        }
        let path = if op == Op::Create {
            let v: Value = serde_json::from_slice(&body)?;
            v["path"].as_str().map(str::to_string)
        } else {
            None
        };
        Ok((took, path))
    }
}

/// A fact no earlier call wrote, so every create runs the whole pipeline (no duplicate path).
fn new_fact(run: Uuid, n: usize) -> String {
    const PEOPLE: &[&str] = &["Ada", "Grace", "Linus", "Barbara", "Ken", "Radia", "Edsger", "Frances"];
    const THINGS: &[&str] = &["green tea", "the night shift", "Rust", "long walks", "jazz", "chess"];
    format!(
        "{} prefers {} on project {run}-{n}",
        PEOPLE[n % PEOPLE.len()],
        THINGS[(n / PEOPLE.len()) % THINGS.len()]
    )
}

/// The same work straight over SQL: the peer of each API call.
async fn peer_call(
    db: &PgPool,
    t: &Target,
    op: Op,
    rng: &mut Rng,
    n: usize,
) -> anyhow::Result<(Duration, Option<String>)> {
    let org = if op == Op::Create { t.writer.org } else { t.org };
    let started = Instant::now();
    let path = match op {
        Op::List => {
            sqlx::query(
                "SELECT m.id, m.content FROM ibex_core.memories m WHERE m.org_id = $1
                 ORDER BY m.created_at DESC, m.id DESC LIMIT $2",
            )
            .bind(org)
            .bind(i64::from(LIST_LIMIT) + 1)
            .fetch_all(db)
            .await?;
            None
        }
        Op::Get => {
            sqlx::query("SELECT m.* FROM ibex_core.memories m WHERE m.org_id = $1 AND m.id = $2")
                .bind(org)
                .bind(t.ids[rng.below(t.ids.len())])
                .fetch_one(db)
                .await?;
            None
        }
        Op::Create => {
            // As the API does: a transaction bound to the org (remember refuses a session
            // acting for no org).
            let mut tx = db.begin().await?;
            sqlx::query("SELECT set_config('ibex.org_id', $1::text, true)")
                .bind(org)
                .execute(&mut *tx)
                .await?;
            let path: String = sqlx::query_scalar(
                "SELECT path FROM ibex_core.remember($1, $2, $3, 'declarative', 0.8, ARRAY['bench-api'],
                        NULL, NULL, '{}'::jsonb)",
            )
            .bind(org)
            .bind(t.writer.agents[rng.below(t.writer.agents.len())])
            .bind(new_fact(t.run, n))
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            Some(path)
        }
    };
    Ok((started.elapsed(), path))
}

const WRITER_SLUG: &str = "bench-api-writes";
const WRITER_AGENTS: usize = 10;

/// Where creates go: an org of their own, so the seeded org stays exactly as seeded for the
/// other benchmarks (a new fact may supersede an old one, and nothing of `bench` may change).
/// The database still holds the 100k memories: the write pipeline's neighbour search runs over
/// the same vector index.
#[derive(Clone)]
struct Writer {
    org: Uuid,
    agents: Vec<Uuid>,
    token: String,
}

impl Writer {
    async fn prepare(url: &str, db: &PgPool) -> anyhow::Result<Self> {
        sqlx::query(
            "INSERT INTO ibex_core.orgs (name, slug) VALUES ('bench-api writes', $1) ON CONFLICT (slug) DO NOTHING",
        )
        .bind(WRITER_SLUG)
        .execute(db)
        .await?;
        let org: Uuid = sqlx::query_scalar("SELECT id FROM ibex_core.orgs WHERE slug = $1")
            .bind(WRITER_SLUG)
            .fetch_one(db)
            .await?;
        for i in 0..WRITER_AGENTS {
            sqlx::query("INSERT INTO ibex_core.agents (org_id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(org)
                .bind(format!("writer-{i}"))
                .execute(db)
                .await?;
        }
        let agents = sqlx::query_scalar("SELECT id FROM ibex_core.agents WHERE org_id = $1 ORDER BY name")
            .bind(org)
            .fetch_all(db)
            .await?;
        let token = ibex_sidecar::admin::create_token(url, org, "bench-api", "memories:write", None, Some(1))
            .await?
            .token;
        let writer = Self { org, agents, token };
        writer.clear(db).await?;
        Ok(writer)
    }

    /// Deletes what earlier runs wrote (one statement: supersession links stay inside it).
    async fn clear(&self, db: &PgPool) -> anyhow::Result<u64> {
        Ok(sqlx::query("DELETE FROM ibex_core.memories WHERE org_id = $1")
            .bind(self.org)
            .execute(db)
            .await
            .context("deleting the memories the bench wrote")?
            .rows_affected())
    }
}

struct Measured {
    api: Samples,
    peer: Samples,
}

/// One client, API and peer alternating call by call so both see the same machine state.
async fn single(t: &Target, db: &PgPool, op: Op, calls: usize, paths: &mut Vec<String>) -> anyhow::Result<Measured> {
    let mut rng = Rng::new(7 + op as u64);
    let mut m = Measured {
        api: Samples::default(),
        peer: Samples::default(),
    };
    for i in 0..WARMUP_CALLS + calls {
        let (api, a) = t.call(op, &mut rng, 2 * i).await?;
        let (peer, p) = peer_call(db, t, op, &mut rng, 2 * i + 1).await?;
        paths.extend(a.into_iter().chain(p));
        if i >= WARMUP_CALLS {
            m.api.push(api);
            m.peer.push(peer);
        }
    }
    Ok(m)
}

/// `CONCURRENT_CLIENTS` clients, each making `calls / CONCURRENT_CLIENTS` calls back to back.
async fn concurrent(t: &Arc<Target>, op: Op, calls: usize, offset: usize) -> anyhow::Result<(Samples, Vec<String>)> {
    let per_client = calls.div_ceil(CONCURRENT_CLIENTS);
    let mut tasks = Vec::new();
    for c in 0..CONCURRENT_CLIENTS {
        let t = Arc::clone(t);
        tasks.push(tokio::spawn(async move {
            let mut rng = Rng::new(1000 + c as u64);
            let mut samples = Samples::default();
            let mut paths = Vec::new();
            for i in 0..per_client {
                let (took, path) = t.call(op, &mut rng, offset + c * per_client + i).await?;
                samples.push(took);
                paths.extend(path);
            }
            anyhow::Ok((samples, paths))
        }));
    }
    let mut all = Samples::default();
    let mut paths = Vec::new();
    for task in tasks {
        let (samples, p) = task.await??;
        all.0.extend(samples.0);
        paths.extend(p);
    }
    Ok((all, paths))
}

/// Every page of the org's memories, in order: latency by page number.
async fn walk_pages(t: &Target) -> anyhow::Result<Vec<f64>> {
    let mut cursor: Option<String> = None;
    let mut latencies = Vec::new();
    loop {
        let mut request = t
            .http
            .get(format!("{}/v1/memories", t.base))
            .query(&[("limit", PAGE_WALK_LIMIT.to_string())]);
        if let Some(c) = &cursor {
            request = request.query(&[("cursor", c)]);
        }
        let started = Instant::now();
        let page: Value = request
            .bearer_auth(&t.token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => return Ok(latencies),
        }
        if latencies.len() % 100 == 0 {
            eprintln!("  paging: {} pages", latencies.len());
        }
    }
}

async fn auth_cache_lookups(t: &Target) -> anyhow::Result<(f64, f64)> {
    let text = t
        .http
        .get(format!("{}/metrics", t.base))
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    let value = |outcome: &str| {
        let prefix = format!("ibex_auth_cache_lookups_total{{cache=\"api\",outcome=\"{outcome}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Ok((value("hit"), value("miss")))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = env("IBEX_BENCH_URL_100K")?;
    let http_addr = env("IBEX_BENCH_HTTP")?;
    let calls: usize = std::env::var("IBEX_BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let db = PgPoolOptions::new().max_connections(4).connect(&url).await?;
    let org: Uuid = sqlx::query_scalar("SELECT id FROM ibex_core.orgs WHERE slug = 'bench'")
        .fetch_optional(&db)
        .await?
        .context("no org 'bench': the database is not seeded")?;
    let memories: i64 = sqlx::query_scalar("SELECT count(*) FROM ibex_core.memories WHERE org_id = $1")
        .bind(org)
        .fetch_one(&db)
        .await?;
    let agents: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM ibex_core.agents WHERE org_id = $1 ORDER BY name")
        .bind(org)
        .fetch_all(&db)
        .await?;
    let ids: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM ibex_core.memories WHERE org_id = $1 ORDER BY random() LIMIT 2000")
            .bind(org)
            .fetch_all(&db)
            .await?;
    let token = ibex_sidecar::admin::create_token(&url, org, "bench-api", "memories:read", None, Some(1))
        .await?
        .token;
    let writer = Writer::prepare(&url, &db).await?;
    let t = Arc::new(Target {
        http: reqwest::Client::builder().pool_max_idle_per_host(64).build()?,
        base: format!("http://{http_addr}"),
        token,
        org,
        agents,
        writer: writer.clone(),
        ids,
        run: Uuid::new_v4(),
    });

    println!(
        "bench-api: the management REST API at {memories} memories ({} agents)",
        t.agents.len()
    );
    println!("  machine: {}", machine());
    println!(
        "  calls: {calls} per operation and client count ({WARMUP_CALLS} warm-up first); list limit {LIST_LIMIT}; \
         {CONCURRENT_CLIENTS} concurrent clients; peer: the same SQL over a direct connection, interleaved"
    );
    let (hits_before, misses_before) = auth_cache_lookups(&t).await?;
    let mut paths = Vec::new();
    let mut figures = Figures::default();
    let mut rows = Vec::new();
    let mut worst_single = 0f64;
    let mut worst_concurrent = 0f64;
    for op in [Op::List, Op::Get, Op::Create] {
        eprintln!("  {}: one client ...", op.name());
        let m = single(&t, &db, op, calls, &mut paths).await?;
        eprintln!("  {}: {CONCURRENT_CLIENTS} clients ...", op.name());
        let (_, warm) = concurrent(&t, op, CONCURRENT_CLIENTS * 2, 1_000_000).await?;
        paths.extend(warm);
        let (many, ids) = concurrent(&t, op, calls, 2_000_000).await?;
        paths.extend(ids);
        worst_single = worst_single.max(m.api.p99());
        worst_concurrent = worst_concurrent.max(many.p99());
        figures.add(&format!("api_{}_p99_ms_single", op.name()), m.api.p99());
        figures.add(&format!("api_{}_p99_ms_16", op.name()), many.p99());
        rows.push((op, m, many));
    }

    eprintln!("  paging through every page at limit {PAGE_WALK_LIMIT} ...");
    let pages = walk_pages(&t).await?;
    let edge = 50.min(pages.len() / 2).max(1);
    let first = median(&pages[..edge]);
    let last = median(&pages[pages.len() - edge..]);
    let growth = last / first;

    let (hits_after, misses_after) = auth_cache_lookups(&t).await?;
    let (hits, misses) = (hits_after - hits_before, misses_after - misses_before);
    let hit_rate = if hits + misses > 0.0 {
        hits / (hits + misses)
    } else {
        0.0
    };

    println!();
    println!(
        "  {:<7} {:>8} {:>8} {:>8} {:>10} {:>9}   {:>8} {:>8} {:>8}",
        "op", "p50 ms", "p95 ms", "p99 ms", "peer p50", "api/peer", "16: p50", "p95", "p99"
    );
    for (op, m, many) in &rows {
        println!(
            "  {:<7} {:>8.2} {:>8.2} {:>8.2} {:>10.2} {:>8.2}x   {:>8.2} {:>8.2} {:>8.2}",
            op.name(),
            m.api.p50(),
            m.api.p95(),
            m.api.p99(),
            m.peer.p50(),
            m.api.p50() / m.peer.p50(),
            many.p50(),
            many.p95(),
            many.p99()
        );
    }
    println!();
    println!(
        "  paging: {} pages of {PAGE_WALK_LIMIT}; median of the first {edge} {first:.2} ms, of the last {edge} {last:.2} ms \
         (x{growth:.2})",
        pages.len()
    );
    println!("  auth cache: {hits} hits, {misses} misses (hit rate {hit_rate:.4})");
    let mut taken: Vec<(String, usize)> = Vec::new();
    for path in &paths {
        match taken.iter_mut().find(|(p, _)| p == path) {
            Some((_, n)) => *n += 1,
            None => taken.push((path.clone(), 1)),
        }
    }
    let taken: Vec<String> = taken.iter().map(|(p, n)| format!("{p} {n}")).collect();
    println!("  create: paths remember took: {}", taken.join(", "));
    println!(
        "{}",
        verdict(
            "p99 <= 20 ms with one client (list, get, create)",
            worst_single <= P99_TARGET_MS,
            format!("worst p99 {worst_single:.2} ms")
        )
    );
    println!(
        "{}",
        verdict(
            "list latency does not grow with the page number",
            growth <= PAGE_GROWTH_LIMIT,
            format!("last pages / first pages = {growth:.2} (limit {PAGE_GROWTH_LIMIT})")
        )
    );

    let writes = writer.clear(&db).await?;
    eprintln!("  deleted the {writes} memories this run wrote (org {WRITER_SLUG})");

    figures.add("api_list_page_growth", growth);
    figures.add("api_p99_ms_single", worst_single);
    figures.add("api_p99_ms_16", worst_concurrent);
    figures.add("auth_cache_hit_rate", hit_rate);
    print!("{}", figures.render());
    Ok(())
}
