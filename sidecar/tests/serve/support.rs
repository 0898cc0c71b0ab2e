//! Starting servers in-process on free ports, and talking to them.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ibex_engine::{Embedder, EmbedderConfig};
use ibex_sidecar::{Config, RunningServer};
use reqwest::StatusCode;
use serde_json::Value;

use crate::common::env;

pub fn redis_url() -> String {
    env("IBEX_REDIS_URL")
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn model_files() -> (PathBuf, PathBuf) {
    let model_dir = std::env::var("IBEX_MODEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join(".ibex/vendor/model"));
    let library = std::env::var("IBEX_ORT_LIBRARY")
        .or_else(|_| std::env::var("IBEX_ORT_LIB"))
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join(".ibex/vendor/onnxruntime/libonnxruntime.so.1.32.0"));
    assert!(
        model_dir.join("model.onnx").is_file() && library.is_file(),
        "model files missing ({}, {}): run `make setup`",
        model_dir.display(),
        library.display()
    );
    (model_dir, library)
}

/// A server on free loopback ports against the test stack; one model instance to keep tests
/// light on a small machine.
pub fn config() -> Config {
    let (model_dir, ort_library) = model_files();
    Config {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        grpc_addr: "127.0.0.1:0".parse().unwrap(),
        database_url: Some(env("IBEX_DATABASE_URL")),
        redis_url: Some(redis_url()),
        model_dir,
        ort_library,
        embed_workers: 1,
        embed_threads: 1,
        // Selection by the question off: the tests of packing, degradation, the hot cache and
        // the proxy seed a few memories and expect every one the budget fits. Selection itself
        // is tested with the production defaults ([`selecting`], serve/context.rs).
        min_relevance: 0.0,
        relative_relevance: 0.0,
        small_talk_relevance: 0.0,
        near_copy_similarity: 1.0,
        ..Config::default()
    }
}

/// [`config`] with the production defaults of selection by the question.
pub fn selecting() -> Config {
    let defaults = Config::default();
    Config {
        min_relevance: defaults.min_relevance,
        relative_relevance: defaults.relative_relevance,
        small_talk_relevance: defaults.small_talk_relevance,
        near_copy_similarity: defaults.near_copy_similarity,
        ..config()
    }
}

/// The model called directly, for comparison with what the server answers.
pub fn direct_embedder() -> &'static Embedder {
    static EMBEDDER: OnceLock<Embedder> = OnceLock::new();
    EMBEDDER.get_or_init(|| {
        let (model_dir, library) = model_files();
        Embedder::load(&EmbedderConfig::new(model_dir, library)).expect("model loads")
    })
}

pub fn model_id() -> String {
    direct_embedder().model_id().to_string()
}

/// A text no earlier run has cached.
pub fn unique(label: &str) -> String {
    format!("{label} ({})", uuid::Uuid::new_v4())
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Reply {
    /// Checks the error envelope and returns its `error` object.
    pub fn error(&self, status: u16, code: &str) -> &Value {
        assert_eq!(self.status.as_u16(), status, "{}", self.body);
        let error = &self.body["error"];
        assert_eq!(error["code"], code, "{}", self.body);
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{}",
            self.body
        );
        assert!(error.get("details").is_some(), "details present (object or null)");
        let header = self.headers["x-request-id"].to_str().unwrap();
        assert_eq!(
            error["request_id"], header,
            "envelope and header carry the same request id"
        );
        error
    }
}

pub struct TestServer {
    pub server: RunningServer,
    pub http: String,
    pub client: reqwest::Client,
    /// The org of `token`: the embedding cache is per org.
    pub org: uuid::Uuid,
    /// A token with scope `embed` of a fresh org, which `post` and `post_raw` send to the
    /// embedding endpoints (`/v1/embed*`); requests through `client` add it themselves.
    pub token: String,
}

impl TestServer {
    pub async fn start(config: Config) -> Self {
        let server = ibex_sidecar::start(config).await.expect("server starts");
        let http = format!("http://{}", server.http_addr);
        let (org, token) = embed_token("embed-api").await;
        Self {
            server,
            http,
            client: reqwest::Client::new(),
            org,
            token,
        }
    }

    pub async fn start_ready(config: Config) -> Self {
        let server = Self::start(config).await;
        server.wait_ready().await;
        server
    }

    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if self.get("/readyz").await.status == StatusCode::OK {
                return;
            }
            assert!(Instant::now() < deadline, "server not ready within 60 s");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.http)
    }

    pub async fn get(&self, path: &str) -> Reply {
        reply(self.client.get(self.url(path)).send().await.expect("GET")).await
    }

    /// A POST, with the server's embed token when the path is an embedding endpoint.
    pub fn post_request(&self, path: &str) -> reqwest::RequestBuilder {
        let request = self.client.post(self.url(path));
        if path.starts_with("/v1/embed") {
            request.bearer_auth(&self.token)
        } else {
            request
        }
    }

    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        reply(self.post_request(path).json(body).send().await.expect("POST")).await
    }

    pub async fn post_raw(&self, path: &str, body: impl Into<reqwest::Body>, request_id: Option<&str>) -> Reply {
        let mut request = self
            .post_request(path)
            .header("content-type", "application/json")
            .body(body);
        if let Some(id) = request_id {
            request = request.header("x-request-id", id);
        }
        reply(request.send().await.expect("POST")).await
    }

    pub async fn metrics(&self) -> String {
        let response = self
            .client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics");
        assert_eq!(response.status(), StatusCode::OK);
        response.text().await.unwrap()
    }

    pub async fn stop(self) {
        self.server.shutdown();
        tokio::time::timeout(Duration::from_secs(30), self.server.wait())
            .await
            .expect("server stops within 30 s")
            .expect("server stops cleanly");
    }
}

/// A fresh org (without agents: hot cache rebuilds do not grow with the servers started) and a
/// token of it with scope `embed`.
pub async fn embed_token(label: &str) -> (uuid::Uuid, String) {
    let admin = crate::common::admin_pool().await;
    let org = uuid::Uuid::new_v4();
    sqlx::query("INSERT INTO ibex_core.orgs (id, name, slug) VALUES ($1, $2, $3)")
        .bind(org)
        .bind(label)
        .bind(format!("{label}-{}", &org.simple().to_string()[..8]))
        .execute(&admin)
        .await
        .expect("org");
    admin.close().await;
    let token = ibex_sidecar::admin::create_token(&crate::common::admin_url(), org, "test", "embed", None, None)
        .await
        .expect("token")
        .token;
    (org, token)
}

pub async fn reply(response: reqwest::Response) -> Reply {
    let status = response.status();
    let headers = response.headers().clone();
    assert!(
        headers.contains_key("x-request-id"),
        "every response carries x-request-id"
    );
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Reply { status, headers, body }
}

pub fn floats(value: &Value) -> Vec<f32> {
    value
        .as_array()
        .expect("an array of numbers")
        .iter()
        .map(|x| x.as_f64().expect("a number") as f32)
        .collect()
}

pub fn norm(vector: &[f32]) -> f32 {
    vector.iter().map(|x| x * x).sum::<f32>().sqrt()
}

/// The value of an unlabelled counter in a Prometheus text page.
pub fn counter(page: &str, name: &str) -> f64 {
    page.lines()
        .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in metrics:\n{page}"))
}

pub async fn redis() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .expect("test Redis reachable")
}
