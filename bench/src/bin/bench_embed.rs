//! `make bench-embed`: embedding latency through SQL (`SELECT ibex_embed($1)`) and in-process,
//! batch-512 throughput, and the peer (Python onnxruntime + tokenizers on the same model file,
//! same thread count) measured in the same run, in alternating rounds so drifting machine load
//! hits both sides alike.
//!
//! Environment: IBEX_DATABASE_URL, IBEX_MODEL_DIR, IBEX_ORT_LIB, IBEX_PEER_PYTHON, IBEX_PEER_SCRIPT,
//! optionally IBEX_BENCH_ROUNDS (default 3).

use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context};
use ibex_bench::report::{machine, verdict, Figures};
use ibex_bench::stats::{median, Samples};
use ibex_bench::texts;
use ibex_engine::{Embedder, EmbedderConfig};
use sqlx::Connection;

const SHORT_CALLS: usize = 200;
const LONG_CALLS: usize = 100;
const BATCH: usize = 512;
const BATCH_REPS: usize = 2;

fn env(name: &str) -> anyhow::Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set (run through `make bench-embed`)"))
}

#[derive(serde::Deserialize)]
struct PeerRound {
    short_ms: Vec<f64>,
    long_ms: Vec<f64>,
    batch_texts_per_s: Vec<f64>,
    short_tokens: usize,
    long_tokens: usize,
}

#[derive(Default)]
struct Side {
    short: Samples,
    long: Samples,
    batch_rates: Vec<f64>,
}

async fn sql_round(conn: &mut sqlx::PgConnection, t: &texts::BenchTexts, side: &mut Side) -> anyhow::Result<()> {
    let embed = "SELECT ibex_embed($1)";
    for _ in 0..10 {
        sqlx::query_scalar::<_, pgvector::Vector>(embed)
            .bind(&t.short)
            .fetch_one(&mut *conn)
            .await?;
    }
    for (text, calls, samples) in [
        (&t.short, SHORT_CALLS, &mut side.short),
        (&t.long, LONG_CALLS, &mut side.long),
    ] {
        for _ in 0..calls {
            let started = Instant::now();
            let v: pgvector::Vector = sqlx::query_scalar(embed).bind(text).fetch_one(&mut *conn).await?;
            samples.push(started.elapsed());
            debug_assert_eq!(v.as_slice().len(), 384);
        }
    }
    for _ in 0..BATCH_REPS {
        let started = Instant::now();
        let out: Vec<pgvector::Vector> = sqlx::query_scalar("SELECT ibex_embed_batch($1)")
            .bind(&t.batch)
            .fetch_one(&mut *conn)
            .await?;
        side.batch_rates
            .push(out.len() as f64 / started.elapsed().as_secs_f64());
    }
    Ok(())
}

fn inproc_round(e: &Embedder, t: &texts::BenchTexts, side: &mut Side) -> anyhow::Result<()> {
    for _ in 0..10 {
        e.embed(&t.short)?;
    }
    for (text, calls, samples) in [
        (&t.short, SHORT_CALLS, &mut side.short),
        (&t.long, LONG_CALLS, &mut side.long),
    ] {
        for _ in 0..calls {
            let started = Instant::now();
            e.embed(text)?;
            samples.push(started.elapsed());
        }
    }
    for _ in 0..BATCH_REPS {
        let started = Instant::now();
        let out = e.embed_batch(&t.batch)?;
        side.batch_rates
            .push(out.len() as f64 / started.elapsed().as_secs_f64());
    }
    Ok(())
}

