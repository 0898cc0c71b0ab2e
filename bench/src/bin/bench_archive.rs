//! `make bench-archive`: session archiving to S3 (Garage on the dev stack) by a running sidecar.
//!
//! 1. Throughput: 1,000 sessions of 20 turns (10 checkpoints of a user and an assistant turn,
//!    about 400 characters each) completed in one transaction; the sidecar's archive worker
//!    writes and records them all. Sessions/s and MB/s, from the commit of the completion to
//!    the last archive recorded.
//! 2. The peer, in the same round: a plain PUT of the same bytes (each archive read back)
//!    through the same S3 client (`ibex_sidecar::archive::ArchiveStore`), as many at once as
//!    the worker uploads (8), to keys of their own. Target: archiving >= 0.8x the peer's MB/s.
//!
//! Both run IBEX_BENCH_ROUNDS times (default 5), alternating; the verdict compares medians
//! (a 2-core machine is noisy).
//! 3. Lag on an idle stack: 200 more sessions completed one at a time, 25 ms apart; the lag of
//!    each is `archived_at - completed_at`. Target: p99 <= 2 s.
//!
//! Everything goes to an org of its own, deleted at the end (its archive objects with it, through
//! the same deletion queue as a GDPR deletion); the peer's objects are deleted directly.
//!
//! Environment (scripts/bench-archive.sh sets it): IBEX_BENCH_URL (superuser URL of the
//! benchmark database the sidecar serves), IBEX_S3_* (the store the sidecar writes to),
//! IBEX_BENCH_SESSIONS (default 1000), IBEX_BENCH_LAG_SESSIONS (default 200).

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures_util::StreamExt;
use ibex_bench::report::{machine, verdict, Figures};
use ibex_bench::stats::{median, Samples};
use ibex_sidecar::archive::ArchiveStore;
use ibex_sidecar::config::{Config, Secret};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use uuid::Uuid;

const TURNS_PER_SESSION: i32 = 20;
const PEER_AT_ONCE: usize = 8;
const LAG_SPACING: Duration = Duration::from_millis(25);
const LAG_P99_TARGET_S: f64 = 2.0;
const THROUGHPUT_RATIO_TARGET: f64 = 0.8;
const WAIT_LIMIT: Duration = Duration::from_secs(600);
const DEFAULT_ROUNDS: usize = 5;

fn env(name: &str) -> anyhow::Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set (run through `make bench-archive`)"))
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn store() -> anyhow::Result<ArchiveStore> {
    let config = Config {
        s3_endpoint: Some(env("IBEX_S3_ENDPOINT")?),
        s3_region: env("IBEX_S3_REGION")?,
        s3_access_key_id: Some(env("IBEX_S3_ACCESS_KEY_ID")?),
        s3_secret_access_key: Some(Secret(env("IBEX_S3_SECRET_ACCESS_KEY")?)),
        s3_bucket: env("IBEX_S3_BUCKET")?,
        ..Config::default()
    };
    ArchiveStore::from_config(&config)?.context("no S3 endpoint")
}

/// An org with one agent, and `count` active sessions of 20 turns each, extraction marked done
/// (the extraction workers leave them alone: this measures archiving).
async fn seed(db: &PgPool, org: Uuid, agent: Uuid, count: usize) -> anyhow::Result<Vec<Uuid>> {
    let sessions: Vec<Uuid> = sqlx::query_scalar(
        "INSERT INTO ibex_core.sessions (org_id, agent_id, turn_count, checkpoint_count, last_extracted_turn)
         SELECT $1, $2, $3, $3 / 2, $3 FROM generate_series(1, $4) RETURNING id",
    )
    .bind(org)
    .bind(agent)
    .bind(TURNS_PER_SESSION)
    .bind(count as i32)
    .fetch_all(db)
    .await?;
    sqlx::query(
        "INSERT INTO ibex_core.session_turns (org_id, session_id, turn_index, role, content, tokens, model, checkpoint)
         SELECT $1, s.id, t, CASE WHEN t % 2 = 1 THEN 'user' ELSE 'assistant' END,
                'turn ' || t || ': ' || repeat(md5(s.id::text || t), 12), 96, 'gpt-4o-mini', (t + 1) / 2
         FROM unnest($2::uuid[]) AS s(id), generate_series(1, $3) AS t",
    )
    .bind(org)
    .bind(&sessions)
    .bind(TURNS_PER_SESSION)
    .execute(db)
    .await?;
    Ok(sessions)
}

