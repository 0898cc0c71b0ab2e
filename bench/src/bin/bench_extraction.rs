//! `make bench-extraction`: a 10-turn session learned end to end by the extraction workers of
//! the dev cluster, from the commit that completes it to the checkpoint covering every turn.
//!
//! 1. With an OpenAI-compatible LLM that takes about 1 s to answer (a local server speaking the
//!    protocol; target: within 10 s end to end).
//! 2. With an LLM that answers at once: what is left is IBEX's own overhead (wake-up, claim,
//!    reading turns and related memories, prompt, HTTP, parsing, ten `remember` calls with their
//!    embeddings, checkpoint; target <= 200 ms).
//!
//! 3. With no LLM: a 312-turn conversation (13 sessions of the conversational set recorded as one
//!    session) learned by the default extractor, rules and episodes (target: under 60 s).
//!
//! Environment: IBEX_BENCH_URL (superuser URL of the database the workers serve), IBEX_BENCH_RUNS.

use std::time::{Duration, Instant};

use anyhow::Context;
use ibex_bench::conversations::{self, Conversation};
use ibex_bench::fake_llm::FakeLlm;
use ibex_bench::learning;
use ibex_bench::report::{machine, verdict, Figures};
use ibex_bench::stats::Samples;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use uuid::Uuid;

const FACTS: [&str; 10] = [
    "The user is training for a half marathon in April",
    "The user prefers aisle seats on long flights",
    "The user's daughter Mia plays the violin",
    "The user works remotely from a cabin in Norway",
    "The user is allergic to shellfish",
    "The user wants reports delivered as PDF files",
    "The user drinks oolong tea every morning",
    "The user moved from Lisbon to Oslo last year",
    "The user has a dentist appointment on March 14",
    "The user is learning Japanese with a tutor",
];

async fn configure(admin: &PgPool, base_url: Option<&str>) -> anyhow::Result<()> {
    match base_url {
        // ALTER SYSTEM takes no parameters; the URL is our own local server's.
        Some(url) => {
            sqlx::query(&format!("ALTER SYSTEM SET ibex.llm_base_url = '{url}'"))
                .execute(admin)
                .await?;
            sqlx::query("ALTER SYSTEM SET ibex.llm_model = 'bench-llm'")
                .execute(admin)
                .await?;
        }
        None => {
            sqlx::query("ALTER SYSTEM RESET ibex.llm_base_url")
                .execute(admin)
                .await?;
            sqlx::query("ALTER SYSTEM RESET ibex.llm_model").execute(admin).await?;
        }
    }
    sqlx::query("SELECT pg_reload_conf()").execute(admin).await?;
    // Workers pick the settings up at their next loop.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    Ok(())
}

