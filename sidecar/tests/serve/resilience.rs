//! Overload, a Redis outage, and two stateless instances side by side.

use std::time::{Duration, Instant};

use ibex_engine::embed::cosine_similarity;
use ibex_sidecar::embedding::cache::cache_key;
use redis::AsyncCommands;
use reqwest::StatusCode;
use serde_json::json;

use crate::support::{self, counter, floats, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overload_is_answered_429_at_once() {
    let server = TestServer::start_ready(ibex_sidecar::Config {
        max_inflight: 1,
        ..support::config()
    })
    .await;
    // Each request is a batch of unseen texts, so each holds its admission for a forward pass.
    let requests = (0..16).map(|r| {
        let texts: Vec<String> = (0..32)
            .map(|i| support::unique(&format!("overload request {r} text {i}")))
            .collect();
        let request = server
            .post_request("/v1/embed/batch")
            .json(&json!({ "texts": texts }))
            .send();
        tokio::spawn(async move { support::reply(request.await.expect("answered")).await })
    });
    let mut ok = 0;
    let mut overloaded = 0;
    for handle in requests.collect::<Vec<_>>() {
        let reply = handle.await.unwrap();
        match reply.status {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                let error = reply.error(429, "overloaded");
                assert_eq!(error["details"], json!({"max_inflight": 1}));
                assert_eq!(reply.headers["retry-after"], "1");
                overloaded += 1;
            }
            other => panic!("unexpected {other}: {}", reply.body),
        }
    }
    assert!(ok >= 1, "some requests are served");
    assert!(
        overloaded >= 1,
        "with max_inflight=1 some of 16 concurrent requests are refused"
    );
    let page = server.metrics().await;
    assert_eq!(
        counter(&page, "ibex_embed_rejected_overloaded_total"),
        overloaded as f64
    );
    assert_eq!(counter(&page, "ibex_embed_inflight_requests"), 0.0);
    // Capacity comes back once the burst is over.
    let after = server
        .post("/v1/embed", &json!({ "text": support::unique("after the burst") }))
        .await;
    assert_eq!(after.status, StatusCode::OK);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_client_left_before_its_turn_is_not_computed() {
    let server = TestServer::start_ready(support::config()).await;
    let metrics_before = server.metrics().await;
    let passes_before = counter(&metrics_before, "ibex_embed_inference_batch_size_count");
    let queued_before = counter(&metrics_before, "ibex_embed_queue_duration_seconds_count");
    // A long batch holds the only model instance...
    let long: Vec<String> = (0..512)
        .map(|i| support::unique(&format!("a long batch keeps the model busy, text {i}")))
        .collect();
    let busy = server
        .post_request("/v1/embed/batch")
        .json(&json!({ "texts": long }))
        .send();
    let busy = tokio::spawn(busy);
    // Wait until the batch holds the model instance (its wait for one has been measured).
    let deadline = Instant::now() + Duration::from_secs(10);
    while counter(&server.metrics().await, "ibex_embed_queue_duration_seconds_count") < queued_before + 1.0 {
        assert!(Instant::now() < deadline, "the long batch reaches the model");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // ...while a second request waits its turn, and its client gives up.
    let abandoned = support::unique("nobody waits for this one");
    let gave_up = server
        .post_request("/v1/embed")
        .timeout(Duration::from_millis(30))
        .json(&json!({ "text": abandoned }))
        .send()
        .await;
    assert!(
        gave_up.is_err_and(|e| e.is_timeout()),
        "the client times out while queued"
    );
    let finished = busy.await.unwrap().expect("the long batch is answered");
    assert_eq!(finished.status(), StatusCode::OK);
    // Give an abandoned request time to (wrongly) run before checking that it did not.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let page = server.metrics().await;
    assert_eq!(
        counter(&page, "ibex_embed_inference_batch_size_count"),
        passes_before + 1.0,
        "only the long batch ran through the model"
    );
    assert_eq!(counter(&page, "ibex_embed_inflight_requests"), 0.0);
    let model = support::model_id();
    let mut redis = support::redis().await;
    let stored: bool = redis.exists(cache_key(&model, server.org, &abandoned)).await.unwrap();
    assert!(!stored, "nothing was computed or cached for the abandoned request");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_falls_back_to_inference() {
    // Nothing listens on port 1: every cache operation fails.
    let server = TestServer::start_ready(ibex_sidecar::Config {
        redis_url: Some("redis://127.0.0.1:1/".into()),
        ..support::config()
    })
    .await;
    let text = support::unique("served without the cache");
    let mut vectors = Vec::new();
    for _ in 0..3 {
        let reply = server.post("/v1/embed", &json!({ "text": text })).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        vectors.push(floats(&reply.body["embedding"]));
    }
    assert_eq!(vectors[0], vectors[2]);
    let batch = server
        .post(
            "/v1/embed/batch",
            &json!({ "texts": [text, support::unique("another")] }),
        )
        .await;
    assert_eq!(batch.status, StatusCode::OK);
    let page = server.metrics().await;
    assert_eq!(
        counter(&page, "ibex_embed_cache_hits_total"),
        0.0,
        "no hits without Redis"
    );
    let errors: f64 = page
        .lines()
        .filter(|l| l.starts_with("ibex_embed_cache_errors_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    let bypassed = counter(&page, "ibex_embed_cache_bypassed_total");
    assert!(errors >= 1.0, "the failure is counted:\n{page}");
    assert!(
        errors + bypassed >= 4.0,
        "every lookup either failed or skipped the cache"
    );
    assert_eq!(
        server.get("/readyz").await.status,
        StatusCode::OK,
        "readiness ignores Redis"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_serve_the_same_answers() {
    let (a, b) = tokio::join!(
        TestServer::start_ready(support::config()),
        TestServer::start_ready(support::config())
    );
    assert_ne!(a.server.http_addr, b.server.http_addr);

    // Computed by A, served to B from the shared cache, and the other way round: the same org
    // (the cache is per org), so B uses A's token and A uses B's.
    let hits = |page: &str| counter(page, "ibex_embed_cache_hits_total");
    for (first, second) in [(&a, &b), (&b, &a)] {
        let text = support::unique("shared between instances");
        let computed = first.post("/v1/embed", &json!({ "text": text })).await;
        assert_eq!(computed.status, StatusCode::OK, "{}", computed.body);
        let before = hits(&second.metrics().await);
        let served = support::reply(
            second
                .client
                .post(second.url("/v1/embed"))
                .bearer_auth(&first.token)
                .json(&json!({ "text": text }))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(served.status, StatusCode::OK, "{}", served.body);
        assert_eq!(hits(&second.metrics().await), before + 1.0, "served from the cache");
        assert_eq!(floats(&computed.body["embedding"]), floats(&served.body["embedding"]));
    }

    // Both compute: the key is removed in between, so B runs its own model instance.
    let text = support::unique("computed by both instances");
    let from_a = a.post("/v1/embed", &json!({ "text": text })).await;
    let model = from_a.body["model"].as_str().unwrap().to_string();
    let mut redis = support::redis().await;
    let removed: i64 = redis.del(cache_key(&model, a.org, &text)).await.unwrap();
    assert_eq!(removed, 1);
    let misses = |page: &str| counter(page, "ibex_embed_cache_misses_total");
    let before = misses(&b.metrics().await);
    let from_b = support::reply(
        b.client
            .post(b.url("/v1/embed"))
            .bearer_auth(&a.token)
            .json(&json!({ "text": text }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(from_b.status, StatusCode::OK, "{}", from_b.body);
    assert_eq!(misses(&b.metrics().await), before + 1.0, "computed again");
    let (va, vb) = (floats(&from_a.body["embedding"]), floats(&from_b.body["embedding"]));
    assert!(cosine_similarity(&va, &vb) > 0.99999);
    assert_eq!(from_a.body["model"], from_b.body["model"]);

    a.stop().await;
    b.stop().await;
}
