//! Liveness, readiness, gRPC health, metrics and graceful shutdown.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::support::{self, counter, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn livez_answers_at_once_and_readyz_flips_after_warmup() {
    // Two instances to load: the window before readiness is a few hundred milliseconds.
    let server = TestServer::start(ibex_sidecar::Config {
        embed_workers: 2,
        ..support::config()
    })
    .await;
    let live = server.get("/livez").await;
    assert_eq!(live.status, StatusCode::OK);
    assert_eq!(live.body["status"], "alive");
    server.get("/readyz").await.error(503, "not_ready");
    server
        .post("/v1/embed", &json!({"text": "too early"}))
        .await
        .error(503, "not_ready");

    let started = Instant::now();
    let mut seen_ready = false;
    while started.elapsed() < Duration::from_secs(60) {
        let ready = server.get("/readyz").await;
        if seen_ready {
            assert_eq!(ready.status, StatusCode::OK, "readiness never goes back");
            break;
        }
        if ready.status == StatusCode::OK {
            assert_eq!(ready.body["status"], "ready");
            assert_eq!(ready.body["embed_workers"], 2);
            assert!(ready.body["model"].as_str().unwrap().contains("MiniLM"));
            seen_ready = true;
            continue;
        }
        ready.error(503, "not_ready");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(seen_ready, "ready within 60 s");
    assert_eq!(server.get("/livez").await.status, StatusCode::OK);
    server.stop().await;
}

async fn health_status(client: &mut HealthClient<tonic::transport::Channel>, service: &str) -> ServingStatus {
    let response = client
        .check(HealthCheckRequest {
            service: service.to_string(),
        })
        .await
        .expect("health check answers");
    ServingStatus::try_from(response.into_inner().status).expect("known status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_health_is_serving_only_after_warmup() {
    let server = TestServer::start(ibex_sidecar::Config {
        embed_workers: 2,
        ..support::config()
    })
    .await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.server.grpc_addr))
        .unwrap()
        .connect()
        .await
        .expect("gRPC connects");
    let mut client = HealthClient::new(channel);
    // Checked before waiting on HTTP: the model cannot be loaded yet.
    assert_eq!(
        health_status(&mut client, "ibex.embedding").await,
        ServingStatus::NotServing
    );
    assert_eq!(health_status(&mut client, "").await, ServingStatus::NotServing);

    server.wait_ready().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while health_status(&mut client, "ibex.embedding").await != ServingStatus::Serving {
        assert!(Instant::now() < deadline, "gRPC health follows HTTP readiness");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(health_status(&mut client, "").await, ServingStatus::Serving);
    let unknown = client
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .expect_err("unknown services are NOT_FOUND");
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_expose_cache_hits_and_request_counts() {
    let server = TestServer::start_ready(support::config()).await;
    let before = counter(&server.metrics().await, "ibex_embed_cache_hits_total");
    let text = support::unique("metrics are counted");
    for _ in 0..2 {
        let reply = server.post("/v1/embed", &json!({ "text": text })).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    }
    let page = server.metrics().await;
    assert_eq!(counter(&page, "ibex_embed_cache_hits_total"), before + 1.0);
    assert!(counter(&page, "ibex_embed_cache_misses_total") >= 1.0);
    assert_eq!(counter(&page, "ibex_model_ready"), 1.0);
    assert!(
        page.contains(r#"ibex_http_requests_total{method="POST",route="/v1/embed",status="200"} 2"#),
        "{page}"
    );
    assert!(page.contains("ibex_http_request_duration_seconds_bucket"));
    assert!(page.contains("ibex_embed_inference_duration_seconds_count"));
    assert!(page.contains("ibex_embed_inference_batch_size_count"));
    assert!(page.contains("ibex_embed_inflight_requests 0"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_requests_in_flight_then_stops_listening() {
    let server = TestServer::start_ready(support::config()).await;
    let texts: Vec<String> = (0..512)
        .map(|i| support::unique(&format!("graceful shutdown lets this batch finish, text number {i}")))
        .collect();
    let request = server
        .post_request("/v1/embed/batch")
        .json(&json!({ "texts": texts }))
        .send();
    let in_flight = tokio::spawn(request);
    // Shut down while the batch (several hundred milliseconds of inference) is admitted.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server.metrics().await.contains("ibex_embed_inflight_requests 1") {
        assert!(Instant::now() < deadline, "the batch is admitted");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let http = server.url("/livez");
    server.server.shutdown();
    let response = in_flight.await.unwrap().expect("the in-flight request is answered");
    assert_eq!(response.status(), StatusCode::OK);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["embeddings"].as_array().unwrap().len(), 512);
    tokio::time::timeout(Duration::from_secs(30), server.server.wait())
        .await
        .expect("stops after the in-flight request")
        .expect("clean stop");
    assert!(reqwest::get(http).await.is_err(), "no longer listening");
}
