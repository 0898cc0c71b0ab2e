//! OpenAI-compatible `POST /v1/chat/completions`: every call gets the agent's context first.
//!
//! 1. Authentication: `Authorization: Bearer <IBEX API token>` with scope `proxy` (or `admin`).
//!    The agent is the token's (agent-bound tokens) or the `x-ibex-agent-id` header's, which must
//!    be an agent of the token's org.
//! 2. Session: `x-ibex-session-id` is the caller's id for the conversation (the session's
//!    `external_id`, created on first use through `ibex_core.ensure_session`); without it every
//!    call is a session of its own. A completed session refuses new turns (409).
//! 3. Context: the same core as gRPC AssembleContext (`crate::context`), in-process.
//! 4. Upstream: the request body is forwarded unchanged except `messages`: the assembled context
//!    as a system message first (when there is any), then the caller's messages that the budget
//!    kept (the caller's own system messages always are), in their order and original form.
//!    Streaming (`"stream": true`) is passed through chunk by chunk as it arrives.
//! 5. Recording: the caller's new messages (those after the last assistant message of the
//!    request: the user's turn, tool results) and the assistant's reply are appended to the
//!    session (`ibex_core.append_turns`), and one `usage_events` row is written per call,
//!    successful or not (model, prompt and completion tokens from the upstream's `usage` or
//!    counted, latency, status, streamed). `x-ibex-session-complete: true` then completes the
//!    session (`ibex_core.complete_session`), which hands it to extraction. A non-streamed answer
//!    is recorded before it is returned; a streamed one when the stream ends (also when the
//!    client went away: the upstream is read to the end so the turn is complete). A recording
//!    failure is logged and counted, never turned into an error for an answer already obtained.
//!
//! Upstream failures come back in the error envelope: `upstream_timeout` (504) when no answer
//! (or no next chunk) arrives within `upstream_timeout`, `upstream_error` with the upstream's
//! status and body in `details` otherwise (502, or the upstream's own status for the client's
//! mistakes such as 400 or 429).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::{json, Value};
use uuid::Uuid;

use super::json::ApiJson;
use crate::auth::{Principal, SCOPE_PROXY};
use crate::context::{ContextAnswer, ContextRequest};
use crate::db;
use crate::error::ApiError;
use crate::state::AppState;

pub static X_AGENT: HeaderName = HeaderName::from_static("x-ibex-agent-id");
pub static X_SESSION: HeaderName = HeaderName::from_static("x-ibex-session-id");
pub static X_SESSION_COMPLETE: HeaderName = HeaderName::from_static("x-ibex-session-complete");
/// Response headers: the IBEX session (UUID), whether the context was degraded, its size.
pub static X_SESSION_UUID: HeaderName = HeaderName::from_static("x-ibex-session-uuid");
pub static X_DEGRADED: HeaderName = HeaderName::from_static("x-ibex-context-degraded");
pub static X_CONTEXT_TOKENS: HeaderName = HeaderName::from_static("x-ibex-context-tokens");
pub static X_MEMORIES: HeaderName = HeaderName::from_static("x-ibex-memories");
/// `shed`: context assembly was at capacity and the call went upstream without memories.
pub static X_CONTEXT: HeaderName = HeaderName::from_static("x-ibex-context");
/// Upstream error bodies are kept up to this size in the envelope.
const MAX_ERROR_BODY: usize = 16 * 1024;

/// The parts of a chat completions request IBEX reads; everything else passes through.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    pub model: String,
    /// (role, text) of each message, text parts joined.
    pub messages: Vec<(String, String)>,
    pub stream: bool,
    pub max_output_tokens: Option<u32>,
}