/// Waits until every listed session is archived; answers their total bytes.
async fn wait_archived(db: &PgPool, sessions: &[Uuid]) -> anyhow::Result<i64> {
    let deadline = Instant::now() + WAIT_LIMIT;
    let mut last_report = Instant::now();
    loop {
        let (done, bytes): (i64, Option<i64>) = sqlx::query_as(
            "SELECT count(*), sum(archive_bytes)::bigint FROM ibex_core.sessions
             WHERE id = ANY ($1) AND archived_at IS NOT NULL",
        )
        .bind(sessions)
        .fetch_one(db)
        .await?;
        if done as usize == sessions.len() {
            return Ok(bytes.unwrap_or(0));
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            eprintln!("  ... {done}/{} archived", sessions.len());
            last_report = Instant::now();
        }
        if Instant::now() > deadline {
            bail!(
                "only {done} of {} sessions archived within {WAIT_LIMIT:?}",
                sessions.len()
            );
        }
        // The end times come from Postgres (archived_at): polling seldom costs no
        // precision and leaves the database to the worker.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The peer: the same bytes PUT through the same client, PEER_AT_ONCE at a time.
async fn peer(store: &ArchiveStore, db: &PgPool, sessions: &[Uuid]) -> anyhow::Result<(f64, usize)> {
    let keys: Vec<String> = sqlx::query_scalar("SELECT archive_key FROM ibex_core.sessions WHERE id = ANY ($1)")
        .bind(sessions)
        .fetch_all(db)
        .await?;
    let mut objects = Vec::with_capacity(keys.len());
    for key in &keys {
        let bytes = store.get(key, 64 << 20).await?.context("archive missing")?;
        objects.push((format!("bench-peer/{key}"), bytes.to_vec()));
    }
    let total: usize = objects.iter().map(|(_, b)| b.len()).sum();
    let started = Instant::now();
    let results: Vec<anyhow::Result<()>> = futures_util::stream::iter(objects)
        .map(|(key, bytes)| async move { Ok(store.put(&key, bytes, "application/x-ndjson").await?) })
        .buffer_unordered(PEER_AT_ONCE)
        .collect()
        .await;
    let elapsed = started.elapsed().as_secs_f64();
    results.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    for key in &keys {
        store.delete(&format!("bench-peer/{key}")).await?;
    }
    Ok((elapsed, total))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let db = PgPoolOptions::new()
        .max_connections(4)
        .connect(&env("IBEX_BENCH_URL")?)
        .await?;
    let store = store()?;
    let count = env_or("IBEX_BENCH_SESSIONS", 1000);
    let lag_count = env_or("IBEX_BENCH_LAG_SESSIONS", 200);
    let rounds = env_or("IBEX_BENCH_ROUNDS", DEFAULT_ROUNDS).max(1);
    let org = Uuid::new_v4();
    let agent = Uuid::new_v4();
    sqlx::query("INSERT INTO ibex_core.orgs (id, name, slug) VALUES ($1, 'bench-archive', $2)")
        .bind(org)
        .bind(format!("bench-archive-{}", &org.simple().to_string()[..8]))
        .execute(&db)
        .await?;
    sqlx::query("INSERT INTO ibex_core.agents (org_id, id, name) VALUES ($1, $2, 'archivist')")
        .bind(org)
        .bind(agent)
        .execute(&db)
        .await?;
    println!("bench-archive: {}", machine());
    println!(
        "inputs: {rounds} rounds of {count} sessions x {TURNS_PER_SESSION} turns (10 checkpoints, ~400 chars a turn) \
         completed at once, each followed by the peer (plain PUTs of the same bytes, {PEER_AT_ONCE} at once); \
         then {lag_count} sessions completed one at a time {} ms apart",
        LAG_SPACING.as_millis()
    );
    let result = run(
        &db,
        &store,
        org,
        agent,
        Inputs {
            count,
            lag_count,
            rounds,
        },
    )
    .await;
    let receipt: serde_json::Value = sqlx::query_scalar("SELECT ibex_ops.platform_delete_org($1)")
        .bind(org)
        .fetch_one(&db)
        .await?;
    println!(
        "cleanup: org deleted; its archives are deleted by the sidecar (archive deletion {})",
        receipt["archive_deletion_id"]
    );
    result
}

struct Inputs {
    count: usize,
    lag_count: usize,
    rounds: usize,
}

/// One round: `count` sessions completed at once and archived, then the peer on their bytes.
struct Round {
    seconds: f64,
    mb: f64,
    peer_seconds: f64,
    peer_mb: f64,
}

async fn round(db: &PgPool, store: &ArchiveStore, org: Uuid, agent: Uuid, count: usize) -> anyhow::Result<Round> {
    let sessions = seed(db, org, agent, count).await?;
    sqlx::query(
        "UPDATE ibex_core.sessions SET status = 'completed', completed_at = now() WHERE org_id = $1 AND id = ANY ($2)",
    )
    .bind(org)
    .bind(&sessions)
    .execute(db)
    .await?;
    // The work is visible to the worker from the commit on (same clock as Postgres: one machine).
    let committed = chrono::Utc::now();
    let bytes = wait_archived(db, &sessions).await?;
    let (last,): (chrono::DateTime<chrono::Utc>,) =
        sqlx::query_as("SELECT max(archived_at) FROM ibex_core.sessions WHERE id = ANY ($1)")
            .bind(&sessions)
            .fetch_one(db)
            .await?;
    let seconds = (last - committed).num_microseconds().unwrap_or(0) as f64 / 1e6;
    let (peer_seconds, peer_bytes) = peer(store, db, &sessions).await?;
    let round = Round {
        seconds,
        mb: bytes as f64 / 1e6,
        peer_seconds,
        peer_mb: peer_bytes as f64 / 1e6,
    };
    eprintln!(
        "  round: archived {:.2} MB in {:.2} s ({:.2} MB/s); peer {:.2} MB/s",
        round.mb,
        round.seconds,
        round.mb / round.seconds,
        round.peer_mb / round.peer_seconds
    );
    Ok(round)
}

async fn run(db: &PgPool, store: &ArchiveStore, org: Uuid, agent: Uuid, inputs: Inputs) -> anyhow::Result<()> {
    let Inputs {
        count,
        lag_count,
        rounds,
    } = inputs;
    // 1 and 2. Throughput and its peer, alternating.
    let mut measured = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        measured.push(round(db, store, org, agent, count).await?);
    }
    let archive_rates: Vec<f64> = measured.iter().map(|r| r.mb / r.seconds).collect();
    let peer_rates: Vec<f64> = measured.iter().map(|r| r.peer_mb / r.peer_seconds).collect();
    let (archive_mb_s, peer_mb_s) = (median(&archive_rates), median(&peer_rates));
    let mb = measured[0].mb;
    let sessions_s = archive_mb_s / mb * count as f64;
    let lag_sessions = seed(db, org, agent, lag_count).await?;

    // 3. Lag, one completion at a time.
    for session in &lag_sessions {
        let mut tx = db.begin().await?;
        sqlx::query("SELECT set_config('ibex.org_id', $1, true)")
            .bind(org.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query("SELECT ibex_core.complete_session($1, $2)")
            .bind(org)
            .bind(session)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tokio::time::sleep(LAG_SPACING).await;
    }
    wait_archived(db, &lag_sessions).await?;
    let lags: Vec<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM archived_at - completed_at)::float8 FROM ibex_core.sessions WHERE id = ANY ($1)",
    )
    .bind(&lag_sessions)
    .fetch_all(db)
    .await?;
    let lag = Samples(lags.iter().map(|s| s * 1000.0).collect());

    println!();
    println!("| measure | value |");
    println!("|---|---|");
    let rates = |values: &[f64]| values.iter().map(|v| format!("{v:.2}")).collect::<Vec<_>>().join(", ");
    println!("| archived per round | {count} sessions, {mb:.2} MB |");
    println!(
        "| archiving throughput (median of {rounds}) | {sessions_s:.1} sessions/s, {archive_mb_s:.2} MB/s (rounds: {}) |",
        rates(&archive_rates)
    );
    println!(
        "| peer: plain PUT of the same bytes (median) | {peer_mb_s:.2} MB/s (rounds: {}) |",
        rates(&peer_rates)
    );
    println!(
        "| ratio of the medians archiving / peer | {:.2}x |",
        archive_mb_s / peer_mb_s
    );
    println!(
        "| lag completion -> archived ({lag_count} sessions) | p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms |",
        lag.p50(),
        lag.p95(),
        lag.p99()
    );
    println!();
    let ratio = archive_mb_s / peer_mb_s;
    println!(
        "{}",
        verdict(
            "throughput >= 0.8x the plain PUT peer",
            ratio >= THROUGHPUT_RATIO_TARGET,
            format!("{ratio:.2}x")
        )
    );
    let lag_p99_s = lag.p99() / 1000.0;
    println!(
        "{}",
        verdict(
            "lag p99 <= 2 s on an idle stack",
            lag_p99_s <= LAG_P99_TARGET_S,
            format!("{lag_p99_s:.3} s")
        )
    );
    let mut figures = Figures::default();
    figures.add("archive_sessions_per_s", sessions_s);
    figures.add("archive_lag_p50_s", lag.p50() / 1000.0);
    figures.add("archive_lag_p99_s", lag_p99_s);
    figures.add("archive_mb_per_s", archive_mb_s);
    figures.add("peer_put_mb_per_s", peer_mb_s);
    print!("{}", figures.render());
    Ok(())
}