fn peer_round(
    python: &str,
    script: &str,
    model_dir: &str,
    texts_file: &str,
    side: &mut Side,
) -> anyhow::Result<(usize, usize)> {
    let out = Command::new(python)
        .args([
            script,
            "--model-dir",
            model_dir,
            "--texts",
            texts_file,
            "--threads",
            "1",
        ])
        .args([
            "--short",
            &SHORT_CALLS.to_string(),
            "--long",
            &LONG_CALLS.to_string(),
            "--batch-reps",
            &BATCH_REPS.to_string(),
        ])
        .output()
        .context("running the Python peer")?;
    if !out.status.success() {
        bail!("peer failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let r: PeerRound = serde_json::from_slice(&out.stdout).context("peer output")?;
    side.short.0.extend(r.short_ms);
    side.long.0.extend(r.long_ms);
    side.batch_rates.extend(r.batch_texts_per_s);
    Ok((r.short_tokens, r.long_tokens))
}

fn row(name: &str, s: &Samples) -> String {
    format!(
        "  {name:<28} {:>8.2} {:>8.2} {:>8.2} {:>7}",
        s.p50(),
        s.p95(),
        s.p99(),
        s.len()
    )
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let db_url = env("IBEX_DATABASE_URL")?;
    let model_dir = env("IBEX_MODEL_DIR")?;
    let ort_lib = env("IBEX_ORT_LIB")?;
    let python = env("IBEX_PEER_PYTHON")?;
    let script = env("IBEX_PEER_SCRIPT")?;
    let rounds: usize = std::env::var("IBEX_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);

    let t = texts::all(BATCH);
    let texts_file = std::env::temp_dir().join(format!("ibex-bench-texts-{}.json", std::process::id()));
    std::fs::write(&texts_file, serde_json::to_vec(&t)?)?;
    let texts_file = texts_file.to_string_lossy().to_string();

    let embedder = Embedder::load(&EmbedderConfig::new(&model_dir, &ort_lib).with_threads(1))?;
    let mut conn = sqlx::PgConnection::connect(&db_url).await?;
    let threads: String = sqlx::query_scalar("SHOW ibex.inference_threads")
        .fetch_one(&mut conn)
        .await?;

    println!("bench-embed: all-MiniLM-L6-v2 (int8 ONNX), ONNX Runtime 1.32.0, 1 intra-op thread everywhere");
    println!("machine: {}", machine());
    println!(
        "inputs: short {:?} ({} tokens), long text ({} tokens), batch of {BATCH} sentences; {rounds} alternating rounds of {SHORT_CALLS} short + {LONG_CALLS} long calls + {BATCH_REPS} batches per side (server ibex.inference_threads = {threads})",
        t.short,
        embedder.token_count(&t.short)?,
        embedder.token_count(&t.long)?
    );

    let (mut sql, mut inproc, mut peer) = (Side::default(), Side::default(), Side::default());
    for round in 1..=rounds {
        eprintln!("round {round}/{rounds}: SQL");
        sql_round(&mut conn, &t, &mut sql).await?;
        eprintln!("round {round}/{rounds}: in-process");
        inproc_round(&embedder, &t, &mut inproc)?;
        eprintln!("round {round}/{rounds}: peer (Python onnxruntime)");
        peer_round(&python, &script, &model_dir, &texts_file, &mut peer)?;
    }
    let _ = std::fs::remove_file(&texts_file);

    println!(
        "\n  {:<28} {:>8} {:>8} {:>8} {:>7}",
        "latency (ms)", "p50", "p95", "p99", "calls"
    );
    println!("{}", row("SQL ibex_embed short", &sql.short));
    println!("{}", row("SQL ibex_embed long", &sql.long));
    println!("{}", row("in-process short", &inproc.short));
    println!("{}", row("in-process long", &inproc.long));
    println!("{}", row("peer (Python) short", &peer.short));
    println!("{}", row("peer (Python) long", &peer.long));
    let (sql_rate, inproc_rate, peer_rate) = (
        median(&sql.batch_rates),
        median(&inproc.batch_rates),
        median(&peer.batch_rates),
    );
    println!(
        "\n  batch of {BATCH} (texts/s, median of {} runs)",
        sql.batch_rates.len()
    );
    println!("  {:<28} {:>8.1}", "SQL ibex_embed_batch", sql_rate);
    println!("  {:<28} {:>8.1}", "in-process embed_batch", inproc_rate);
    println!("  {:<28} {:>8.1}", "peer (Python)", peer_rate);

    let sql_ratio = sql.short.p50() / peer.short.p50();
    let inproc_ratio = inproc.short.p50() / peer.short.p50();
    println!("\ntargets");
    println!(
        "{}",
        verdict(
            "SQL short p50 <= 1.2x peer",
            sql_ratio <= 1.2,
            format!("{sql_ratio:.3}x")
        )
    );
    println!(
        "{}",
        verdict(
            "SQL short p50 <= 20 ms",
            sql.short.p50() <= 20.0,
            format!("{:.2} ms", sql.short.p50())
        )
    );
    println!(
        "{}",
        verdict(
            "in-process short p50 <= 1.05x peer",
            inproc_ratio <= 1.05,
            format!("{inproc_ratio:.3}x")
        )
    );
    println!(
        "{}",
        verdict(
            "batch-512 throughput >= peer",
            sql_rate >= peer_rate,
            format!("SQL {sql_rate:.1} vs peer {peer_rate:.1} texts/s")
        )
    );

    let mut f = Figures::default();
    f.add("embed_sql_short_p50_ms", sql.short.p50());
    f.add("embed_sql_short_p95_ms", sql.short.p95());
    f.add("embed_sql_short_p99_ms", sql.short.p99());
    f.add("embed_sql_long_p50_ms", sql.long.p50());
    f.add("embed_sql_long_p99_ms", sql.long.p99());
    f.add("embed_inproc_short_p50_ms", inproc.short.p50());
    f.add("embed_inproc_long_p50_ms", inproc.long.p50());
    f.add("peer_short_p50_ms", peer.short.p50());
    f.add("peer_long_p50_ms", peer.long.p50());
    f.add("batch512_texts_per_s", sql_rate);
    f.add("batch512_inproc_texts_per_s", inproc_rate);
    f.add("peer_batch512_texts_per_s", peer_rate);
    f.add("embed_sql_vs_peer_short_p50_ratio", sql_ratio);
    f.add("embed_inproc_vs_peer_short_p50_ratio", inproc_ratio);
    println!();
    print!("{}", f.render());
    Ok(())
}