/// The text of a message's `content`: a string, an array of parts (text parts joined by
/// newlines, other parts ignored), or null (an assistant message with tool calls only).
pub fn content_text(content: &Value) -> Option<String> {
    match content {
        Value::String(s) => Some(s.clone()),
        Value::Null => Some(String::new()),
        Value::Array(parts) => Some(
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        _ => None,
    }
}

pub fn parse_request(body: &Value) -> Result<ChatRequest, ApiError> {
    let object = body
        .as_object()
        .ok_or_else(|| ApiError::invalid("the request body must be a JSON object"))?;
    let model = object
        .get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.trim().is_empty())
        .ok_or_else(|| ApiError::invalid("`model` is required"))?
        .to_string();
    let raw = object
        .get("messages")
        .and_then(Value::as_array)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| ApiError::invalid("`messages` must be a non-empty array"))?;
    let mut messages = Vec::with_capacity(raw.len());
    for (index, m) in raw.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str);
        let text = m.get("content").map_or(Some(String::new()), content_text);
        match (role, text) {
            (Some(role), Some(text)) => messages.push((role.to_string(), text)),
            _ => {
                return Err(ApiError::InvalidRequest {
                    message: format!("message {index} needs a string `role` and a string or array `content`"),
                    details: Some(json!({ "index": index })),
                })
            }
        }
    }
    let max_output_tokens = ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|k| object.get(*k).and_then(Value::as_u64))
        .map(|n| n.min(u64::from(u32::MAX)) as u32);
    Ok(ChatRequest {
        model,
        messages,
        stream: object.get("stream").and_then(Value::as_bool).unwrap_or(false),
        max_output_tokens,
    })
}

/// Indices of the messages this call adds to the session: after the request's last assistant
/// message, without the caller's instructions (system/developer, resent on every call).
pub fn new_message_indices(messages: &[(String, String)]) -> Vec<usize> {
    let start = messages
        .iter()
        .rposition(|(role, _)| role == "assistant")
        .map_or(0, |i| i + 1);
    (start..messages.len())
        .filter(|&i| matches!(messages[i].0.as_str(), "user" | "tool"))
        .collect()
}

/// The body sent upstream: `messages` replaced by the context and the kept messages.
pub fn upstream_body(body: &Value, answer: &ContextAnswer) -> Value {
    let original = body["messages"].as_array().cloned().unwrap_or_default();
    let mut messages = Vec::with_capacity(answer.assembly.history.len() + 1);
    if !answer.assembly.context.is_empty() {
        messages.push(json!({ "role": "system", "content": answer.assembly.context }));
    }
    for &(i, _) in &answer.assembly.history {
        if let Some(m) = original.get(i) {
            messages.push(m.clone());
        }
    }
    let mut out = body.clone();
    out["messages"] = Value::Array(messages);
    out
}

fn header_text<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

fn resolve_agent(principal: &Principal, headers: &HeaderMap) -> Result<Uuid, ApiError> {
    let from_header = match header_text(headers, &X_AGENT) {
        Some(text) => Some(Uuid::parse_str(text).map_err(|_| ApiError::invalid("x-ibex-agent-id must be a UUID"))?),
        None => None,
    };
    match (principal.agent_id, from_header) {
        (_, Some(agent)) => {
            principal.require_agent(agent)?;
            Ok(agent)
        }
        (Some(agent), None) => Ok(agent),
        (None, None) => Err(ApiError::invalid(
            "no agent: send x-ibex-agent-id, or use a token bound to an agent",
        )),
    }
}

/// Everything known about the call when it is recorded.
struct CallRecord {
    org: Uuid,
    agent: Uuid,
    session: Uuid,
    token: Uuid,
    model: String,
    /// (role, content, tokens) of the caller's new messages.
    new_turns: Vec<(String, String, usize)>,
    prompt_tokens: usize,
    complete_session: bool,
    streamed: bool,
    started: Instant,
}

#[derive(Default)]
struct Outcome {
    status: u16,
    reply: Option<String>,
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
}

/// Records a call that got no answer to pass on (usage row with `status`), then hands back the
/// error the client gets.
async fn failed(state: &AppState, call: &CallRecord, status: u16, error: ApiError) -> ApiError {
    let outcome = Outcome {
        status,
        ..Outcome::default()
    };
    record(state, call, outcome).await;
    error
}

