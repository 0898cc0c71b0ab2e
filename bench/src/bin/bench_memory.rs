//! `make bench-memory`: the memory pipeline at scale, and retrieval quality.
//!
//! 1. Scale: for 10k and 100k memories over 100 agents (one database each, seeded in bulk with
//!    batch embedding and cached between runs), write latency (`ibex_core.remember`), search
//!    latency (`ibex_core.search`, query embedding included), recall@10 of the indexed (IVFFlat)
//!    candidate path against exact search, and the peer: plain pgvector,
//!    `ORDER BY embedding <=> ibex_embed($1) LIMIT 10` with the same org/agent filter, measured
//!    with the same queries, query by query in turn (then a round of writes).
//! 2. Quality: recall@10 on the labelled retrieval set for vector-only, full-text-only and IBEX.
//! 3. Conversations: the labelled multi-session conversational set (bench/src/conversations.rs)
//!    replayed as sessions and learned by the dev cluster's extraction workers without an LLM;
//!    the share of the turns later questions need that the learned memories cover, and recall@10
//!    of those turns per question kind for vector-only, full-text-only and IBEX.
//!
//! Environment (scripts/bench-memory.sh sets it): IBEX_BENCH_URL_10K, IBEX_BENCH_URL_100K,
//! IBEX_BENCH_URL_QUALITY (superuser URLs of migrated databases), IBEX_BENCH_URL_LEARNING (the
//! database the extraction workers serve), IBEX_BENCH_PARTS (default "scale,quality,conversations"), IBEX_BENCH_SIZES (default
//! "10000,100000"), IBEX_BENCH_ROUNDS (default 3), IBEX_BENCH_REUSE_LEARNED=1 (the conversational
//! part measures what an earlier run learned instead of replaying the set: for tuning the
//! ranking only), IBEX_BENCH_MISSES (IBEX misses listed per question kind, default 5).

use std::time::Instant;

use anyhow::Context;
use ibex_bench::conversations::{self, Kind};
use ibex_bench::dataset::{self, Dataset, QueryStyle};
use ibex_bench::learning;
use ibex_bench::report::{machine, verdict, Figures};
use ibex_bench::retrieval::{self, Ranker};
use ibex_bench::stats::Samples;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

const AGENTS: usize = 100;
/// Bump when the seeded corpus changes, so cached databases are rebuilt.
const SEED_VERSION: i32 = 1;
const CALLS_PER_ROUND: usize = 100;
const RECALL_QUERIES: usize = 200;

struct Corpus {
    org: Uuid,
    agents: Vec<Uuid>,
    /// Per agent: the queries of its dataset.
    queries: Vec<Vec<String>>,
    facts: Vec<String>,
}

fn agent_dataset(agent_index: usize, per_agent: usize) -> Dataset {
    // 19 facts per person: enough people to fill the agent's share.
    let people = per_agent.div_ceil(18) + 1;
    let mut d = dataset::generate(1000 + agent_index as u64, people, 60);
    d.memories.truncate(per_agent);
    d.queries.retain(|q| q.answer < per_agent);
    d
}

async fn seeded_rows(conn: &mut PgConnection) -> anyhow::Result<Option<i64>> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('public.ibex_bench_seed') IS NOT NULL")
        .fetch_one(&mut *conn)
        .await?;
    if !exists {
        return Ok(None);
    }
    Ok(
        sqlx::query_scalar("SELECT rows FROM public.ibex_bench_seed WHERE version = $1")
            .bind(SEED_VERSION)
            .fetch_optional(&mut *conn)
            .await?,
    )
}

