//! The security tier, issue 10 item 6 "The sidecar's public surface": one named test per
//! hardening item and variant, each against its own in-process server on the test stack
//! (`scripts/test.sh security`). docs/SECURITY.md lists the limits and their settings.
//!
//! The two tests that measure time (the embedding flood, the huge word) run one at a time: with
//! other servers running model inference on the same cores, a timer can fire late for reasons
//! that have nothing to do with the code under test.

mod common;
#[path = "serve/fixtures.rs"]
mod fixtures;
#[path = "serve/support.rs"]
#[allow(dead_code)]
mod support;
#[path = "serve/upstream.rs"]
mod upstream;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fixtures::{assemble, message, request};
use ibex_sidecar::embedding::cache::cache_key;
use redis::AsyncCommands;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use support::{counter, Reply, TestServer};
use tokio::sync::Mutex;

static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// Every embedding endpoint with a valid body of one text.
fn endpoints(text: &str) -> [(&'static str, Value); 3] {
    [
        ("/v1/embed", json!({ "text": text })),
        ("/v1/embed/batch", json!({ "texts": [text] })),
        ("/v1/embeddings", json!({ "input": text })),
    ]
}

/// A POST with the given `Authorization` value, or none.
async fn post(server: &TestServer, path: &str, body: &Value, authorization: Option<&str>) -> Reply {
    let mut request = server.client.post(server.url(path)).json(body);
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    support::reply(request.send().await.expect("POST")).await
}

async fn post_as(server: &TestServer, path: &str, body: &Value, token: &str) -> Reply {
    post(server, path, body, Some(&format!("Bearer {token}"))).await
}

/// The keys of a JSON object.
fn keys(value: &Value) -> BTreeSet<String> {
    value.as_object().expect("an object").keys().cloned().collect()
}

async fn exists(redis: &mut redis::aio::MultiplexedConnection, key: &str) -> bool {
    let found: bool = redis.exists(key).await.expect("EXISTS");
    found
}

async fn hits_and_misses(server: &TestServer) -> (f64, f64) {
    let page = server.metrics().await;
    (
        counter(&page, "ibex_embed_cache_hits_total"),
        counter(&page, "ibex_embed_cache_misses_total"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item6_embed_requires_a_token() {
    let server = TestServer::start_ready(support::config()).await;
    let before = hits_and_misses(&server).await;
    let unknown = ibex_sidecar::auth::generate_token();
    for (path, body) in endpoints(&support::unique("who is asking?")) {
        for authorization in [
            None,
            Some("Basic dXNlcjpwYXNz".to_string()),
            Some("Bearer not-a-token".to_string()),
            Some(format!("Bearer {unknown}")),
        ] {
            let reply = post(&server, path, &body, authorization.as_deref()).await;
            reply.error(401, "unauthenticated");
            assert_eq!(reply.headers["www-authenticate"], "Bearer", "{path}");
        }
    }
    assert_eq!(
        hits_and_misses(&server).await,
        before,
        "no refused request reached the cache or the model"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item6_embed_requires_embed_scope() {
    let server = TestServer::start_ready(support::config()).await;
    let admin = fixtures::admin().await;
    let t = fixtures::tenant(&admin, "embed-scope").await;
    let others = fixtures::token(t.org, "context:assemble,proxy,memories:read", None).await;
    let embed = fixtures::token(t.org, "embed", None).await;
    let root = fixtures::token(t.org, "admin", None).await;
    for (path, body) in endpoints(&support::unique("scoped")) {
        let refused = post_as(&server, path, &body, &others).await;
        let error = refused.error(403, "permission_denied");
        assert!(error["message"].as_str().unwrap().contains("embed"), "{error}");
        for token in [&embed, &root] {
            let reply = post_as(&server, path, &body, token).await;
            assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.body);
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item6_embed_rate_limited_per_token() {
    let server = TestServer::start_ready(ibex_sidecar::Config {
        max_batch: 4,
        embed_rate_burst: 4,
        embed_rate_per_second: 0.5,
        ..support::config()
    })
    .await;
    let (org, a) = support::embed_token("rate-a").await;
    let b = fixtures::token(org, "embed", None).await;
    let one = |label: &str| json!({ "text": support::unique(label) });
    // The burst: four texts, as singles and a batch.
    for i in 0..2 {
        let reply = post_as(&server, "/v1/embed", &one(&format!("within the burst {i}")), &a).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
    let texts = [support::unique("batch 1"), support::unique("batch 2")];
    let reply = post_as(&server, "/v1/embed/batch", &json!({ "texts": texts }), &a).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    // Then every endpoint refuses this token, with the envelope and a Retry-After.
    for (path, body) in endpoints(&support::unique("over the limit")) {
        let refused = post_as(&server, path, &body, &a).await;
        let error = refused.error(429, "rate_limited");
        let retry_ms = error["details"]["retry_after_ms"].as_u64().expect("retry_after_ms");
        assert!(retry_ms > 0 && retry_ms <= 2_000, "{error}");
        let retry_after: u64 = refused.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!(
            (1..=2).contains(&retry_after),
            "whole seconds, rounded up: {retry_after}"
        );
    }
    assert_eq!(counter(&server.metrics().await, "ibex_embed_rate_limited_total"), 3.0);
    // A malformed request is refused for what it is, and costs nothing.
    post_as(&server, "/v1/embed", &json!({ "text": " " }), &a)
        .await
        .error(400, "invalid_request");
    // The limit is the token's: another token of the same org is served.
    let reply = post_as(&server, "/v1/embed", &one("another token"), &b).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    // And the token's units come back at the configured rate (one per 2 s).
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let reply = post_as(&server, "/v1/embed", &one("after waiting"), &a).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item6_embed_text_too_long_is_413_before_tokenizing() {
    let server = TestServer::start_ready(ibex_sidecar::Config {
        max_text_chars: 100,
        ..support::config()
    })
    .await;
    let before = hits_and_misses(&server).await;
    let long = "word ".repeat(30);
    for (path, body) in endpoints(&long) {
        let reply = server.post(path, &body).await;
        let error = reply.error(413, "payload_too_large");
        assert_eq!(error["details"]["max_text_chars"], 100, "{error}");
        assert_eq!(error["details"]["chars"], 150, "{error}");
        assert!(error["message"].as_str().unwrap().contains("max_text_chars"));
    }
    assert_eq!(hits_and_misses(&server).await, before, "refused before any work");
    server.stop().await;
}

/// A tenant whose memories are in the hot cache, and a context token of it.
async fn seeded_tenant(label: &str) -> (fixtures::Tenant, String) {
    let admin = fixtures::admin().await;
    let t = fixtures::tenant(&admin, label).await;
    fixtures::directive(&admin, t, "tone", "Answer briefly.", 1).await;
    for (content, category) in [
        ("The user is vegetarian and allergic to peanuts.", "declarative"),
        ("Always confirm the delivery address before ordering.", "procedural"),
        ("Last Friday the user ordered injera and loved it.", "episodic"),
    ] {
        fixtures::remember(&admin, t, content, category).await;
    }
    let redis = support::redis().await;
    fixtures::eventually(Duration::from_secs(15), "memories reach the hot cache", || {
        let mut redis = redis.clone();
        async move { fixtures::hot_members(&mut redis, t).await.len() == 3 }
    })
    .await;
    let token = fixtures::token(t.org, "context:assemble", None).await;
    (t, token)
}

/// Texts of memory length, unique, so every one is a cache miss and costs inference.
fn flood_batch(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            support::unique(&format!(
                "Flood text {i}: the quarterly planning meeting moved to Thursday afternoon, and the \
                 spare office key is kept in the blue drawer next to the printer on the third floor"
            ))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item6_embedding_flood_does_not_degrade_context() {
    let _one = ONE_AT_A_TIME.lock().await;
    // One shared model instance for the endpoints, one reserved for context (the default). The
    // deadline is generous for a shared test machine, and far below what waiting behind the
    // flood's batches costs (seconds).
    let server = TestServer::start_ready(ibex_sidecar::Config {
        context_deadline: Duration::from_secs(1),
        embed_rate_per_second: 1e9,
        embed_rate_burst: 1_000_000_000,
        ..support::config()
    })
    .await;
    let (t, context_token) = seeded_tenant("flood-victim").await;
    let (_, flood_token) = support::embed_token("flooder").await;
    let mut grpc = fixtures::grpc(server.server.grpc_addr).await;
    let ask = |question: String| request(t, "gpt-4o-mini", vec![message("user", &question)]);
    let warm = assemble(&mut grpc, &context_token, ask(support::unique("What should I eat?")))
        .await
        .expect("assembled");
    assert!(!warm.degraded, "{}", warm.degraded_reason);

    // Four clients send 512-text batches of unseen texts as fast as they are answered, from
    // another org, with valid tokens.
    let stop = Arc::new(AtomicBool::new(false));
    let flooders: Vec<_> = (0..4)
        .map(|_| {
            let (client, url, token, stop) = (
                server.client.clone(),
                server.url("/v1/embed/batch"),
                flood_token.clone(),
                Arc::clone(&stop),
            );
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let _ = client
                        .post(&url)
                        .bearer_auth(&token)
                        .json(&json!({ "texts": flood_batch(512) }))
                        .send()
                        .await;
                }
            })
        })
        .collect();
    // The flood holds the shared instance and more batches wait behind it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while counter(&server.metrics().await, "ibex_embed_inflight_requests") < 3.0 {
        assert!(Instant::now() < deadline, "the flood reaches the model");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Every context call during the flood still embeds its (new) query in time: no degradation.
    for i in 0..8 {
        let question = support::unique(&format!("Question {i}: what food should I order tonight?"));
        let r = assemble(&mut grpc, &context_token, ask(question))
            .await
            .expect("assembled");
        assert!(!r.degraded, "call {i} degraded during the flood: {}", r.degraded_reason);
        assert!(!r.memories.is_empty(), "call {i}: memories were retrieved");
        let embedding = r.timings.iter().find(|t| t.name == "query_embedding").expect("timed");
        assert!(embedding.millis < 1000.0, "{embedding:?}");
    }
    assert!(
        counter(&server.metrics().await, "ibex_embed_inflight_requests") >= 1.0,
        "the flood was still going on"
    );
    stop.store(true, Ordering::Relaxed);
    for flooder in flooders {
        flooder.abort();
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item6_cached_flag_is_not_a_cross_org_oracle() {
    let server = TestServer::start_ready(support::config()).await;
    let (_, other_org) = support::embed_token("oracle-probe").await;
    let secret = support::unique("Org A's merger with Initech closes on Friday");
    let single = json!({ "text": secret });
    let batch = json!({ "texts": [secret, support::unique("filler")] });
    // Org A embeds the text (twice: the second answer comes from A's cache entry).
    let mut answers = Vec::new();
    for _ in 0..2 {
        answers.push(server.post("/v1/embed", &single).await);
        answers.push(server.post("/v1/embed/batch", &batch).await);
    }
    // Org B probes for it, and asks for something nobody embedded.
    let fresh = support::unique("nobody embedded this");
    for body in [&single, &json!({ "text": fresh })] {
        answers.push(post_as(&server, "/v1/embed", body, &other_org).await);
    }
    answers.push(post_as(&server, "/v1/embed/batch", &batch, &other_org).await);
    for reply in &answers {
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        let expected: BTreeSet<String> = if reply.body.get("embeddings").is_some() {
            ["dimensions", "embeddings", "model"].map(String::from).into()
        } else {
            ["dimensions", "embedding", "model"].map(String::from).into()
        };
        assert_eq!(
            keys(&reply.body),
            expected,
            "nothing in the answer says whether the text was cached"
        );
    }
    // Same text, same vector, whoever asks.
    assert_eq!(answers[0].body["embedding"], answers[4].body["embedding"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item6_embedding_cache_keyed_per_org() {
    let server = TestServer::start_ready(ibex_sidecar::Config {
        context_deadline: fixtures::RELAXED_DEADLINE,
        ..support::config()
    })
    .await;
    let (org_b, token_b) = support::embed_token("cache-org-b").await;
    let org_a = server.org;
    let text = support::unique("embedded by org A first");
    let first = server.post("/v1/embed", &json!({ "text": text })).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let model = first.body["model"].as_str().unwrap().to_string();
    let mut redis = support::redis().await;
    let key_a = cache_key(&model, org_a, &text);
    let key_b = cache_key(&model, org_b, &text);
    assert!(key_a.contains(&org_a.to_string()), "{key_a}");
    assert!(exists(&mut redis, &key_a).await, "stored under A's key");
    assert!(!exists(&mut redis, &key_b).await, "not under B's");

    // Org B asking for the same text is a miss: computed, never A's entry.
    let (hits, misses) = hits_and_misses(&server).await;
    let second = post_as(&server, "/v1/embed", &json!({ "text": text }), &token_b).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    assert_eq!(hits_and_misses(&server).await, (hits, misses + 1.0));
    assert!(exists(&mut redis, &key_b).await, "B has its own entry now");
    // A's own repeat is a hit.
    server.post("/v1/embed", &json!({ "text": text })).await;
    assert_eq!(hits_and_misses(&server).await, (hits + 1.0, misses + 1.0));

    // Context assembly caches its query under the caller's org too.
    let (t, token) = seeded_tenant("cache-org-context").await;
    let question = support::unique("What food should I order?");
    let mut grpc = fixtures::grpc(server.server.grpc_addr).await;
    let body = request(t, "gpt-4o-mini", vec![message("user", &question)]);
    assemble(&mut grpc, &token, body).await.expect("assembled");
    let query_key = cache_key(&model, t.org, &question);
    fixtures::eventually(Duration::from_secs(5), "the query is cached under its org", || {
        let (mut redis, key) = (redis.clone(), query_key.clone());
        async move { exists(&mut redis, &key).await }
    })
    .await;
    assert!(!exists(&mut redis, &cache_key(&model, org_a, &question)).await);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item6_redis_has_maxmemory_and_eviction() {
    let mut redis = support::redis().await;
    let (_, maxmemory): (String, u64) = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(maxmemory > 0, "Redis runs with maxmemory (scripts/stack.sh)");
    let (_, policy): (String, String) = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory-policy")
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(
        policy, "allkeys-lru",
        "an allkeys policy: evicting any key is safe (Postgres is the truth), and a full Redis never refuses a write"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item6_unknown_http_methods_share_one_metrics_label() {
    let server = TestServer::start_ready(support::config()).await;
    for i in 0..20 {
        let method = Method::from_bytes(format!("BREW{i}").as_bytes()).unwrap();
        for path in ["/livez".to_string(), format!("/no-such-path-{i}")] {
            let response = server
                .client
                .request(method.clone(), server.url(&path))
                .send()
                .await
                .unwrap();
            assert!(
                [StatusCode::METHOD_NOT_ALLOWED, StatusCode::NOT_FOUND].contains(&response.status()),
                "{}",
                response.status()
            );
        }
    }
    let page = server.metrics().await;
    let series: Vec<&str> = page
        .lines()
        .filter(|l| l.starts_with("ibex_http_requests_total{"))
        .collect();
    assert!(!page.contains("BREW"), "no series per invented method:\n{page}");
    assert!(!page.contains("no-such-path"), "no series per unknown path:\n{page}");
    let other: f64 = series
        .iter()
        .filter(|l| l.contains(r#"method="other""#))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(other, 40.0, "{series:?}");
    server.stop().await;
}

/// A word of `len` pseudo-random lowercase letters: no whitespace, nothing the BPE can split.
fn huge_word(len: usize) -> String {
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(b'a' + (state % 26) as u8)
        })
        .collect()
}

/// One runtime thread, as a worker thread of a busy server is: whatever blocks it stalls `/livez`.
#[tokio::test(flavor = "current_thread")]
async fn item6_huge_word_token_count_does_not_stall_livez() {
    let _one = ONE_AT_A_TIME.lock().await;
    let server = TestServer::start_ready(support::config()).await;
    let admin = fixtures::admin().await;
    let t = fixtures::tenant(&admin, "huge-word").await;
    let token = fixtures::token(t.org, "context:assemble", None).await;
    let mut grpc = fixtures::grpc(server.server.grpc_addr).await;
    // Warm-up: connections, the BPE tables.
    let _ = assemble(
        &mut grpc,
        &token,
        request(t, "gpt-4o-mini", vec![message("user", "hello")]),
    )
    .await;

    let word = huge_word(120_000);
    let call = tokio::spawn(async move {
        let started = Instant::now();
        let result = assemble(
            &mut grpc,
            &token,
            request(t, "gpt-4o-mini", vec![message("user", &word)]),
        )
        .await;
        (result.map(|_| ()), started.elapsed())
    });
    let mut slowest = Duration::ZERO;
    let mut probes = 0;
    let watching = Instant::now();
    while probes < 20 || !call.is_finished() {
        assert!(watching.elapsed() < Duration::from_secs(60), "the call never ended");
        let started = Instant::now();
        let live = server.get("/livez").await;
        assert_eq!(live.status, StatusCode::OK);
        slowest = slowest.max(started.elapsed());
        probes += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (result, took) = call.await.unwrap();
    assert!(
        slowest < Duration::from_millis(250),
        "/livez answered within 250 ms while a 120,000-character word was counted (slowest {slowest:?})"
    );
    assert!(took < Duration::from_secs(10), "the huge word took {took:?}");
    if let Err(status) = result {
        // Too large for the model's window is a fine answer; a stall or a crash is not.
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item6_oversized_conversation_is_refused_before_counting() {
    let server = TestServer::start_ready(ibex_sidecar::Config {
        max_context_chars: 1_000,
        ..support::config()
    })
    .await;
    let admin = fixtures::admin().await;
    let t = fixtures::tenant(&admin, "max-context-chars").await;
    let token = fixtures::token(t.org, "context:assemble", None).await;
    let mut grpc = fixtures::grpc(server.server.grpc_addr).await;
    let messages = vec![
        message("user", &"a".repeat(600)),
        message("assistant", "ok"),
        message("user", &"b".repeat(600)),
    ];
    let status = assemble(&mut grpc, &token, request(t, "gpt-4o-mini", messages))
        .await
        .expect_err("refused");
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(status.metadata().get("ibex-error-code").unwrap(), "payload_too_large");
    assert!(status.message().contains("max_context_chars"), "{}", status.message());
    server.stop().await;
}

// Item 8: the hot cache forgets what was forgotten, however it was forgotten.

/// Every key in Redis matching `pattern`.
async fn keys_matching(redis: &mut redis::aio::MultiplexedConnection, pattern: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(redis)
            .await
            .expect("SCAN");
        found.extend(keys);
        if next == 0 {
            return found;
        }
        cursor = next;
    }
}

/// The id of the seeded tenant's procedural memory ("Always confirm the delivery address").
async fn procedural_memory(admin: &sqlx::PgPool, t: fixtures::Tenant) -> uuid::Uuid {
    sqlx::query_scalar(
        "SELECT id FROM ibex_core.memories WHERE org_id = $1 AND agent_id = $2 AND category = 'procedural'",
    )
    .bind(t.org)
    .bind(t.agent)
    .fetch_one(admin)
    .await
    .expect("the seeded procedural memory")
}

/// Waits until the memory is out of its agent's hot set, then checks that context assembly no
/// longer injects it.
async fn assert_leaves_hot_set(server: &TestServer, t: fixtures::Tenant, token: &str, memory: uuid::Uuid) {
    let redis = support::redis().await;
    let id = memory.to_string();
    fixtures::eventually(Duration::from_secs(15), "the memory leaves the hot set", || {
        let (mut redis, id) = (redis.clone(), id.clone());
        async move {
            let members = fixtures::hot_members(&mut redis, t).await;
            members.len() == 2 && !members.contains(&id)
        }
    })
    .await;
    let mut grpc = fixtures::grpc(server.server.grpc_addr).await;
    let ask = request(
        t,
        "gpt-4o-mini",
        vec![message("user", "Please order dinner to my address.")],
    );
    let answer = assemble(&mut grpc, token, ask).await.expect("assembled");
    assert!(!answer.degraded, "{}", answer.degraded_reason);
    for section in &answer.sections {
        assert!(
            !section.text.contains("delivery address"),
            "still injected: {}",
            section.text
        );
        assert!(
            section.items.iter().all(|item| item.id != id),
            "still injected: {section:?}"
        );
    }
}

fn relaxed_server_config() -> ibex_sidecar::Config {
    ibex_sidecar::Config {
        context_deadline: fixtures::RELAXED_DEADLINE,
        ..support::config()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item8_status_changed_by_update_leaves_hot_set() {
    let server = TestServer::start_ready(relaxed_server_config()).await;
    let (t, token) = seeded_tenant("item8-update").await;
    let admin = fixtures::admin().await;
    let memory = procedural_memory(&admin, t).await;
    // An operator deletes it by hand in psql, not through ibex_core.forget.
    sqlx::query("UPDATE ibex_core.memories SET status = 'deleted', deleted_at = now() WHERE org_id = $1 AND id = $2")
        .bind(t.org)
        .bind(memory)
        .execute(&admin)
        .await
        .expect("UPDATE");
    assert_leaves_hot_set(&server, t, &token, memory).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item8_deleted_row_leaves_hot_set() {
    let server = TestServer::start_ready(relaxed_server_config()).await;
    let (t, token) = seeded_tenant("item8-delete").await;
    let admin = fixtures::admin().await;
    let memory = procedural_memory(&admin, t).await;
    // A hard delete (its history goes with it, which only a purge may do).
    let mut tx = admin.begin().await.unwrap();
    sqlx::query("SET LOCAL ibex.allow_history_purge = on")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("DELETE FROM ibex_core.memories WHERE org_id = $1 AND id = $2")
        .bind(t.org)
        .bind(memory)
        .execute(&mut *tx)
        .await
        .expect("DELETE");
    tx.commit().await.unwrap();
    assert_leaves_hot_set(&server, t, &token, memory).await;
    server.stop().await;
}

/// A seeded tenant that also has an embedding cache entry; the org's key patterns.
async fn tenant_with_keys(server: &TestServer, label: &str) -> (fixtures::Tenant, [String; 2]) {
    let (t, _) = seeded_tenant(label).await;
    let embed = fixtures::token(t.org, "embed", None).await;
    let reply = post_as(
        server,
        "/v1/embed",
        &json!({ "text": support::unique("cached for the org") }),
        &embed,
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let patterns = [
        ibex_sidecar::hotcache::org_pattern(t.org),
        ibex_sidecar::embedding::cache::org_pattern(t.org),
    ];
    let mut redis = support::redis().await;
    for pattern in &patterns {
        assert!(
            !keys_matching(&mut redis, pattern).await.is_empty(),
            "keys of {pattern} exist"
        );
    }
    (t, patterns)
}

async fn assert_no_keys_left(patterns: &[String; 2]) {
    let redis = support::redis().await;
    for pattern in patterns {
        fixtures::eventually(Duration::from_secs(15), "the org's keys leave Redis", || {
            let mut redis = redis.clone();
            async move { keys_matching(&mut redis, pattern).await.is_empty() }
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item8_purged_org_leaves_no_keys() {
    let server = TestServer::start_ready(relaxed_server_config()).await;
    let (t, patterns) = tenant_with_keys(&server, "item8-purge").await;
    let admin = fixtures::admin().await;
    sqlx::query("SELECT ibex_ops.purge_org($1)")
        .bind(t.org)
        .execute(&admin)
        .await
        .expect("purge_org");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM ibex_core.memories WHERE org_id = $1")
        .bind(t.org)
        .fetch_one(&admin)
        .await
        .unwrap();
    assert_eq!(left, 0);
    assert_no_keys_left(&patterns).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item8_org_marked_deleted_leaves_no_keys() {
    let server = TestServer::start_ready(relaxed_server_config()).await;
    let (t, patterns) = tenant_with_keys(&server, "item8-org-deleted").await;
    let admin = fixtures::admin().await;
    sqlx::query("UPDATE ibex_core.orgs SET status = 'deleted' WHERE id = $1")
        .bind(t.org)
        .execute(&admin)
        .await
        .expect("UPDATE orgs");
    assert_no_keys_left(&patterns).await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item8_hot_keys_have_a_ttl() {
    let ttl = Duration::from_secs(3600);
    let server = TestServer::start_ready(ibex_sidecar::Config {
        hot_cache_key_ttl: ttl,
        ..relaxed_server_config()
    })
    .await;
    let (t, _) = seeded_tenant("item8-ttl").await;
    let mut redis = support::redis().await;
    for key in [
        ibex_sidecar::hotcache::set_key(t.org, t.agent),
        ibex_sidecar::hotcache::data_key(t.org, t.agent),
        ibex_sidecar::hotcache::asof_key(t.org, t.agent),
    ] {
        let left: i64 = redis.pttl(&key).await.expect("PTTL");
        // Another test's server may have written the keys with the default TTL (a day).
        assert!(left > 0, "{key} has a TTL (PTTL {left})");
        assert!(
            left as u128 <= Duration::from_secs(24 * 3600).as_millis(),
            "{key}: {left}"
        );
    }
    server.stop().await;
}

// Item 10: usage is always metered.

async fn proxy_server() -> TestServer {
    let (upstream, _) = upstream::upstream().await;
    TestServer::start_ready(ibex_sidecar::Config {
        upstream_base_url: Some(format!("http://{upstream}/v1")),
        upstream_api_key: Some(ibex_sidecar::config::Secret("sk-upstream-test".into())),
        upstream_timeout: Duration::from_secs(10),
        ..relaxed_server_config()
    })
    .await
}

async fn proxy_call(server: &TestServer, token: &str, session: &str, content: &str) -> reqwest::Response {
    server
        .client
        .post(server.url("/v1/chat/completions"))
        .bearer_auth(token)
        .header("x-ibex-session-id", session)
        .json(&json!({ "model": "gpt-4o-mini", "messages": [{ "role": "user", "content": content }] }))
        .send()
        .await
        .expect("the proxy answers")
}

/// The usage rows (status code, session) and the turns of the session `external`.
async fn metered(
    admin: &sqlx::PgPool,
    t: fixtures::Tenant,
    external: &str,
) -> (Vec<(Option<i32>, String)>, Vec<String>) {
    let usage: Vec<(Option<i32>, String)> =
        sqlx::query_as("SELECT status_code, model FROM ibex_core.usage_events WHERE org_id = $1 ORDER BY created_at")
            .bind(t.org)
            .fetch_all(admin)
            .await
            .unwrap();
    let turns: Vec<String> = sqlx::query_scalar(
        "SELECT t.content FROM ibex_core.session_turns t JOIN ibex_core.sessions s
           ON s.org_id = t.org_id AND s.id = t.session_id
         WHERE t.org_id = $1 AND s.external_id = $2 ORDER BY t.turn_index",
    )
    .bind(t.org)
    .bind(external)
    .fetch_all(admin)
    .await
    .unwrap();
    (usage, turns)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item10_usage_metered_for_a_nul_byte() {
    let server = proxy_server().await;
    let admin = fixtures::admin().await;
    let t = fixtures::tenant(&admin, "item10-nul").await;
    let token = fixtures::token(t.org, "proxy", Some(t.agent)).await;
    let response = proxy_call(&server, &token, "item10-nul", "A NUL byte \u{0} in the middle").await;
    assert_eq!(response.status(), StatusCode::OK);
    // The answer is recorded before it is returned.
    let (usage, turns) = metered(&admin, t, "item10-nul").await;
    assert_eq!(
        usage,
        vec![(Some(200), "gpt-4o-mini".to_string())],
        "the call is metered"
    );
    assert_eq!(
        turns,
        ["A NUL byte \u{FFFD} in the middle", "Hello from upstream"],
        "the turn is kept, the NUL marked"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn item10_usage_metered_when_turns_are_refused() {
    let server = proxy_server().await;
    let admin = fixtures::admin().await;
    let t = fixtures::tenant(&admin, "item10-refused").await;
    let token = fixtures::token(t.org, "proxy", Some(t.agent)).await;
    // The upstream takes 2 s to answer "[slow]"; meanwhile the session is completed, so its turns
    // are refused when the answer comes back.
    let call = {
        let (server_url, client, token) = (server.url("/v1/chat/completions"), server.client.clone(), token.clone());
        tokio::spawn(async move {
            client
                .post(server_url)
                .bearer_auth(token)
                .header("x-ibex-session-id", "item10-refused")
                .json(&json!({ "model": "gpt-4o-mini", "messages": [{ "role": "user", "content": "[slow] hello" }] }))
                .send()
                .await
                .expect("the proxy answers")
                .status()
        })
    };
    fixtures::eventually(Duration::from_secs(5), "the call's session exists", || {
        let admin = admin.clone();
        async move {
            sqlx::query(
                "UPDATE ibex_core.sessions SET status = 'completed', completed_at = now()
                 WHERE org_id = $1 AND external_id = 'item10-refused'",
            )
            .bind(t.org)
            .execute(&admin)
            .await
            .unwrap()
            .rows_affected()
                == 1
        }
    })
    .await;
    assert_eq!(call.await.unwrap(), StatusCode::OK, "the client gets its answer");
    let (usage, turns) = metered(&admin, t, "item10-refused").await;
    assert_eq!(
        usage,
        vec![(Some(200), "gpt-4o-mini".to_string())],
        "the call is metered"
    );
    assert!(turns.is_empty(), "a completed session takes no turns: {turns:?}");
    server.stop().await;
}