async fn record(state: &AppState, call: &CallRecord, outcome: Outcome) {
    let Some(pool) = state.db.as_ref() else { return };
    let latency_ms = call.started.elapsed().as_millis().min(i32::MAX as u128) as i32;
    let completion_tokens = outcome.completion_tokens.map_or_else(
        || {
            outcome
                .reply
                .as_deref()
                .map_or(0, |r| ibex_engine::tokens::count(&call.model, r).tokens)
        },
        |n| n as usize,
    );
    let prompt_tokens = outcome.prompt_tokens.map_or(call.prompt_tokens, |n| n as usize);
    let result = async {
        let mut tx = db::begin_for_org(pool, call.org).await?;
        if let Some(reply) = &outcome.reply {
            let mut turns: Vec<Value> = call
                .new_turns
                .iter()
                .map(|(role, content, tokens)| json!({"role": role, "content": content, "tokens": tokens, "model": call.model}))
                .collect();
            turns.push(json!({"role": "assistant", "content": reply, "tokens": completion_tokens, "model": call.model}));
            sqlx::query("SELECT ibex_core.append_turns($1, $2, $3)")
                .bind(call.org)
                .bind(call.session)
                .bind(Value::Array(turns))
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "INSERT INTO ibex_core.usage_events (org_id, agent_id, session_id, token_id, model, prompt_tokens,
                                                 completion_tokens, latency_ms, status_code, streamed)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(call.org)
        .bind(call.agent)
        .bind(call.session)
        .bind(call.token)
        .bind(&call.model)
        .bind(prompt_tokens.min(i32::MAX as usize) as i32)
        .bind(completion_tokens.min(i32::MAX as usize) as i32)
        .bind(latency_ms)
        .bind(i32::from(outcome.status))
        .bind(call.streamed)
        .execute(&mut *tx)
        .await?;
        if call.complete_session && outcome.reply.is_some() {
            sqlx::query("SELECT ibex_core.complete_session($1, $2)")
                .bind(call.org)
                .bind(call.session)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await
    }
    .await;
    if let Err(e) = result {
        state.metrics.proxy_record_failures.inc();
        tracing::warn!(org = %call.org, session = %call.session, error = %e, "could not record a proxied call");
    }
}

/// The session of this call, created on first use; refuses sessions that no longer take turns.
async fn session_for(state: &AppState, org: Uuid, agent: Uuid, external: Option<&str>) -> Result<Uuid, ApiError> {
    let pool = state.db.as_ref().ok_or_else(|| ApiError::Unavailable {
        public: "the proxy needs the database, and none is configured".into(),
        detail: "no database_url".into(),
    })?;
    let mut tx = db::begin_for_org(pool, org)
        .await
        .map_err(|e| ApiError::database("starting a session transaction", e))?;
    let agent_exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM ibex_core.agents WHERE org_id = $1 AND id = $2)")
            .bind(org)
            .bind(agent)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| ApiError::database("looking up the agent", e))?;
    if !agent_exists {
        return Err(ApiError::ResourceNotFound(format!(
            "agent {agent} does not exist in org {org}"
        )));
    }
    let session: Uuid = sqlx::query_scalar("SELECT ibex_core.ensure_session($1, $2, $3)")
        .bind(org)
        .bind(agent)
        .bind(external)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| ApiError::database("ensure_session", e))?;
    let status: String = sqlx::query_scalar("SELECT status FROM ibex_core.sessions WHERE org_id = $1 AND id = $2")
        .bind(org)
        .bind(session)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| ApiError::database("reading the session", e))?;
    tx.commit()
        .await
        .map_err(|e| ApiError::database("committing the session", e))?;
    if status != "active" {
        return Err(ApiError::Conflict(format!(
            "session {} is {status} and takes no more turns; use a new x-ibex-session-id",
            external.unwrap_or("")
        )));
    }
    Ok(session)
}

