//! A local OpenAI-compatible upstream for the proxy tests (the real LLM API is an external paid
//! service, so tests speak its protocol to a server of their own).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use futures_util::StreamExt;
use serde_json::{json, Value};

/// What the test upstream received.
pub type Seen = Arc<Mutex<Vec<Value>>>;

/// An OpenAI-compatible upstream answering from a script keyed on the last user message:
/// "[500]" fails, "[slow]" answers after 2 s, "[hang]" after 20 s, `"stream": true` streams, anything else answers.
pub async fn upstream() -> (SocketAddr, Seen) {
    async fn completions(State(seen): State<Seen>, headers: HeaderMap, Json(body): Json<Value>) -> Response {
        if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer sk-upstream-test") {
            return (StatusCode::UNAUTHORIZED, Json(json!({"error": {"message": "bad key"}}))).into_response();
        }
        seen.lock().unwrap().push(body.clone());
        let last = body["messages"]
            .as_array()
            .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
            .and_then(|m| m["content"].as_str())
            .unwrap_or("")
            .to_string();
        if last.contains("[500]") {
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({"error": {"message": "the model crashed", "type": "server_error"}})),
            )
                .into_response();
        }
        if last.contains("[slow]") {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        if last.contains("[hang]") {
            tokio::time::sleep(Duration::from_secs(20)).await;
        }
        if body["stream"] == true {
            let pieces = ["Hello", " from", " the", " stream"];
            let chunks = futures_util::stream::iter(
                std::iter::once(json!({"choices": [{"index": 0, "delta": {"role": "assistant"}}]}))
                    .chain(
                        pieces
                            .into_iter()
                            .map(|p| json!({"choices": [{"index": 0, "delta": {"content": p}}]})),
                    )
                    .map(|c| format!("data: {c}\n\n"))
                    .chain(std::iter::once("data: [DONE]\n\n".to_string())),
            )
            .then(|line| async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok::<_, std::io::Error>(line)
            });
            return Response::builder()
                .header("content-type", "text/event-stream")
                .body(Body::from_stream(chunks))
                .unwrap();
        }
        Json(json!({
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello from upstream"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 123, "completion_tokens": 4, "total_tokens": 127}
        }))
        .into_response()
    }
    let seen: Seen = Arc::default();
    let app = Router::new()
        .route("/v1/chat/completions", post(completions))
        .with_state(Arc::clone(&seen));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, seen)
}
