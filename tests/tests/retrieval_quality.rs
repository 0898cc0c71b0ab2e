//! Retrieval quality on the labelled set (bench/src/dataset.rs): about 3,000 memories about 160
//! people and 240 questions (names, values such as numbers and dates, paraphrases), each with one
//! right answer. IBEX search must find the answer in its top 10 more often than vector-only
//! search and than full-text search (both Postgres' ts_rank_cd and a BM25-style ranking).
//! `make bench-memory` prints the same figures per query style.

use ibex_bench::dataset;
use ibex_bench::retrieval::{self, Ranker};
use ibex_e2e::admin;

/// ANALYZE, again when Postgres picks it as a deadlock victim: the indexer worker may be
/// rebuilding the IVFFlat index concurrently (CREATE INDEX CONCURRENTLY waits for this session's
/// transaction while ANALYZE waits for the index build's lock), and Postgres resolves that by
/// cancelling one of the two.
async fn analyze(conn: &mut sqlx::PgConnection) {
    for attempt in 1..=5 {
        match sqlx::query("ANALYZE ibex_core.memories").execute(&mut *conn).await {
            Ok(_) => return,
            Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("40P01") && attempt < 5 => {
                tokio::time::sleep(std::time::Duration::from_millis(200 * attempt)).await;
            }
            Err(e) => panic!("ANALYZE failed: {e}"),
        }
    }
}

#[tokio::test]
async fn ibex_search_beats_vector_only_and_full_text_only() {
    let admin = admin().await;
    let data = dataset::generate(7, 160, 240);
    assert!(data.memories.len() >= 2900 && data.queries.len() == 240);
    let mut conn = admin.acquire().await.unwrap();
    let slug = format!("quality-{}", uuid::Uuid::new_v4().simple());
    let (org, agent) = retrieval::create_org_and_agent(&mut conn, &slug).await.unwrap();
    let ids = retrieval::seed(&mut conn, org, agent, &data.memories, |_| {})
        .await
        .unwrap();
    analyze(&mut conn).await;
    drop(conn);

    let rankers = [Ranker::Vector, Ranker::FullText, Ranker::Lexical, Ranker::Ibex];
    let report = retrieval::evaluate(&admin, org, agent, &data, &ids, &rankers, 10)
        .await
        .unwrap();
    eprintln!("{}", report.table(&rankers));
    let ibex = report.recall(Ranker::Ibex);
    for other in [Ranker::Vector, Ranker::FullText, Ranker::Lexical] {
        assert!(
            ibex > report.recall(other),
            "IBEX {ibex:.3} must beat {} {:.3}",
            other.label(),
            report.recall(other)
        );
    }
    // Not just better on average: no query style may collapse.
    for style in [
        dataset::QueryStyle::Name,
        dataset::QueryStyle::Value,
        dataset::QueryStyle::Paraphrase,
    ] {
        assert!(
            report.recall_for(Ranker::Ibex, style) >= 0.8,
            "{style:?}: {:.3}",
            report.recall_for(Ranker::Ibex, style)
        );
    }
}