pub async fn chat_completions(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Value>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let result = proxy(&state, &headers, body, started).await;
    let outcome = match &result {
        Ok(_) => "ok",
        Err(ApiError::UpstreamError { .. }) => "upstream_error",
        Err(ApiError::UpstreamTimeout { .. }) => "upstream_timeout",
        Err(_) => "error",
    };
    state.metrics.proxy_requests.with_label_values(&[outcome]).inc();
    result
}

async fn proxy(state: &AppState, headers: &HeaderMap, body: Value, started: Instant) -> Result<Response, ApiError> {
    let principal = state
        .auth
        .authenticate(headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()))
        .await?;
    principal.require_scope(SCOPE_PROXY)?;
    let base = state
        .config
        .upstream_base_url
        .clone()
        .ok_or(ApiError::UpstreamNotConfigured)?;
    let agent = resolve_agent(&principal, headers)?;
    let chat = parse_request(&body)?;
    let external = header_text(headers, &X_SESSION).filter(|s| !s.is_empty());
    if external.is_some_and(|s| s.len() > 200) {
        return Err(ApiError::invalid("x-ibex-session-id is at most 200 characters"));
    }
    let complete = header_text(headers, &X_SESSION_COMPLETE).is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let org = principal.org_id;
    let session = session_for(state, org, agent, external).await?;

    let context_request = ContextRequest {
        org,
        agent,
        model: chat.model.clone(),
        messages: chat.messages.clone(),
        max_output_tokens: chat.max_output_tokens,
        session_id: Some(session.to_string()),
    };
    // Shed at admission: the LLM call still goes upstream, without memories, flagged and counted.
    let (answer, shed) = match state.context.assemble(context_request.clone()).await {
        Err(ApiError::Shed { .. }) => {
            state.metrics.proxy_context_shed.inc();
            (state.context.without_memories(context_request)?, true)
        }
        other => (other?, false),
    };
    let call = CallRecord {
        org,
        agent,
        session,
        token: principal.token_id,
        model: chat.model.clone(),
        new_turns: new_message_indices(&chat.messages)
            .into_iter()
            .map(|i| {
                let (role, content) = &chat.messages[i];
                let tokens = ibex_engine::tokens::count(&chat.model, content).tokens;
                (role.clone(), content.clone(), tokens)
            })
            .collect(),
        prompt_tokens: answer.assembly.total_tokens,
        complete_session: complete,
        streamed: chat.stream,
        started,
    };
    let mut extra = HeaderMap::new();
    let mut put = |name: &HeaderName, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            extra.insert(name.clone(), v);
        }
    };
    put(&X_SESSION_UUID, session.to_string());
    put(&X_DEGRADED, answer.degraded.is_some().to_string());
    put(&X_CONTEXT_TOKENS, answer.assembly.total_tokens.to_string());
    put(&X_MEMORIES, answer.assembly.chosen.len().to_string());
    if shed {
        put(&X_CONTEXT, "shed".to_string());
    }

    let url = format!("{}/chat/completions", base.trim_end_matches('/'));
    let mut request = state.upstream.post(&url).json(&upstream_body(&body, &answer));
    if let Some(key) = &state.config.upstream_api_key {
        request = request.bearer_auth(&key.0);
    }
    let timeout = state.config.upstream_timeout;
    let timeout_ms = timeout.as_millis() as u64;
    let upstream_started = Instant::now();
    let response = match tokio::time::timeout(timeout, request.send()).await {
        Err(_) => return Err(failed(state, &call, 504, ApiError::UpstreamTimeout { timeout_ms }).await),
        Ok(Err(e)) => {
            let error = ApiError::UpstreamError {
                message: format!("cannot reach the upstream: {}", without_url(&e)),
                upstream_status: None,
                upstream_body: None,
            };
            return Err(failed(state, &call, 502, error).await);
        }
        Ok(Ok(response)) => response,
    };
    let status = response.status();
    if !status.is_success() {
        let body = match tokio::time::timeout(timeout, response.bytes()).await {
            Ok(Ok(bytes)) => {
                let cut = &bytes[..bytes.len().min(MAX_ERROR_BODY)];
                Some(serde_json::from_slice(cut).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(cut).into())))
            }
            _ => None,
        };
        let error = ApiError::UpstreamError {
            message: format!("the upstream answered {status}"),
            upstream_status: Some(status.as_u16()),
            upstream_body: body,
        };
        return Err(failed(state, &call, status.as_u16(), error).await);
    }
    if chat.stream {
        return Ok(stream_through(
            state.clone(),
            call,
            response,
            timeout,
            extra,
            upstream_started,
        ));
    }
    let bytes = match tokio::time::timeout(timeout, response.bytes()).await {
        Err(_) => return Err(failed(state, &call, 504, ApiError::UpstreamTimeout { timeout_ms }).await),
        Ok(Err(e)) => {
            let error = ApiError::UpstreamError {
                message: format!("the upstream's answer broke off: {}", without_url(&e)),
                upstream_status: Some(status.as_u16()),
                upstream_body: None,
            };
            return Err(failed(state, &call, 502, error).await);
        }
        Ok(Ok(bytes)) => bytes,
    };
    state
        .metrics
        .proxy_upstream_duration
        .observe(upstream_started.elapsed().as_secs_f64());
    let parsed: Value = serde_json::from_slice(&bytes).map_err(|_| ApiError::UpstreamError {
        message: "the upstream's answer is not JSON".into(),
        upstream_status: Some(status.as_u16()),
        upstream_body: Some(Value::String(
            String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_ERROR_BODY)]).into(),
        )),
    })?;
    let reply = parsed["choices"][0]["message"]["content"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_default();
    record(
        state,
        &call,
        Outcome {
            status: status.as_u16(),
            reply: Some(reply),
            prompt_tokens: parsed["usage"]["prompt_tokens"].as_u64(),
            completion_tokens: parsed["usage"]["completion_tokens"].as_u64(),
        },
    )
    .await;
    let mut response = (StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], bytes).into_response();
    response.headers_mut().extend(extra);
    Ok(response)
}

