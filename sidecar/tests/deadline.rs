//! AssembleContext under its real 40 ms deadline: a Redis outage and a slow Postgres give
//! degraded, directive-only answers in time. These tests measure wall time, so they live in a
//! binary of their own and run one at a time: with the rest of the suite running model
//! inference on the same cores, a timer can fire late for reasons that have nothing to do with
//! the code under test.

mod common;
#[path = "serve/fixtures.rs"]
mod fixtures;
#[path = "serve/support.rs"]
#[allow(dead_code)]
mod support;
#[path = "serve/upstream.rs"]
mod upstream;

use std::time::{Duration, Instant};

use fixtures::{assemble, message, request, section, timing};
use ibex_sidecar::grpc::proto::context::v1 as pb;
use pb::SectionKind;
use support::TestServer;
use tokio::sync::Mutex;

static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_gives_a_degraded_directive_only_answer() {
    let _one = ONE_AT_A_TIME.lock().await;
    let port = fixtures::closed_port().await;
    let server = TestServer::start_ready(ibex_sidecar::Config {
        redis_url: Some(format!("redis://127.0.0.1:{port}/")),
        hot_cache_consumer: false,
        ..support::config()
    })
    .await;
    let admin = fixtures::admin().await;
    let t = fixtures::tenant(&admin, "ctx-redis-down").await;
    fixtures::directive(&admin, t, "tone", "Answer in one sentence.", 0).await;
    fixtures::remember(&admin, t, "The user lives in Porto.", "declarative").await;
    let token = fixtures::token(t.org, "context:assemble", None).await;
    let mut client = fixtures::grpc(server.server.grpc_addr).await;
    let started = Instant::now();
    let r = assemble(
        &mut client,
        &token,
        request(t, "gpt-4o", vec![message("user", "Where does the user live?")]),
    )
    .await
    .expect("a degraded answer is still an answer");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(r.degraded);
    assert!(r.degraded_reason.contains("hot"), "{}", r.degraded_reason);
    assert!(
        ["error", "timeout"].contains(&timing(&r, "hot").status.as_str()),
        "{r:?}"
    );
    assert!(r.memories.is_empty(), "directive-only");
    assert_eq!(section(&r, SectionKind::Directive).items.len(), 1);
    assert!(r.context.contains("Answer in one sentence."));
    assert!(!r.context.contains("Porto"));
    assert_eq!(section(&r, SectionKind::History).items.len(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_postgres_gives_a_degraded_answer_inside_the_deadline() {
    let _one = ONE_AT_A_TIME.lock().await;
    let proxy = fixtures::DelayProxy::start(fixtures::database_addr()).await;
    let server = TestServer::start_ready(ibex_sidecar::Config {
        database_url: Some(fixtures::database_url_via(proxy.addr)),
        hot_cache_consumer: false,
        ..support::config()
    })
    .await;
    let admin = fixtures::admin().await;
    let t = fixtures::tenant(&admin, "ctx-slow-pg").await;
    fixtures::directive(&admin, t, "tone", "Keep answers short.", 0).await;
    fixtures::remember(&admin, t, "The user's sister is called Marta.", "declarative").await;
    let token = fixtures::token(t.org, "context:assemble", None).await;
    let mut client = fixtures::grpc(server.server.grpc_addr).await;
    let body = request(t, "gpt-4o", vec![message("user", "What is my sister's name?")]);
    // Warm up while Postgres is fast: token checked and remembered, directives read, the query's
    // embedding cached, pooled connections open.
    for _ in 0..3 {
        assemble(&mut client, &token, body.clone()).await.expect("warm-up");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    proxy.set_delay(Duration::from_millis(250));
    let started = Instant::now();
    let r = assemble(&mut client, &token, body).await.expect("answered");
    let wall = started.elapsed();
    proxy.set_delay(Duration::ZERO);
    assert!(r.degraded, "{r:?}");
    assert!(r.degraded_reason.contains("cold"), "{}", r.degraded_reason);
    assert_eq!(timing(&r, "cold").status, "timeout");
    assert!(r.memories.is_empty());
    assert!(
        r.context.contains("Keep answers short."),
        "the directive is served from memory"
    );
    assert!(r.total_millis < 50.0, "assembly {} ms", r.total_millis);
    assert!(
        wall < Duration::from_millis(60),
        "answered in {wall:?}, inside the 40 ms deadline plus the call"
    );
    server.stop().await;
}

/// A source that misses the deadline leaves nothing running in Postgres: its query was given the
/// time left as its statement_timeout. The cold search is made to block on a lock held here; the
/// configured statement timeout is a minute, so only the per-call one can end the query. The
/// query is not dropped mid-flight, so the sidecar keeps its connection (a dropped sqlx query
/// closes it, and under load the replacement backends made more calls miss the deadline).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_search_is_cancelled_in_postgres() {
    let _one = ONE_AT_A_TIME.lock().await;
    let server = TestServer::start_ready(ibex_sidecar::Config {
        hot_cache_consumer: false,
        context_statement_timeout: Duration::from_secs(60),
        ..support::config()
    })
    .await;
    let admin = fixtures::admin().await;
    let t = fixtures::tenant(&admin, "ctx-cancel").await;
    fixtures::remember(&admin, t, "The user's bike is a red Bianchi.", "declarative").await;
    let token = fixtures::token(t.org, "context:assemble", None).await;
    let mut client = fixtures::grpc(server.server.grpc_addr).await;
    let body = request(t, "gpt-4o", vec![message("user", "What bike do I ride?")]);
    assemble(&mut client, &token, body.clone()).await.expect("warm-up");

    let sidecar_backends = || {
        let admin = admin.clone();
        async move {
            let pids: Vec<i32> = sqlx::query_scalar(
                "SELECT pid FROM pg_stat_activity WHERE application_name = 'ibex-sidecar' ORDER BY pid",
            )
            .fetch_all(&admin)
            .await
            .unwrap();
            pids
        }
    };
    let before = sidecar_backends().await;
    let mut blocker = admin.begin().await.unwrap();
    sqlx::query("LOCK TABLE ibex_core.memories IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let r = assemble(&mut client, &token, body).await.expect("answered");
    assert!(r.degraded, "{r:?}");
    assert!(r.degraded_reason.contains("cold"), "{}", r.degraded_reason);
    // While the lock is still held, the blocked search must go away by itself.
    fixtures::eventually(Duration::from_secs(10), "the late search is cancelled", || {
        let admin = admin.clone();
        async move {
            let active: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE application_name = 'ibex-sidecar' AND state = 'active'
                   AND query LIKE '%search_by_vector%'",
            )
            .fetch_one(&admin)
            .await
            .unwrap();
            active == 0
        }
    })
    .await;
    blocker.rollback().await.unwrap();
    // The next call is served on the same connections: none was closed by the deadline.
    let r = assemble(
        &mut client,
        &token,
        request(t, "gpt-4o", vec![message("user", "What bike do I ride?")]),
    )
    .await
    .expect("answered");
    assert!(!r.degraded, "{r:?}");
    let after = sidecar_backends().await;
    assert!(
        before.iter().all(|pid| after.contains(pid)),
        "a connection was replaced: before {before:?}, after {after:?}"
    );
    server.stop().await;
}

/// At capacity the proxy still answers: the call goes upstream without memories, flagged
/// `x-ibex-context: shed` and counted. gRPC callers hold every slot (one per core, no queue)
/// because their cold search blocks on a lock held here; the proxy's own work before admission
/// (token, session) does not touch that table, so it reaches admission while the slots are held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shed_context_still_forwards_without_memories_flagged_and_counted() {
    let _one = ONE_AT_A_TIME.lock().await;
    let (addr, seen) = upstream::upstream().await;
    let server = TestServer::start_ready(ibex_sidecar::Config {
        upstream_base_url: Some(format!("http://{addr}/v1")),
        upstream_api_key: Some(ibex_sidecar::config::Secret("sk-upstream-test".into())),
        upstream_timeout: Duration::from_secs(5),
        hot_cache_consumer: false,
        context_deadline: Duration::from_secs(20),
        context_statement_timeout: Duration::from_secs(60),
        context_slots_per_core: 1,
        context_queue: 0,
        ..support::config()
    })
    .await;
    let admin = fixtures::admin().await;
    let t = fixtures::tenant(&admin, "proxy-shed").await;
    fixtures::remember(&admin, t, "The user's cat is called Miso.", "declarative").await;
    let proxy_token = fixtures::token(t.org, "proxy", Some(t.agent)).await;
    let grpc_token = fixtures::token(t.org, "context:assemble", None).await;
    let body = serde_json::json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "What is my cat called?"}]});
    let send = |body: &serde_json::Value| {
        server
            .client
            .post(server.url("/v1/chat/completions"))
            .bearer_auth(&proxy_token)
            .header("x-ibex-session-id", "shed-1")
            .json(body)
            .send()
    };
    let warm = send(&body).await.expect("proxy answers");
    assert_eq!(warm.status(), reqwest::StatusCode::OK);
    assert!(
        warm.headers().get("x-ibex-context").is_none(),
        "not shed when there is room"
    );
    let mut client = fixtures::grpc(server.server.grpc_addr).await;
    let grpc_body = request(t, "gpt-4o", vec![message("user", "Cat?")]);
    assemble(&mut client, &grpc_token, grpc_body.clone())
        .await
        .expect("warm-up");

    let admitted = |page: &str| {
        page.lines()
            .find_map(|l| l.strip_prefix("ibex_context_admission_total{outcome=\"admitted\"} "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let before = admitted(&server.metrics().await);
    let mut blocker = admin.begin().await.unwrap();
    sqlx::query("LOCK TABLE ibex_core.memories IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let slots = std::thread::available_parallelism().map_or(1, usize::from);
    let holders: Vec<_> = (0..slots)
        .map(|_| {
            let (mut client, token, body) = (client.clone(), grpc_token.clone(), grpc_body.clone());
            tokio::spawn(async move { assemble(&mut client, &token, body).await })
        })
        .collect();
    let server_ref = &server;
    fixtures::eventually(Duration::from_secs(10), "every slot is taken", || async move {
        admitted(&server_ref.metrics().await) >= before + slots as f64
    })
    .await;
    // Saturated but ready: /readyz answers at once and shows the slots in use.
    let asked = Instant::now();
    let ready = reqwest::get(format!("http://{}/readyz", server.server.http_addr))
        .await
        .expect("readyz answers");
    assert!(
        asked.elapsed() < Duration::from_secs(1),
        "readyz took {:?}",
        asked.elapsed()
    );
    assert_eq!(ready.status(), reqwest::StatusCode::OK);
    let ready: serde_json::Value = ready.json().await.unwrap();
    assert_eq!(ready["context"]["in_use"], serde_json::json!(slots), "{ready}");
    let response = send(&body).await.expect("proxy answers");
    blocker.rollback().await.unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    assert_eq!(response.headers()["x-ibex-context"], "shed");
    assert_eq!(response.headers()["x-ibex-memories"], "0");
    let sent = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(
        sent["messages"],
        serde_json::json!([{"role": "user", "content": "What is my cat called?"}]),
        "forwarded as sent, without a context message"
    );
    for h in holders {
        h.await.unwrap().expect("admitted calls are answered");
    }
    assert_eq!(
        support::counter(&server.metrics().await, "ibex_proxy_context_shed_total"),
        1.0
    );
    // Its usage says no memory went with it (the warm-up call's had the cat's name).
    let admin_ref = &admin;
    fixtures::eventually(
        Duration::from_secs(10),
        "the shed call's usage is recorded",
        || async move {
            let sources: Vec<(Option<String>, Option<i32>, Option<i32>)> = sqlx::query_as(
                "SELECT memory_source, memory_count, memory_tokens FROM ibex_core.usage_events
             WHERE org_id = $1 ORDER BY created_at",
            )
            .bind(t.org)
            .fetch_all(admin_ref)
            .await
            .unwrap();
            sources.len() == 2
                && sources[0].0.as_deref().is_some_and(|s| s != "none")
                && sources[1] == (Some("none".to_string()), Some(0), Some(0))
        },
    )
    .await;
    server.stop().await;
}
