//! The embedding endpoints: vectors, the cache, validation and the error envelope.

use base64::Engine;
use ibex_engine::embed::cosine_similarity;
use ibex_sidecar::embedding::cache::{cache_key, decode_vector};
use redis::AsyncCommands;
use reqwest::StatusCode;
use serde_json::json;

use crate::support::{self, counter, floats, norm, TestServer};

/// Cache hits and misses counted so far (the answers do not say which texts were hits).
async fn hits_and_misses(server: &TestServer) -> (f64, f64) {
    let page = server.metrics().await;
    (
        counter(&page, "ibex_embed_cache_hits_total"),
        counter(&page, "ibex_embed_cache_misses_total"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_embedding_matches_the_model_and_is_cached_on_repeat() {
    let server = TestServer::start_ready(support::config()).await;
    let text = support::unique("The user prefers green tea in the morning");

    let (hits, misses) = hits_and_misses(&server).await;
    let first = server.post("/v1/embed", &json!({ "text": text })).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(hits_and_misses(&server).await, (hits, misses + 1.0), "a miss");
    assert_eq!(first.body["dimensions"], 384);
    let model = first.body["model"].as_str().unwrap().to_string();
    let vector = floats(&first.body["embedding"]);
    assert_eq!(vector.len(), 384);
    assert!((norm(&vector) - 1.0).abs() < 1e-3, "unit norm, got {}", norm(&vector));
    let direct = direct(&text).await;
    let cosine = cosine_similarity(&vector, &direct);
    assert!(
        cosine > 0.9999,
        "same vector as the model called directly (cosine {cosine})"
    );

    let second = server.post("/v1/embed", &json!({ "text": text })).await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(hits_and_misses(&server).await, (hits + 1.0, misses + 1.0), "a hit");
    assert_eq!(
        floats(&second.body["embedding"]),
        vector,
        "the stored vector, unchanged"
    );

    let key = cache_key(&model, server.org, &text);
    let mut redis = support::redis().await;
    let stored: Vec<u8> = redis.get(&key).await.unwrap();
    assert_eq!(decode_vector(&stored).expect("384 little-endian f32"), vector);
    let ttl: i64 = redis.ttl(&key).await.unwrap();
    assert!(
        ttl > 0 && ttl <= 7 * 24 * 3600,
        "stored with the configured TTL, got {ttl}"
    );
    server.stop().await;
}

async fn direct(text: &str) -> Vec<f32> {
    let text = text.to_string();
    tokio::task::spawn_blocking(move || support::direct_embedder().embed(&text).unwrap())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_returns_hits_from_the_cache_and_embeds_only_the_misses() {
    let server = TestServer::start_ready(support::config()).await;
    let texts: Vec<String> = (0..4).map(|i| support::unique(&format!("batch text {i}"))).collect();
    let mut singles = Vec::new();
    for text in [&texts[0], &texts[2]] {
        let reply = server.post("/v1/embed", &json!({ "text": text })).await;
        assert_eq!(reply.status, StatusCode::OK);
        singles.push(floats(&reply.body["embedding"]));
    }
    let before = support::counter(&server.metrics().await, "ibex_embed_inference_batch_size_sum");
    let (hits, misses) = hits_and_misses(&server).await;

    let batch = [&texts[0], &texts[1], &texts[2], &texts[3], &texts[1]];
    let reply = server.post("/v1/embed/batch", &json!({ "texts": batch })).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(
        hits_and_misses(&server).await,
        (hits + 2.0, misses + 3.0),
        "texts 0 and 2 were hits"
    );
    assert_eq!(reply.body["dimensions"], 384);
    let embeddings: Vec<Vec<f32>> = reply.body["embeddings"]
        .as_array()
        .unwrap()
        .iter()
        .map(floats)
        .collect();
    assert_eq!(embeddings.len(), 5);
    assert_eq!(embeddings[0], singles[0]);
    assert_eq!(embeddings[2], singles[1]);
    assert_eq!(embeddings[1], embeddings[4], "a repeated text gets the same vector");
    for (text, vector) in batch.iter().zip(&embeddings) {
        assert!(cosine_similarity(vector, &direct(text).await) > 0.9999);
    }
    // Only the two distinct misses went through the model, in one forward pass.
    let after = support::counter(&server.metrics().await, "ibex_embed_inference_batch_size_sum");
    assert_eq!(after - before, 2.0);

    let again = server.post("/v1/embed/batch", &json!({ "texts": batch })).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(
        hits_and_misses(&server).await,
        (hits + 7.0, misses + 3.0),
        "all five are hits now"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_512_texts_is_413_in_the_envelope() {
    let server = TestServer::start_ready(support::config()).await;
    let texts: Vec<String> = (0..513).map(|i| format!("text {i}")).collect();
    let reply = server.post("/v1/embed/batch", &json!({ "texts": texts })).await;
    let error = reply.error(413, "payload_too_large");
    assert_eq!(error["details"], json!({"max_texts": 512, "received": 513}));
    let reply = server.post("/v1/embeddings", &json!({ "input": texts })).await;
    reply.error(413, "payload_too_large");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_or_blank_text_is_400() {
    let server = TestServer::start_ready(support::config()).await;
    for text in ["", "   \n\t "] {
        let reply = server.post("/v1/embed", &json!({ "text": text })).await;
        let error = reply.error(400, "invalid_request");
        assert_eq!(error["details"], json!({"index": 0}));
    }
    let reply = server.post("/v1/embed/batch", &json!({ "texts": ["fine", " "] })).await;
    assert_eq!(reply.error(400, "invalid_request")["details"], json!({"index": 1}));
    server
        .post("/v1/embed/batch", &json!({ "texts": [] }))
        .await
        .error(400, "invalid_request");
    server
        .post("/v1/embeddings", &json!({ "input": "" }))
        .await
        .error(400, "invalid_request");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_400_and_oversized_bodies_413_in_the_envelope() {
    let server = TestServer::start_ready(ibex_sidecar::Config {
        max_body_bytes: 64 * 1024,
        ..support::config()
    })
    .await;
    let reply = server.post_raw("/v1/embed", "{\"text\": ", Some("client-id-42")).await;
    let error = reply.error(400, "invalid_request");
    assert_eq!(error["request_id"], "client-id-42", "the client's request id is echoed");
    assert_eq!(reply.headers["x-request-id"], "client-id-42");

    server
        .post("/v1/embed", &json!({ "txt": "typo in the field name" }))
        .await
        .error(400, "invalid_request");
    server
        .post("/v1/embed", &json!({ "text": 42 }))
        .await
        .error(400, "invalid_request");
    server
        .post("/v1/embeddings", &json!({ "input": [1, 2, 3] }))
        .await
        .error(400, "invalid_request");
    let no_content_type = server
        .post_request("/v1/embed")
        .body("{\"text\": \"a\"}")
        .send()
        .await
        .unwrap();
    support::reply(no_content_type)
        .await
        .error(415, "unsupported_media_type");

    let huge = json!({ "text": "x".repeat(100 * 1024) }).to_string();
    server
        .post_raw("/v1/embed", huge, None)
        .await
        .error(413, "payload_too_large");
    server.get("/v1/nothing-here").await.error(404, "not_found");
    server.get("/v1/embed").await.error(405, "method_not_allowed");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_compatible_embeddings() {
    let server = TestServer::start_ready(support::config()).await;
    let texts = [
        support::unique("first input"),
        support::unique("a second, longer input text"),
    ];

    let reply = server
        .post(
            "/v1/embeddings",
            &json!({ "input": texts, "model": "text-embedding-3-small" }),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let body = &reply.body;
    assert_eq!(body["object"], "list");
    assert!(body["model"].as_str().unwrap().contains("MiniLM"));
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    let mut vectors = Vec::new();
    for (index, item) in data.iter().enumerate() {
        assert_eq!(item["object"], "embedding");
        assert_eq!(item["index"], index);
        let vector = floats(&item["embedding"]);
        assert_eq!(vector.len(), 384);
        assert!(cosine_similarity(&vector, &direct(&texts[index]).await) > 0.9999);
        vectors.push(vector);
    }
    let embedder = support::direct_embedder();
    let tokens: usize = texts.iter().map(|t| embedder.token_count(t).unwrap()).sum();
    assert!(tokens > 0);
    assert_eq!(body["usage"], json!({"prompt_tokens": tokens, "total_tokens": tokens}));

    let single = server.post("/v1/embeddings", &json!({ "input": texts[0] })).await;
    assert_eq!(single.status, StatusCode::OK);
    assert_eq!(single.body["data"].as_array().unwrap().len(), 1);
    assert_eq!(floats(&single.body["data"][0]["embedding"]), vectors[0]);

    let encoded = server
        .post(
            "/v1/embeddings",
            &json!({ "input": texts[1], "encoding_format": "base64" }),
        )
        .await;
    assert_eq!(encoded.status, StatusCode::OK);
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.body["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    assert_eq!(decode_vector(&bytes).unwrap(), vectors[1]);

    server
        .post("/v1/embeddings", &json!({ "input": "x", "dimensions": 512 }))
        .await
        .error(400, "invalid_request");
    server
        .post("/v1/embeddings", &json!({ "input": "x", "encoding_format": "int8" }))
        .await
        .error(400, "invalid_request");
    server.stop().await;
}