/// reqwest's errors name the URL; the upstream's URL is configuration, not for clients.
fn without_url(error: &reqwest::Error) -> String {
    let kind = if error.is_connect() {
        "connection failed"
    } else if error.is_timeout() {
        "timed out"
    } else if error.is_body() || error.is_decode() {
        "bad response body"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(error);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind} ({detail})")
    }
}

/// What a stream of chat completion chunks said: the assistant's text and the usage, if sent.
#[derive(Default, Debug, PartialEq)]
pub struct StreamCapture {
    buffer: String,
    pub text: String,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
}

impl StreamCapture {
    /// Feeds raw SSE bytes (any split); complete `data:` lines are parsed as they arrive.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buffer.push_str(&String::from_utf8_lossy(bytes));
        while let Some(end) = self.buffer.find('\n') {
            let line: String = self.buffer.drain(..=end).collect();
            let line = line.trim_end_matches(['\r', '\n']);
            let Some(data) = line.strip_prefix("data:") else {
                continue;
            };
            let data = data.trim();
            if data == "[DONE]" {
                continue;
            }
            let Ok(chunk) = serde_json::from_str::<Value>(data) else {
                continue;
            };
            if let Some(delta) = chunk["choices"][0]["delta"]["content"].as_str() {
                self.text.push_str(delta);
            }
            if let Some(n) = chunk["usage"]["prompt_tokens"].as_u64() {
                self.prompt_tokens = Some(n);
            }
            if let Some(n) = chunk["usage"]["completion_tokens"].as_u64() {
                self.completion_tokens = Some(n);
            }
        }
    }
}

