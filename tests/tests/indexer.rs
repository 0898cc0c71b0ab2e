//! The "ibex indexer" background worker against the live test cluster: relationship linking,
//! access folding, retries and dead letters, surviving pg_terminate_backend, and its status view.

use std::time::Duration;

use ibex_e2e::{admin, app_for, eventually, org_with_agent};
use uuid::Uuid;

const WAIT: Duration = Duration::from_secs(30);

async fn remember(app: &sqlx::PgPool, org: Uuid, agent: Uuid, text: &str) -> Uuid {
    sqlx::query_scalar("SELECT memory_id FROM ibex_core.remember($1, $2, $3)")
        .bind(org)
        .bind(agent)
        .bind(text)
        .fetch_one(app)
        .await
        .expect("remember")
}

#[tokio::test]
async fn links_related_memories_and_folds_access() {
    let admin = admin().await;
    let (org, agent) = org_with_agent(&admin, "indexer-link").await;
    let app = app_for(org).await;
    // Related (cosine about 0.81) but neither near-duplicates nor conflicts.
    let lisbon = remember(&app, org, agent, "The user lives in Lisbon.").await;
    let porto = remember(&app, org, agent, "The user lives in Porto.").await;
    let _other = remember(&app, org, agent, "Always answer in formal English.").await;

    let edges: Vec<(Uuid, Uuid)> = eventually("related_to edges", WAIT, || async {
        let pending: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM ibex_core.outbox WHERE org_id = $1 AND topic = 'index' AND processed_at IS NULL",
        )
        .bind(org)
        .fetch_one(&admin)
        .await
        .unwrap();
        if pending > 0 {
            return None;
        }
        Some(
            sqlx::query_as(
                "SELECT source_memory_id, target_memory_id FROM ibex_core.memory_relationships
                 WHERE org_id = $1 AND kind = 'related_to'",
            )
            .bind(org)
            .fetch_all(&admin)
            .await
            .unwrap(),
        )
    })
    .await;
    assert_eq!(edges.len(), 1, "one symmetric edge between the two cities: {edges:?}");
    let (a, b) = edges[0];
    assert!((a == porto && b == lisbon) || (a == lisbon && b == porto));

    // Two searches record two reads of the Lisbon memory; the worker folds them.
    for _ in 0..2 {
        let top: Uuid =
            sqlx::query_scalar("SELECT memory_id FROM ibex_core.search($1, $2, 'Where does the user live? Lisbon', 1)")
                .bind(org)
                .bind(agent)
                .fetch_one(&app)
                .await
                .unwrap();
        assert_eq!(top, lisbon);
    }
    let (count, last): (i64, bool) = eventually("access folding", WAIT, || async {
        let row: (i64, bool) = sqlx::query_as(
            "SELECT access_count, last_accessed_at IS NOT NULL FROM ibex_core.memories WHERE org_id = $1 AND id = $2",
        )
        .bind(org)
        .bind(lisbon)
        .fetch_one(&admin)
        .await
        .unwrap();
        (row.0 >= 2).then_some(row)
    })
    .await;
    assert_eq!((count, last), (2, true));
    let rescored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM ibex_core.outbox WHERE org_id = $1 AND topic = 'hot_cache' AND event = 'agent.rescored'",
    )
    .bind(org)
    .fetch_one(&admin)
    .await
    .unwrap();
    assert!(rescored >= 1, "the hot cache is told to re-rank the agent");
}