/// Records a 10-turn session (user turns with a fact each, assistant acknowledgements), completes
/// it and waits until the workers moved the checkpoint past every turn.
async fn one_session(admin: &PgPool, org: Uuid, agent: Uuid, tag: &str) -> anyhow::Result<Duration> {
    let turns: Vec<serde_json::Value> = FACTS
        .iter()
        .take(5)
        .flat_map(|f| {
            [
                serde_json::json!({"role": "user", "content": format!("FACT: {f} ({tag}). Can you keep that in mind?")}),
                serde_json::json!({"role": "assistant", "content": "Of course, I will remember that."}),
            ]
        })
        .collect();
    let session = learning::record_session(admin, org, agent, &format!("bench-{tag}"), turns).await?;
    let started = Instant::now();
    loop {
        let done: bool = sqlx::query_scalar(
            "SELECT last_extracted_turn = turn_count FROM ibex_core.sessions WHERE org_id = $1 AND id = $2",
        )
        .bind(org)
        .bind(session)
        .fetch_one(admin)
        .await?;
        if done {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(60),
            "session {session} not extracted after 60 s"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url =
        std::env::var("IBEX_BENCH_URL").context("IBEX_BENCH_URL is not set (run through `make bench-extraction`)")?;
    let runs: usize = std::env::var("IBEX_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let admin = PgPoolOptions::new().max_connections(2).connect(&url).await?;
    let workers: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'ibex extraction'")
            .fetch_one(&admin)
            .await?;
    anyhow::ensure!(
        workers > 0,
        "no extraction workers run on this database (is it ibex.database?)"
    );
    let slug = format!("bench-extraction-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let org: Uuid = sqlx::query_scalar("INSERT INTO ibex_core.orgs (name, slug) VALUES ($1, $1) RETURNING id")
        .bind(&slug)
        .fetch_one(&admin)
        .await?;

    println!("bench-extraction: 10-turn sessions (5 user turns with a fact each, 5 assistant turns) learned by the extraction workers");
    println!("machine: {}", machine());
    println!("inputs: {runs} sessions per LLM, {workers} extraction workers, each session on a fresh agent; clock from the commit completing the session to the checkpoint reaching turn 10");

    let slow = FakeLlm::start(Duration::from_millis(1000)).await;
    let instant = FakeLlm::start(Duration::ZERO).await;
    let mut figures = Figures::default();
    let mut results = Vec::new();
    for (label, llm) in [
        ("LLM answering in ~1 s", &slow),
        ("LLM answering at once (IBEX overhead)", &instant),
    ] {
        configure(&admin, Some(&llm.base_url())).await?;
        let mut samples = Samples::default();
        for run in 0..runs {
            // A fresh agent per session, so every run stores its memories from scratch.
            let agent: Uuid =
                sqlx::query_scalar("INSERT INTO ibex_core.agents (org_id, name) VALUES ($1, $2) RETURNING id")
                    .bind(org)
                    .bind(format!("agent-{}-{run}", results.len()))
                    .fetch_one(&admin)
                    .await?;
            let d = one_session(&admin, org, agent, &format!("{}-{run}", results.len())).await?;
            eprintln!("  {label}: run {}/{runs}: {:.0} ms", run + 1, d.as_secs_f64() * 1000.0);
            samples.push(d);
        }
        results.push((label, samples));
    }
    configure(&admin, None).await?;
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM ibex_core.memories WHERE org_id = $1")
        .bind(org)
        .fetch_one(&admin)
        .await?;

    println!(
        "\n  {:<40} {:>9} {:>9} {:>9} {:>6}",
        "end to end (ms)", "p50", "p95", "max", "runs"
    );
    for (label, s) in &results {
        println!(
            "  {label:<40} {:>9.1} {:>9.1} {:>9.1} {:>6}",
            s.p50(),
            s.p95(),
            s.percentile(100.0),
            s.len()
        );
    }
    println!("  memories stored: {stored} ({} expected: 5 per session)", 5 * runs * 2);
    let (slow_s, overhead) = (&results[0].1, &results[1].1);
    println!("\ntargets");
    println!(
        "{}",
        verdict(
            "10-turn session within 10 s (1 s LLM)",
            slow_s.percentile(100.0) <= 10_000.0,
            format!("max {:.2} s", slow_s.percentile(100.0) / 1000.0)
        )
    );
    println!(
        "{}",
        verdict(
            "own overhead <= 200 ms",
            overhead.p50() <= 200.0,
            format!("p50 {:.1} ms, p95 {:.1} ms", overhead.p50(), overhead.p95())
        )
    );
    figures.add("extraction_10turn_s", slow_s.p50() / 1000.0);
    figures.add("extraction_10turn_max_s", slow_s.percentile(100.0) / 1000.0);
    figures.add("extraction_overhead_ms", overhead.p50());
    figures.add("extraction_overhead_p95_ms", overhead.p95());

    // A long session, no LLM: the default extractor over 312 turns.
    let set = conversations::generate(14);
    let first = &set.conversations[0];
    let long = Conversation {
        user: first.user.clone(),
        sessions: first.sessions[..13].to_vec(),
    };
    let agent: Uuid =
        sqlx::query_scalar("INSERT INTO ibex_core.agents (org_id, name) VALUES ($1, 'long') RETURNING id")
            .bind(org)
            .fetch_one(&admin)
            .await?;
    let sessions = learning::record(&admin, org, agent, &long, true, "long").await?;
    let took = learning::wait_learned(&admin, org, &sessions, Duration::from_secs(300)).await?;
    let learned: i64 =
        sqlx::query_scalar("SELECT count(*) FROM ibex_core.memories WHERE org_id = $1 AND agent_id = $2")
            .bind(org)
            .bind(agent)
            .fetch_one(&admin)
            .await?;
    println!(
        "\n  no LLM: a {}-turn session learned in {:.2} s ({learned} memories)",
        long.turn_count(),
        took.as_secs_f64()
    );
    println!(
        "{}",
        verdict(
            "300-turn session learned without an LLM in under 60 s",
            took < Duration::from_secs(60),
            format!("{:.2} s for {} turns", took.as_secs_f64(), long.turn_count())
        )
    );
    figures.add("extraction_long_session_s", took.as_secs_f64());
    println!();
    print!("{}", figures.render());
    Ok(())
}