/// Seeds `size` memories over 100 agents unless the database already holds this corpus.
async fn ensure_corpus(url: &str, size: usize) -> anyhow::Result<Corpus> {
    let per_agent = size / AGENTS;
    let mut conn = PgConnection::connect(url).await?;
    let datasets: Vec<Dataset> = (0..AGENTS).map(|a| agent_dataset(a, per_agent)).collect();
    let queries: Vec<Vec<String>> = datasets
        .iter()
        .map(|d| d.queries.iter().map(|q| q.text.clone()).collect())
        .collect();
    let facts: Vec<String> = datasets[0].memories.iter().map(|m| m.content.clone()).collect();
    if seeded_rows(&mut conn).await? == Some(size as i64) {
        let org: Uuid = sqlx::query_scalar("SELECT id FROM ibex_core.orgs WHERE slug = 'bench'")
            .fetch_one(&mut conn)
            .await?;
        let agents: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM ibex_core.agents WHERE org_id = $1 ORDER BY name")
            .bind(org)
            .fetch_all(&mut conn)
            .await?;
        eprintln!("bench-memory: reusing the seeded {size}-memory database");
        return Ok(Corpus {
            org,
            agents,
            queries,
            facts,
        });
    }
    eprintln!("bench-memory: seeding {size} memories over {AGENTS} agents (batch embedding; cached for later runs)");
    let org: Uuid =
        sqlx::query_scalar("INSERT INTO ibex_core.orgs (name, slug) VALUES ('bench', 'bench') RETURNING id")
            .fetch_one(&mut conn)
            .await?;
    let mut agents = Vec::new();
    for a in 0..AGENTS {
        let id: Uuid = sqlx::query_scalar("INSERT INTO ibex_core.agents (org_id, name) VALUES ($1, $2) RETURNING id")
            .bind(org)
            .bind(format!("agent-{a:03}"))
            .fetch_one(&mut conn)
            .await?;
        agents.push(id);
    }
    // Two loaders in parallel: embedding is CPU-bound and each backend uses one core.
    let started = Instant::now();
    let pool = PgPoolOptions::new().max_connections(2).connect(url).await?;
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for worker in 0..2 {
        let pool = pool.clone();
        let agents = agents.clone();
        let datasets: Vec<(usize, Vec<dataset::Memory>)> = datasets
            .iter()
            .enumerate()
            .filter(|(a, _)| a % 2 == worker)
            .map(|(a, d)| (a, d.memories.clone()))
            .collect();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = pool.acquire().await?;
            for (a, memories) in datasets {
                retrieval::seed(&mut conn, org, agents[a], &memories, |_| {}).await?;
                let n = done.fetch_add(memories.len(), std::sync::atomic::Ordering::Relaxed) + memories.len();
                if n % (size / 10).max(1) < memories.len() {
                    let secs = started.elapsed().as_secs_f64();
                    eprintln!("  seeded {n}/{size} ({:.0}/s, {:.0}s elapsed)", n as f64 / secs, secs);
                }
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    eprintln!("bench-memory: analyzing and training the IVFFlat centroids on the seeded rows");
    sqlx::query("ANALYZE ibex_core.memories").execute(&mut conn).await?;
    sqlx::query("REINDEX INDEX ibex_core.memories_embedding_ivfflat")
        .execute(&mut conn)
        .await?;
    sqlx::query(
        "INSERT INTO ibex_ops.maintenance_log (worker, action, detail, finished_at)
         VALUES ('bench', 'ivfflat_rebuild', jsonb_build_object('lists', 100, 'rows', $1::bigint, 'reason', 'bench seed'), now())",
    )
    .bind(size as i64)
    .execute(&mut conn)
    .await?;
    sqlx::query("CREATE TABLE IF NOT EXISTS public.ibex_bench_seed (version int PRIMARY KEY, rows bigint NOT NULL)")
        .execute(&mut conn)
        .await?;
    sqlx::query(
        "INSERT INTO public.ibex_bench_seed VALUES ($1, $2) ON CONFLICT (version) DO UPDATE SET rows = excluded.rows",
    )
    .bind(SEED_VERSION)
    .bind(size as i64)
    .execute(&mut conn)
    .await?;
    eprintln!("bench-memory: seeded in {:.0}s", started.elapsed().as_secs_f64());
    Ok(Corpus {
        org,
        agents,
        queries,
        facts,
    })
}

const IBEX_SEARCH: &str = "SELECT count(*) FROM ibex_core.search($1, $2, $3, 10)";
// The peer computes the query embedding once, in a scalar subquery: written as a bare
// `ibex_embed($3)` in ORDER BY, a plan that sorts instead of using the index would call it per row.
const PEER_SEARCH: &str = "SELECT count(*) FROM (SELECT id FROM ibex_core.memories \
    WHERE org_id = $1 AND agent_id = $2 AND status = 'active' ORDER BY embedding <=> (SELECT ibex_embed($3)) LIMIT 10) t";
const INDEXED_TOP10: &str =
    "SELECT id FROM ibex_core.memories WHERE org_id = $1 AND agent_id = $2 AND status = 'active' \
    ORDER BY embedding <=> (SELECT ibex_embed($3)) LIMIT 10";
const EXACT_TOP10: &str = "WITH q AS MATERIALIZED (SELECT ibex_embed($3) AS v), \
    c AS MATERIALIZED (SELECT m.id, m.embedding <=> q.v AS d FROM ibex_core.memories m, q \
    WHERE m.org_id = $1 AND m.agent_id = $2 AND m.status = 'active') SELECT id FROM c ORDER BY d LIMIT 10";

async fn session(url: &str, org: Uuid, tuned: bool) -> anyhow::Result<PgConnection> {
    let mut c = PgConnection::connect(url).await?;
    sqlx::query("SELECT set_config('ibex.org_id', $1, false)")
        .bind(org.to_string())
        .execute(&mut c)
        .await?;

    if tuned {
        // A pgvector user who tuned the index the way IBEX's search does.
        sqlx::query("SET ivfflat.probes = 10").execute(&mut c).await?;
        sqlx::query("SET ivfflat.iterative_scan = relaxed_order")
            .execute(&mut c)
            .await?;
    }
    Ok(c)
}

/// An IBEX session whose searches always take the IVFFlat path (no exact scan for small agents).
async fn ivfflat_session(url: &str, org: Uuid) -> anyhow::Result<PgConnection> {
    let mut c = session(url, org, false).await?;
    sqlx::query("SET ibex.exact_search_max_memories = 0")
        .execute(&mut c)
        .await?;
    Ok(c)
}

async fn timed_query(
    c: &mut PgConnection,
    sql: &str,
    org: Uuid,
    agent: Uuid,
    text: &str,
    s: &mut Samples,
) -> anyhow::Result<()> {
    let t = Instant::now();
    let _: i64 = sqlx::query_scalar(sql)
        .bind(org)
        .bind(agent)
        .bind(text)
        .fetch_one(&mut *c)
        .await?;
    s.push(t.elapsed());
    Ok(())
}

async fn recall(c: &mut PgConnection, corpus: &Corpus, pick: &[(usize, usize)]) -> anyhow::Result<f64> {
    let mut hits = 0usize;
    let mut total = 0usize;
    for &(a, q) in pick {
        let text = &corpus.queries[a][q];
        let approx: Vec<Uuid> = sqlx::query_scalar(INDEXED_TOP10)
            .bind(corpus.org)
            .bind(corpus.agents[a])
            .bind(text)
            .fetch_all(&mut *c)
            .await?;
        let exact: Vec<Uuid> = sqlx::query_scalar(EXACT_TOP10)
            .bind(corpus.org)
            .bind(corpus.agents[a])
            .bind(text)
            .fetch_all(&mut *c)
            .await?;
        hits += exact.iter().filter(|id| approx.contains(id)).count();
        total += exact.len();
    }
    Ok(hits as f64 / total.max(1) as f64)
}

fn row(name: &str, s: &Samples) -> String {
    format!(
        "  {name:<38} {:>8.2} {:>8.2} {:>8.2} {:>7}",
        s.p50(),
        s.p95(),
        s.p99(),
        s.len()
    )
}

async fn scale(url: &str, size: usize, rounds: usize, figures: &mut Figures) -> anyhow::Result<()> {
    let corpus = ensure_corpus(url, size).await?;
    let label = if size >= 1000 {
        format!("{}k", size / 1000)
    } else {
        size.to_string()
    };
    let mut ours = session(url, corpus.org, false).await?;
    let mut peer = session(url, corpus.org, false).await?;
    let mut tuned = session(url, corpus.org, true).await?;
    let mut forced = ivfflat_session(url, corpus.org).await?;
    let mut rng = dataset::Rng::new(42 + size as u64);
    let mut pick = |n: usize| -> Vec<(usize, usize)> {
        (0..n)
            .map(|_| {
                let a = rng.below(AGENTS);
                (a, rng.below(corpus.queries[a].len().max(1)))
            })
            .collect()
    };
    // Warm every connection (model load, plan caches) before timing.
    for (a, q) in pick(30) {
        let text = &corpus.queries[a][q];
        let mut sink = Samples::default();
        timed_query(&mut ours, IBEX_SEARCH, corpus.org, corpus.agents[a], text, &mut sink).await?;
        timed_query(&mut peer, PEER_SEARCH, corpus.org, corpus.agents[a], text, &mut sink).await?;
        timed_query(&mut tuned, PEER_SEARCH, corpus.org, corpus.agents[a], text, &mut sink).await?;
        timed_query(&mut forced, IBEX_SEARCH, corpus.org, corpus.agents[a], text, &mut sink).await?;
    }
    let (mut s_ours, mut s_peer, mut s_tuned, mut s_write) = (
        Samples::default(),
        Samples::default(),
        Samples::default(),
        Samples::default(),
    );
    let mut s_forced = Samples::default();
    let run: u32 = (Uuid::new_v4().as_u128() % 100_000) as u32;
    for round in 0..rounds {
        eprintln!("bench-memory {label}: round {}/{rounds}", round + 1);
        let queries = pick(CALLS_PER_ROUND);
        // Query by query, each side in turn: whatever the machine does meanwhile (a checkpoint,
        // autovacuum after the writes, a neighbour's burst) lands on all sides alike.
        for &(a, q) in &queries {
            let text = &corpus.queries[a][q];
            let agent = corpus.agents[a];
            timed_query(&mut ours, IBEX_SEARCH, corpus.org, agent, text, &mut s_ours).await?;
            timed_query(&mut peer, PEER_SEARCH, corpus.org, agent, text, &mut s_peer).await?;
            timed_query(&mut tuned, PEER_SEARCH, corpus.org, agent, text, &mut s_tuned).await?;
            timed_query(&mut forced, IBEX_SEARCH, corpus.org, agent, text, &mut s_forced).await?;
        }
        for (i, &(a, _)) in queries.iter().enumerate() {
            let fact = &corpus.facts[(round * CALLS_PER_ROUND + i) % corpus.facts.len()];
            // A realistic fact, made unique so every write runs the whole pipeline (no duplicate path).
            let content = format!("{fact} Confirmed in week {} of run {run}.", round * CALLS_PER_ROUND + i);
            let t = Instant::now();
            let (_, path): (Uuid, String) =
                sqlx::query_as("SELECT memory_id, path FROM ibex_core.remember($1, $2, $3, 'declarative', 0.8)")
                    .bind(corpus.org)
                    .bind(corpus.agents[a])
                    .bind(&content)
                    .fetch_one(&mut ours)
                    .await?;
            s_write.push(t.elapsed());
            debug_assert_ne!(path, "duplicate");
        }
    }
    let recall_pick = pick(RECALL_QUERIES);
    let mut r = session(url, corpus.org, true).await?;
    let ours_recall = recall(&mut r, &corpus, &recall_pick).await?;
    let mut d = session(url, corpus.org, false).await?;
    let peer_recall = recall(&mut d, &corpus, &recall_pick).await?;

    println!(
        "\n{label} memories ({} agents, {} per agent), {} calls each, {rounds} alternating rounds",
        AGENTS,
        size / AGENTS,
        s_ours.len()
    );
    println!(
        "  {:<38} {:>8} {:>8} {:>8} {:>7}",
        "latency (ms)", "p50", "p95", "p99", "calls"
    );
    println!("{}", row("IBEX remember (write pipeline)", &s_write));
    println!("{}", row("IBEX search (k=10)", &s_ours));
    println!("{}", row("IBEX search, IVFFlat path forced", &s_forced));
    println!("{}", row("peer: pgvector, defaults (probes=1)", &s_peer));
    println!("{}", row("peer: pgvector, probes=10 + iterative", &s_tuned));
    println!("  recall@10 against exact search ({RECALL_QUERIES} queries): IVFFlat path as IBEX runs it (probes=10, iterative scan) {ours_recall:.3}, pgvector defaults (probes=1) {peer_recall:.3}");
    println!(
        "  (agents with <= ibex.exact_search_max_memories memories are searched exactly: recall 1.0 by construction)"
    );
    let ratio = s_ours.p95() / s_peer.p95();
    let ratio_tuned = s_ours.p95() / s_tuned.p95();
    println!(
        "{}",
        verdict(
            &format!("write p95 <= 25 ms ({label})"),
            s_write.p95() <= 25.0,
            format!("{:.2} ms", s_write.p95())
        )
    );
    println!(
        "{}",
        verdict(
            &format!("search p95 <= 15 ms ({label})"),
            s_ours.p95() <= 15.0,
            format!("{:.2} ms", s_ours.p95())
        )
    );
    println!(
        "{}",
        verdict(
            "search p95 <= 1.3x peer (defaults)",
            ratio <= 1.3,
            format!("{ratio:.3}x")
        )
    );
    println!(
        "{}",
        verdict(
            "search p95 <= 1.3x peer (tuned)",
            ratio_tuned <= 1.3,
            format!("{ratio_tuned:.3}x")
        )
    );
    println!(
        "{}",
        verdict("recall@10 >= 0.95", ours_recall >= 0.95, format!("{ours_recall:.3}"))
    );
    for (name, value) in [
        ("write_p50_ms", s_write.p50()),
        ("write_p95_ms", s_write.p95()),
        ("write_p99_ms", s_write.p99()),
        ("search_p50_ms", s_ours.p50()),
        ("search_p95_ms", s_ours.p95()),
        ("search_p99_ms", s_ours.p99()),
        ("search_ivfflat_p50_ms", s_forced.p50()),
        ("search_ivfflat_p95_ms", s_forced.p95()),
        ("recall_at_10", ours_recall),
        ("peer_search_p50_ms", s_peer.p50()),
        ("peer_search_p95_ms", s_peer.p95()),
        ("peer_recall_at_10", peer_recall),
        ("peer_tuned_search_p95_ms", s_tuned.p95()),
        ("search_vs_peer_p95_ratio", ratio),
    ] {
        figures.add(&format!("{name}_{label}"), value);
    }
    Ok(())
}

async fn quality(url: &str, figures: &mut Figures) -> anyhow::Result<()> {
    let data = dataset::generate(7, 160, 240);
    let pool = PgPoolOptions::new().max_connections(1).connect(url).await?;
    let mut conn = pool.acquire().await?;
    let existing: Option<(Uuid, Uuid)> = sqlx::query_as(
        "SELECT o.id, a.id FROM ibex_core.orgs o JOIN ibex_core.agents a ON a.org_id = o.id WHERE o.slug = 'quality-v1'",
    )
    .fetch_optional(&mut *conn)
    .await?;
    let (org, agent, ids) = match existing {
        Some((org, agent)) => {
            // Seeded earlier: map the dataset's (distinct) contents back to their ids.
            let rows: Vec<(Uuid, String)> =
                sqlx::query_as("SELECT id, content FROM ibex_core.memories WHERE org_id = $1 AND agent_id = $2")
                    .bind(org)
                    .bind(agent)
                    .fetch_all(&mut *conn)
                    .await?;
            let by_content: std::collections::HashMap<String, Uuid> = rows.into_iter().map(|(id, c)| (c, id)).collect();
            let ids = data
                .memories
                .iter()
                .filter_map(|m| by_content.get(&m.content).copied())
                .collect();
            (org, agent, ids)
        }
        None => {
            eprintln!(
                "bench-memory: seeding the labelled retrieval set ({} memories)",
                data.memories.len()
            );
            let (org, agent) = retrieval::create_org_and_agent(&mut conn, "quality-v1").await?;
            let ids = retrieval::seed(&mut conn, org, agent, &data.memories, |n| eprint!("\r  seeded {n}")).await?;
            eprintln!();
            sqlx::query("ANALYZE ibex_core.memories").execute(&mut *conn).await?;
            (org, agent, ids)
        }
    };
    drop(conn);
    anyhow::ensure!(
        ids.len() == data.memories.len(),
        "quality corpus has {} rows, expected {}",
        ids.len(),
        data.memories.len()
    );
    let rankers = [Ranker::Vector, Ranker::FullText, Ranker::Lexical, Ranker::Ibex];
    let report = retrieval::evaluate(&pool, org, agent, &data, &ids, &rankers, 10).await?;
    println!("\nretrieval quality: labelled set of {} memories, {} queries (names, values: numbers/dates/places, paraphrases)", data.memories.len(), data.queries.len());
    print!("{}", report.table(&rankers));
    let best_other = [Ranker::Vector, Ranker::FullText, Ranker::Lexical]
        .iter()
        .map(|&r| report.recall(r))
        .fold(0.0, f64::max);
    println!(
        "{}",
        verdict(
            "IBEX beats vector-only and full-text-only",
            report.recall(Ranker::Ibex) > best_other,
            format!("{:.3} vs best other {best_other:.3}", report.recall(Ranker::Ibex))
        )
    );
    let weights: Vec<f64> = std::env::var("IBEX_BENCH_WEIGHTS")
        .unwrap_or_else(|_| "0,0.1,0.2,0.35,0.5,0.7".into())
        .split(',')
        .filter_map(|w| w.trim().parse().ok())
        .collect();
    if !weights.is_empty() {
        println!("  lexical weight sweep (relevance = (1-w)*semantic + w*lexical):");
        for w in weights {
            sqlx::query(&format!("SET ibex.lexical_weight = {w}"))
                .execute(&pool)
                .await?;
            let r = retrieval::evaluate(&pool, org, agent, &data, &ids, &[Ranker::Ibex], 10).await?;
            let styles = [QueryStyle::Name, QueryStyle::Value, QueryStyle::Paraphrase];
            let per: Vec<String> = styles
                .iter()
                .map(|s| format!("{} {:.3}", s.label(), r.recall_for(Ranker::Ibex, *s)))
                .collect();
            println!(
                "    w={w:<5} recall@10 {:.3} ({})",
                r.recall(Ranker::Ibex),
                per.join(", ")
            );
        }
        sqlx::query("RESET ibex.lexical_weight").execute(&pool).await?;
    }
    figures.add("quality_recall_at_10_vector", report.recall(Ranker::Vector));
    figures.add("quality_recall_at_10_fulltext", report.recall(Ranker::FullText));
    figures.add("quality_recall_at_10_bm25", report.recall(Ranker::Lexical));
    figures.add("quality_recall_at_10_ibex", report.recall(Ranker::Ibex));
    Ok(())
}

/// The conversational set learned without an LLM, and retrieval of the turns its questions need.
async fn conversational(url: &str, figures: &mut Figures) -> anyhow::Result<()> {
    let set = conversations::generate(learning::SET_SEED);
    let admin = PgPoolOptions::new().max_connections(2).connect(url).await?;
    let llm: String = sqlx::query_scalar("SELECT coalesce(current_setting('ibex.llm_base_url', true), '')")
        .fetch_one(&admin)
        .await?;
    anyhow::ensure!(
        llm.is_empty(),
        "ibex.llm_base_url is set on the dev cluster ({llm}): this part measures learning without an LLM; reset it first"
    );
    let turns: usize = set.conversations.iter().map(|c| c.turn_count()).sum();
    println!(
        "\nconversations: {} conversations of {} sessions, {turns} turns in all, {} questions; learned by the extraction workers with no LLM",
        set.conversations.len(),
        conversations::SESSIONS,
        set.questions.len()
    );
    let slug = learning::SET_SLUG;
    let reused = if std::env::var("IBEX_BENCH_REUSE_LEARNED").is_ok_and(|v| v == "1") {
        learning::reuse_set(&admin, &set, slug).await?
    } else {
        None
    };
    let learned = match reused {
        Some(learned) => {
            println!("  reusing what an earlier run learned (IBEX_BENCH_REUSE_LEARNED=1)");
            learned
        }
        None => {
            let (learned, took) = learning::learn_set(&admin, &set, slug).await?;
            println!("  learned in {:.1} s", took.as_secs_f64());
            learned
        }
    };
    let sources = learning::sources(&admin, &learned).await?;
    let coverage = learning::coverage(&set, &sources);
    println!(
        "  {:<14} {:>7} {:>11} {:>9} {:>13} {:>9}",
        "conversation", "turns", "user turns", "memories", "needed turns", "covered"
    );
    for (c, cov) in coverage.iter().enumerate() {
        println!(
            "  {:<14} {:>7} {:>11} {:>9} {:>13} {:>8.1}%",
            format!("#{c} ({})", set.conversations[c].user),
            cov.turns,
            cov.user_turns,
            cov.memories,
            cov.needed_turns,
            100.0 * cov.covered_turns as f64 / cov.needed_turns.max(1) as f64
        );
    }
    let needed: usize = coverage.iter().map(|c| c.needed_turns).sum();
    let covered: usize = coverage.iter().map(|c| c.covered_turns).sum();
    let memories: usize = coverage.iter().map(|c| c.memories).sum();
    let share = covered as f64 / needed.max(1) as f64;
    println!(
        "{}",
        verdict(
            "the default learns memories covering >= 90% of the needed turns",
            share >= 0.9,
            format!("{:.1}% ({covered} of {needed})", 100.0 * share)
        )
    );
    println!(
        "{}",
        verdict(
            "no more memories than turns",
            memories <= turns,
            format!("{memories} memories from {turns} turns")
        )
    );

    let rankers = [Ranker::Vector, Ranker::FullText, Ranker::IbexUnbridged, Ranker::Ibex];
    let recall = learning::recall(&admin, &learned, &set.questions, &sources, &rankers, 10).await?;
    println!(
        "  {:<30} {:>7} {:>9} {:>9} {:>9} {:>11}",
        "recall@10 of evidence turns", "all", "single", "multi-hop", "temporal", "paraphrase"
    );
    let counts: Vec<String> = std::iter::once(None)
        .chain(Kind::ALL.iter().copied().map(Some))
        .map(|k| recall.questions(k).to_string())
        .collect();
    println!(
        "  {:<30} {:>7} {:>9} {:>9} {:>9} {:>11}",
        "(questions)", counts[0], counts[1], counts[2], counts[3], counts[4]
    );
    for (r, ranker) in rankers.iter().enumerate() {
        print!("  {:<30} {:>7.3}", ranker.label(), recall.of(r, None));
        for (i, kind) in Kind::ALL.iter().enumerate() {
            let width = if i == 3 { 11 } else { 9 };
            print!(" {:>width$.3}", recall.of(r, Some(*kind)));
        }
        println!();
        let name = match ranker {
            Ranker::Vector => "vector",
            Ranker::FullText => "fulltext",
            Ranker::IbexUnbridged => "ibex_unbridged",
            _ => "ibex",
        };
        figures.add(&format!("conversations_recall_at_10_{name}"), recall.of(r, None));
        for kind in Kind::ALL {
            figures.add(
                &format!("conversations_recall_at_10_{name}_{}", kind.label().replace('-', "_")),
                recall.of(r, Some(kind)),
            );
        }
    }
    let shown: usize = std::env::var("IBEX_BENCH_MISSES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    if !recall.ibex_misses.is_empty() && shown > 0 {
        println!("  IBEX misses (IBEX_BENCH_MISSES={shown} shows that many per kind):");
        for kind in Kind::ALL {
            for miss in recall.ibex_misses.iter().filter(|m| m.kind == kind).take(shown) {
                println!(
                    "    {:<10} {} of {} turns found: {}",
                    kind.label(),
                    miss.found,
                    miss.needed,
                    miss.question
                );
            }
        }
    }
    println!(
        "  temporal questions whose date is written in a memory IBEX returned: {} of {} ({:.1}%)",
        recall.dated,
        recall.temporal,
        100.0 * recall.dated as f64 / recall.temporal.max(1) as f64
    );
    figures.add(
        "conversations_temporal_dated",
        recall.dated as f64 / recall.temporal.max(1) as f64,
    );
    // The same questions searched without and with bridging, alternately (machine noise
    // hits both alike): what bridging costs.
    let search = Samples(recall.ibex_ms.clone());
    let unbridged = Samples(recall.unbridged_ms.clone());
    println!(
        "  IBEX search on these agents: p50 {:.1} ms, p95 {:.1} ms; without bridging p50 {:.1} ms, p95 {:.1} ms ({} searches each)",
        search.percentile(50.0),
        search.percentile(95.0),
        unbridged.percentile(50.0),
        unbridged.percentile(95.0),
        recall.ibex_ms.len()
    );
    let slowdown = search.percentile(95.0) / unbridged.percentile(95.0).max(1e-9);
    println!(
        "{}",
        verdict(
            "bridging slows search p95 by at most 10%",
            slowdown <= 1.10,
            format!("{:+.1}%", 100.0 * (slowdown - 1.0))
        )
    );
    figures.add("conversations_bridging_p95_ratio", slowdown);
    figures.add("conversations_coverage", share);
    figures.add("conversations_memories_per_turn", memories as f64 / turns as f64);
    figures.add("conversations_search_p95_ms", search.percentile(95.0));
    Ok(())
}

fn env(name: &str) -> anyhow::Result<String> {
    std::env::var(name).with_context(|| format!("{name} is not set (run through `make bench-memory`)"))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let sizes: Vec<usize> = std::env::var("IBEX_BENCH_SIZES")
        .unwrap_or_else(|_| "10000,100000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let rounds: usize = std::env::var("IBEX_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    println!(
        "bench-memory: ibex_core.remember / ibex_core.search against plain pgvector, same data, same query embedding"
    );
    println!("machine: {}", machine());
    println!(
        "inputs: {AGENTS} agents in one org; queries are questions about the agent's people; writes are new facts"
    );
    // IBEX_BENCH_PARTS: which of scale, quality, conversations to run (default all).
    let parts = std::env::var("IBEX_BENCH_PARTS").unwrap_or_else(|_| "scale,quality,conversations".into());
    let part = |name: &str| parts.split(',').any(|p| p.trim() == name);
    let mut figures = Figures::default();
    for size in sizes.into_iter().filter(|_| part("scale")) {
        let url = env(if size <= 10_000 {
            "IBEX_BENCH_URL_10K"
        } else {
            "IBEX_BENCH_URL_100K"
        })?;
        scale(&url, size, rounds, &mut figures).await?;
    }
    if part("quality") {
        quality(&env("IBEX_BENCH_URL_QUALITY")?, &mut figures).await?;
    }
    if part("conversations") {
        conversational(&env("IBEX_BENCH_URL_LEARNING")?, &mut figures).await?;
    }
    println!();
    print!("{}", figures.render());
    Ok(())
}
