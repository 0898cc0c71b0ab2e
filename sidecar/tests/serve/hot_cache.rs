//! The hot cache follows the outbox: writes, supersession, feedback and forgetting reach the
//! agent's Redis sorted set, which holds at most the top 50.

use std::time::Duration;

use ibex_sidecar::hotcache::{data_key, HotEntry};
use uuid::Uuid;

use crate::fixtures::{self, eventually, Tenant};
use crate::support::{self, TestServer};

async fn entry(redis: &mut redis::aio::MultiplexedConnection, t: Tenant, id: Uuid) -> Option<HotEntry> {
    let bytes: Option<Vec<u8>> = redis::cmd("HGET")
        .arg(data_key(t.org, t.agent))
        .arg(id.to_string())
        .query_async(redis)
        .await
        .unwrap();
    bytes.and_then(|b| HotEntry::decode(id, &b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hot_set_follows_writes_feedback_and_deletes() {
    let server = TestServer::start_ready(support::config()).await;
    let admin = fixtures::admin().await;
    let t = fixtures::tenant(&admin, "hot-follow").await;
    let mut redis = support::redis().await;

    let a = fixtures::remember(&admin, t, "The user's daughter plays the cello.", "declarative").await;
    let b = fixtures::remember(&admin, t, "Meetings are never booked before 10am.", "procedural").await;
    eventually(Duration::from_secs(10), "both memories in the set", || {
        let mut redis = redis.clone();
        async move {
            let members = fixtures::hot_members(&mut redis, t).await;
            members.len() == 2 && members.contains(&a.to_string()) && members.contains(&b.to_string())
        }
    })
    .await;
    let stored = entry(&mut redis, t, a).await.expect("entry decodes");
    assert_eq!(stored.content, "The user's daughter plays the cello.");
    assert_eq!(stored.embedding.len(), 384);
    assert!((stored.confidence - 0.9).abs() < 1e-6);

    // Feedback re-ranks: the useful count reaches Redis.
    fixtures::in_org(&admin, t.org, "SELECT ibex_core.feedback($1, $2, true)", b).await;
    eventually(Duration::from_secs(10), "feedback reaches the entry", || {
        let mut redis = redis.clone();
        async move { entry(&mut redis, t, b).await.is_some_and(|e| e.useful_count == 1) }
    })
    .await;

    // Forgetting removes the memory from the set and its entry.
    fixtures::forget(&admin, t, a).await;
    eventually(Duration::from_secs(10), "forgotten memory leaves the set", || {
        let mut redis = redis.clone();
        async move { fixtures::hot_members(&mut redis, t).await == vec![b.to_string()] }
    })
    .await;
    assert!(entry(&mut redis, t, a).await.is_none());

    // Every event was acknowledged.
    eventually(Duration::from_secs(10), "hot_cache events acknowledged", || {
        let admin = admin.clone();
        async move {
            let pending: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM ibex_core.outbox WHERE org_id = $1 AND topic = 'hot_cache' AND processed_at IS NULL",
            )
            .bind(t.org)
            .fetch_one(&admin)
            .await
            .unwrap();
            pending == 0
        }
    })
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hot_set_keeps_the_top_50() {
    let server = TestServer::start_ready(support::config()).await;
    let admin = fixtures::admin().await;
    let t = fixtures::tenant(&admin, "hot-top50").await;
    let cities = [
        "Lisbon", "Oslo", "Quito", "Hanoi", "Accra", "Lima", "Perth", "Tunis", "Riga", "Sofia", "Cusco",
    ];
    let mut ids = Vec::new();
    for i in 0..55 {
        let content = format!(
            "Trip note {i}: the user spent day {} in {} and kept receipt number {}.",
            i % 7 + 1,
            cities[i % cities.len()],
            10_000 + i * 37
        );
        ids.push(fixtures::remember(&admin, t, &content, "episodic").await);
    }
    // Make one memory clearly the best: useful feedback.
    fixtures::in_org(&admin, t.org, "SELECT ibex_core.feedback($1, $2, true)", ids[3]).await;
    let mut redis = support::redis().await;
    eventually(Duration::from_secs(20), "50 members, the best first", || {
        let mut redis = redis.clone();
        let best = ids[3].to_string();
        async move {
            let members = fixtures::hot_members(&mut redis, t).await;
            members.len() == 50 && members[0] == best
        }
    })
    .await;
    let hash_len: usize = redis::cmd("HLEN")
        .arg(data_key(t.org, t.agent))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(hash_len, 50, "one entry per member");
    server.stop().await;
}
