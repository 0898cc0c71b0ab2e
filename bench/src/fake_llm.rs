//! A local OpenAI-compatible chat-completions server that answers from a script, standing in
//! for the paid LLM API in tests and benchmarks of extraction.
//!
//! The script is read from markers in the conversation it is sent, so concurrent tests do not
//! interfere: `[llm:<behaviour>:<key>]`, where the key groups the calls of one test (each key has
//! its own call counter) and the behaviour is one of
//! * `ok`: one memory per `FACT: <text>.` line of the conversation;
//! * `fail500xN`: HTTP 500 for the first N calls of the key, then `ok`;
//! * `timeoutxN`: no answer for 10 s for the first N calls, then `ok`;
//! * `partialxN`: a cut-off JSON body for the first N calls, then `ok`;
//! * `malformed`: always prose instead of JSON;
//! * `mixed`: the `ok` memories plus invalid items (bad category, empty content, confidence 7);
//! * `slowxN`: wait 3 s before answering for the first N calls, then answer at once.
//!
//! Without a marker the answer is `ok`. Every answer waits `base_delay` first (the "LLM time").

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use regex::Regex;
use serde_json::{json, Value};

#[derive(Default)]
struct Shared {
    calls: HashMap<String, usize>,
    log: Vec<String>,
}

#[derive(Clone)]
struct AppState {
    shared: Arc<Mutex<Shared>>,
    base_delay: Duration,
}

/// A running fake LLM; dropped with the runtime that serves it.
pub struct FakeLlm {
    pub addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
}

impl FakeLlm {
    /// Starts the server on 127.0.0.1 (a free port) in the current tokio runtime.
    pub async fn start(base_delay: Duration) -> FakeLlm {
        FakeLlm::start_on("127.0.0.1:0".parse().expect("address"), base_delay).await
    }

    /// Starts the server on `addr`: a sidecar started earlier was told this address.
    pub async fn start_on(addr: SocketAddr, base_delay: Duration) -> FakeLlm {
        let shared = Arc::new(Mutex::new(Shared::default()));
        let state = AppState {
            shared: shared.clone(),
            base_delay,
        };
        let app = Router::new()
            .route("/v1/chat/completions", post(chat))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("fake LLM server");
        });
        FakeLlm { addr, shared }
    }

    /// The base URL to configure (`ibex.llm_base_url`).
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// How many calls carried this key so far.
    pub fn calls(&self, key: &str) -> usize {
        self.shared.lock().unwrap().calls.get(key).copied().unwrap_or(0)
    }

    /// Every request body received, in order (for assertions on the prompt).
    pub fn requests(&self) -> Vec<String> {
        self.shared.lock().unwrap().log.clone()
    }
}

fn marker(body: &str) -> Option<(String, String)> {
    let re = Regex::new(r"\[llm:([a-z0-9]+):([A-Za-z0-9_-]+)\]").expect("marker pattern");
    re.captures(body).map(|c| (c[1].to_string(), c[2].to_string()))
}

/// The "FACT: ..." sentences of the request's turns, each with the index of its turn (the
/// supporting turn the extraction prompt asks for).
fn facts(body: &str) -> Vec<(String, i64)> {
    let re = Regex::new(r"FACT: ([^\n\\.]+)\.").expect("fact pattern");
    let payload = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|request| request["messages"][1]["content"].as_str().map(str::to_string))
        .and_then(|user| serde_json::from_str::<Value>(&user).ok());
    let turns = payload
        .as_ref()
        .and_then(|p| p["turns"].as_array().cloned())
        .unwrap_or_default();
    let mut out: Vec<(String, i64)> = Vec::new();
    for turn in &turns {
        let (Some(index), Some(content)) = (turn["index"].as_i64(), turn["content"].as_str()) else {
            continue;
        };
        for c in re.captures_iter(content) {
            let fact = format!("{}.", c[1].trim());
            if out.last().map(|(f, _)| f) != Some(&fact) {
                out.push((fact, index));
            }
        }
    }
    out
}

fn completion(content: String) -> Response {
    Json(json!({
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "model": "fake-llm",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}
    }))
    .into_response()
}

fn ok_answer(body: &str, extra: Vec<Value>) -> Response {
    let mut items: Vec<Value> = facts(body)
        .into_iter()
        .map(|(f, turn)| json!({"category": "declarative", "content": f, "confidence": 0.9, "turns": [turn]}))
        .collect();
    items.extend(extra);
    completion(json!({ "memories": items }).to_string())
}

/// First N calls of a behaviour like `fail500x2`.
fn first_n(behaviour: &str, prefix: &str) -> Option<usize> {
    behaviour.strip_prefix(prefix)?.strip_prefix('x')?.parse().ok()
}

async fn chat(State(state): State<AppState>, body: String) -> Response {
    let (behaviour, call) = {
        let mut shared = state.shared.lock().unwrap();
        shared.log.push(body.clone());
        match marker(&body) {
            Some((behaviour, key)) => {
                let n = shared.calls.entry(key).or_default();
                *n += 1;
                (behaviour, *n)
            }
            None => ("ok".to_string(), 1),
        }
    };
    tokio::time::sleep(state.base_delay).await;
    if let Some(n) = first_n(&behaviour, "fail500") {
        if call <= n {
            return (StatusCode::INTERNAL_SERVER_ERROR, "upstream exploded").into_response();
        }
    }
    if let Some(n) = first_n(&behaviour, "timeout") {
        if call <= n {
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
    }
    if let Some(n) = first_n(&behaviour, "partial") {
        if call <= n {
            return completion(r#"{"memories": [{"category": "declarative", "content": "User li"#.to_string());
        }
    }
    if let Some(n) = first_n(&behaviour, "slow") {
        if call <= n {
            tokio::time::sleep(Duration::from_secs(3)).await;
        }
    }
    match behaviour.as_str() {
        "malformed" => completion("Sure! Here are the memories you asked for: the user likes tea.".to_string()),
        "mixed" => ok_answer(
            &body,
            vec![
                json!({"category": "gossip", "content": "Something invalid.", "confidence": 0.5, "turns": [1]}),
                json!({"category": "declarative", "content": "   ", "confidence": 0.5, "turns": [1]}),
                json!({"category": "episodic", "content": "Confidence out of range.", "confidence": 7, "turns": [1]}),
                json!({"category": "episodic", "content": "A turn the model was never shown.", "confidence": 0.5, "turns": [99_999]}),
            ],
        ),
        _ => ok_answer(&body, Vec::new()),
    }
}