#[tokio::test]
async fn failing_events_are_retried_then_dead_lettered_and_others_flow() {
    let admin = admin().await;
    let (org, agent) = org_with_agent(&admin, "indexer-fail").await;
    // An event the worker does not understand fails every time. One that has failed four times
    // already is dead-lettered on the fifth; a fresh one is retried with backoff.
    let doomed: i64 = sqlx::query_scalar(
        "INSERT INTO ibex_core.outbox (org_id, topic, event, payload, attempts) VALUES ($1, 'index', 'memory.mangled', '{\"why\": \"test\"}', 4) RETURNING id",
    )
    .bind(org)
    .fetch_one(&admin)
    .await
    .unwrap();
    let retried: i64 = sqlx::query_scalar(
        "INSERT INTO ibex_core.outbox (org_id, topic, event, payload) VALUES ($1, 'index', 'memory.mangled', '{}') RETURNING id",
    )
    .bind(org)
    .fetch_one(&admin)
    .await
    .unwrap();
    // A good event behind them still gets processed.
    let app = app_for(org).await;
    let good = remember(&app, org, agent, "The user keeps a sourdough starter in the fridge.").await;

    let error: String = eventually("dead letter", WAIT, || async {
        sqlx::query_scalar("SELECT error FROM ibex_core.dead_letters WHERE org_id = $1 AND reference_id = $2")
            .bind(org)
            .bind(doomed.to_string())
            .fetch_optional(&admin)
            .await
            .unwrap()
    })
    .await;
    assert!(error.contains("unknown index event"), "{error}");
    let (attempts, last_error, later): (i32, Option<String>, bool) = eventually("a retry", WAIT, || async {
        let row: (i32, Option<String>, bool) = sqlx::query_as(
            "SELECT attempts, last_error, available_at > now() FROM ibex_core.outbox WHERE org_id = $1 AND id = $2",
        )
        .bind(org)
        .bind(retried)
        .fetch_one(&admin)
        .await
        .unwrap();
        (row.0 >= 1).then_some(row)
    })
    .await;
    assert!(attempts >= 1 && last_error.is_some_and(|e| e.contains("unknown index event")));
    assert!(later || attempts > 1, "a failed event waits before its next attempt");
    eventually("the good event", WAIT, || async {
        let processed: bool = sqlx::query_scalar(
            "SELECT processed_at IS NOT NULL FROM ibex_core.outbox WHERE org_id = $1 AND aggregate_id = $2 AND topic = 'index'",
        )
        .bind(org)
        .bind(good)
        .fetch_one(&admin)
        .await
        .unwrap();
        processed.then_some(())
    })
    .await;
    let status: serde_json::Value = sqlx::query_scalar("SELECT to_jsonb(s) FROM ibex_ops.indexer_status s")
        .fetch_one(&admin)
        .await
        .unwrap();
    assert!(status["index_dead_letters"].as_i64().unwrap() >= 1, "{status}");
    assert!(
        status["counters"]["events_processed"].as_i64().unwrap() >= 1,
        "{status}"
    );
    // Leave the queue clean for other tests.
    sqlx::query("UPDATE ibex_core.outbox SET processed_at = now() WHERE org_id = $1")
        .bind(org)
        .execute(&admin)
        .await
        .unwrap();
}

#[tokio::test]
async fn the_worker_comes_back_after_being_terminated() {
    let admin = admin().await;
    let pid: i32 = eventually("a running indexer", WAIT, || async {
        sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE backend_type = 'ibex indexer'")
            .fetch_optional(&admin)
            .await
            .unwrap()
    })
    .await;
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(&admin)
        .await
        .unwrap();
    assert!(killed);
    let new_pid: i32 = eventually("the restarted indexer", Duration::from_secs(40), || async {
        let p: Option<i32> = sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE backend_type = 'ibex indexer'")
            .fetch_optional(&admin)
            .await
            .unwrap();
        p.filter(|p| *p != pid)
    })
    .await;
    assert_ne!(new_pid, pid);
    // And it works: a new memory's index event gets processed.
    let (org, agent) = org_with_agent(&admin, "indexer-restart").await;
    let app = app_for(org).await;
    let id = remember(&app, org, agent, "The user restarted the router twice this morning.").await;
    eventually("processing after restart", WAIT, || async {
        let done: bool = sqlx::query_scalar(
            "SELECT processed_at IS NOT NULL FROM ibex_core.outbox WHERE org_id = $1 AND aggregate_id = $2 AND topic = 'index'",
        )
        .bind(org)
        .bind(id)
        .fetch_one(&admin)
        .await
        .unwrap();
        done.then_some(())
    })
    .await;
}