fn stream_through(
    state: AppState,
    call: CallRecord,
    response: reqwest::Response,
    idle_timeout: Duration,
    extra: HeaderMap,
    upstream_started: Instant,
) -> Response {
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or(HeaderValue::from_static("text/event-stream"));
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(64);
    let state = Arc::new(state);
    tokio::spawn(async move {
        let mut upstream = response.bytes_stream();
        let mut capture = StreamCapture::default();
        let mut client_gone = false;
        let mut final_status = status.as_u16();
        loop {
            match tokio::time::timeout(idle_timeout, upstream.next()).await {
                Ok(Some(Ok(chunk))) => {
                    capture.feed(&chunk);
                    if !client_gone && tx.send(Ok(chunk)).await.is_err() {
                        // Keep reading: the turn is recorded whole.
                        client_gone = true;
                    }
                }
                Ok(Some(Err(e))) => {
                    tracing::warn!(error = %without_url(&e), "upstream stream broke off");
                    final_status = 502;
                    let _ = tx.send(Err(std::io::Error::other("upstream stream broke off"))).await;
                    break;
                }
                Ok(None) => break,
                Err(_) => {
                    tracing::warn!("upstream stream stalled past upstream_timeout");
                    final_status = 504;
                    let _ = tx.send(Err(std::io::Error::other("upstream stream stalled"))).await;
                    break;
                }
            }
        }
        drop(tx);
        state
            .metrics
            .proxy_upstream_duration
            .observe(upstream_started.elapsed().as_secs_f64());
        let StreamCapture {
            text,
            prompt_tokens,
            completion_tokens,
            ..
        } = capture;
        record(
            &state,
            &call,
            Outcome {
                status: final_status,
                reply: Some(text),
                prompt_tokens,
                completion_tokens,
            },
        )
        .await;
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) });
    let mut response = Response::new(Body::from_stream(stream));
    *response.status_mut() = StatusCode::OK;
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, content_type);
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.extend(extra);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_parsed_leniently() {
        let body = json!({
            "model": "gpt-4o-mini",
            "stream": true,
            "max_tokens": 100,
            "temperature": 0.2,
            "messages": [
                {"role": "system", "content": "Be nice."},
                {"role": "user", "content": [{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "x"}}]},
                {"role": "assistant", "content": null, "tool_calls": []},
                {"role": "tool", "content": "42", "tool_call_id": "t"},
            ]
        });
        let r = parse_request(&body).unwrap();
        assert_eq!(r.model, "gpt-4o-mini");
        assert!(r.stream);
        assert_eq!(r.max_output_tokens, Some(100));
        assert_eq!(r.messages[1], ("user".into(), "look".into()));
        assert_eq!(r.messages[2], ("assistant".into(), String::new()));
        assert_eq!(new_message_indices(&r.messages), [3]);
        assert!(parse_request(&json!({"messages": []})).is_err());
        assert!(parse_request(&json!({"model": "m", "messages": []})).is_err());
        assert!(parse_request(&json!({"model": "m", "messages": [{"content": "x"}]})).is_err());
    }

    #[test]
    fn new_messages_follow_the_last_assistant_reply() {
        let m = |v: &[(&str, &str)]| {
            v.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(new_message_indices(&m(&[("system", "s"), ("user", "hi")])), [1]);
        assert_eq!(
            new_message_indices(&m(&[("user", "a"), ("assistant", "b"), ("user", "c"), ("user", "d")])),
            [2, 3]
        );
        assert!(new_message_indices(&m(&[("user", "a"), ("assistant", "b")])).is_empty());
    }

    #[test]
    fn stream_capture_reassembles_split_chunks() {
        let mut c = StreamCapture::default();
        let sse = "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\"}}]}\n\n\
                   data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n\
                   data: {\"choices\":[{\"delta\":{\"content\":\"lo\"}}]}\r\n\r\n\
                   data: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2}}\n\n\
                   data: [DONE]\n\n";
        for piece in sse.as_bytes().chunks(7) {
            c.feed(piece);
        }
        assert_eq!(c.text, "Hello");
        assert_eq!((c.prompt_tokens, c.completion_tokens), (Some(9), Some(2)));
    }
}
