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
//!    session (`ibex_core.append_turns`), and one `usage_events` row is written per call
//!    (`ibex_core.record_usage`, sql/api/usage.sql),
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
//!
//! The module is split by job: `wire` (the request as IBEX reads it), `session` (session
//! bookkeeping and recording), `upstream` (the call and its failures) and `stream` (streamed
//! answers and their capture).

mod session;
mod stream;
mod upstream;
pub mod wire;

use std::time::Instant;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use uuid::Uuid;

use super::json::ApiJson;
use crate::auth::{Principal, SCOPE_PROXY};
use crate::context::{ContextAnswer, ContextRequest, MemoryControls};
use crate::error::ApiError;
use crate::state::AppState;
pub use session::new_message_indices;
use session::{failed, record, session_for, CallRecord, NewTurn, Outcome};
pub use stream::StreamCapture;
pub use wire::{content_text, parse_request, upstream_body, ChatRequest};

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
/// Request headers: this call's memory controls (`crate::context::MemoryControls`).
pub static X_MAX_MEMORY_TOKENS: HeaderName = HeaderName::from_static("x-ibex-max-memory-tokens");
pub static X_MIN_RELEVANCE: HeaderName = HeaderName::from_static("x-ibex-min-relevance");
pub static X_EXPLAIN: HeaderName = HeaderName::from_static("x-ibex-explain");
/// Response header with `x-ibex-explain: true`: the candidates left out, as compact JSON
/// (`{"considered":N,"left_out":[...],"more":M}`, at most [`EXPLAIN_HEADER_ITEMS`] listed so the
/// header stays within what HTTP clients accept).
pub static X_CONTEXT_EXPLAIN: HeaderName = HeaderName::from_static("x-ibex-context-explain");
pub const EXPLAIN_HEADER_ITEMS: usize = 20;
/// Longest `x-ibex-session-id`: it is stored as the session's `external_id`.
const MAX_EXTERNAL_SESSION_ID: usize = 200;

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

/// This call's memory controls from the `x-ibex-*` request headers, checked before any work.
fn memory_controls(headers: &HeaderMap) -> Result<MemoryControls, ApiError> {
    let invalid = |name: &HeaderName, expected: &str, got: &str| ApiError::InvalidRequest {
        message: format!("{name} must be {expected}, got {got:?}"),
        details: Some(serde_json::json!({ "header": name.as_str() })),
    };
    let max_memory_tokens = match header_text(headers, &X_MAX_MEMORY_TOKENS) {
        Some(v) => Some(
            v.parse::<u32>()
                .map_err(|_| invalid(&X_MAX_MEMORY_TOKENS, "a whole number of tokens", v))?,
        ),
        None => None,
    };
    let min_relevance = match header_text(headers, &X_MIN_RELEVANCE) {
        Some(v) => Some(
            v.parse::<f64>()
                .map_err(|_| invalid(&X_MIN_RELEVANCE, "a number between 0 and 1", v))?,
        ),
        None => None,
    };
    let explain = match header_text(headers, &X_EXPLAIN) {
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(v) => return Err(invalid(&X_EXPLAIN, "true or false", v)),
        None => false,
    };
    let controls = MemoryControls {
        max_memory_tokens,
        min_relevance,
        explain,
    };
    controls.validate()?;
    Ok(controls)
}

/// The response headers that describe the context given to the upstream.
fn context_headers(session: Uuid, answer: &ContextAnswer, shed: bool) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let mut values = vec![
        (&X_SESSION_UUID, session.to_string()),
        (&X_DEGRADED, answer.degraded.is_some().to_string()),
        (&X_CONTEXT_TOKENS, answer.assembly.total_tokens.to_string()),
        (&X_MEMORIES, answer.assembly.chosen.len().to_string()),
    ];
    if shed {
        values.push((&X_CONTEXT, "shed".to_string()));
    }
    if answer.explain {
        let left_out = answer.left_out();
        let more = left_out.len().saturating_sub(EXPLAIN_HEADER_ITEMS);
        let listed = &left_out[..left_out.len() - more];
        let explain = serde_json::json!({
            "considered": answer.candidates.len(),
            "left_out": listed,
            "more": more,
        });
        values.push((&X_CONTEXT_EXPLAIN, explain.to_string()));
    }
    for (name, value) in values {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name.clone(), value);
        }
    }
    headers
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
    let controls = memory_controls(headers)?;
    let external = header_text(headers, &X_SESSION).filter(|s| !s.is_empty());
    if external.is_some_and(|s| s.len() > MAX_EXTERNAL_SESSION_ID) {
        return Err(ApiError::invalid("x-ibex-session-id is at most 200 characters"));
    }
    let complete = header_text(headers, &X_SESSION_COMPLETE).is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let org = principal.org_id;
    let session = session_for(state, org, agent, external).await?;

    let context_request = ContextRequest {
        org,
        agent,
        model: chat.model.clone(),
        // The context engine still takes (role, text) pairs.
        messages: chat
            .messages
            .iter()
            .map(|m| (m.role.as_str().to_string(), m.content.clone()))
            .collect(),
        max_output_tokens: chat.max_output_tokens,
        session_id: Some(session.to_string()),
        controls,
    };
    // Shed at admission: the LLM call still goes upstream, without memories, flagged and counted.
    let (answer, shed) = match state.context.assemble(context_request.clone()).await {
        Err(ApiError::Shed { .. }) => {
            state.metrics.proxy_context_shed.inc();
            (state.context.without_memories(context_request).await?, true)
        }
        other => (other?, false),
    };
    // Counting tokens is CPU work proportional to the text: off the async runtime (see
    // `context::pack`). The conversation is already bounded by max_context_chars.
    let new_turns = {
        let (model, turns) = (
            chat.model.clone(),
            new_message_indices(&chat.messages)
                .into_iter()
                .map(|i| chat.messages[i].clone())
                .collect::<Vec<_>>(),
        );
        tokio::task::spawn_blocking(move || {
            turns
                .into_iter()
                .map(|message| NewTurn {
                    tokens: ibex_engine::tokens::count(&model, &message.content).tokens,
                    message,
                })
                .collect()
        })
        .await
        .map_err(|e| ApiError::Internal(format!("counting tokens stopped: {e}")))?
    };
    let call = CallRecord {
        id: Uuid::new_v4(),
        org,
        agent,
        session,
        token: principal.token_id,
        model: chat.model.clone(),
        new_turns,
        prompt_tokens: answer.assembly.total_tokens,
        complete_session: complete,
        streamed: chat.stream,
        started,
        memory: ibex_engine::context::memory_cost(&answer.assembly, &answer.candidates),
    };
    let extra = context_headers(session, &answer, shed);

    let upstream_started = Instant::now();
    let response =
        match upstream::post_chat(&state.upstream, &state.config, &base, &upstream_body(&body, &answer)).await {
            Ok(response) => response,
            Err(f) => return Err(failed(state, &call, f.status, f.error).await),
        };
    let timeout = state.config.upstream_timeout;
    if chat.stream {
        return Ok(stream::stream_through(
            state.clone(),
            call,
            response,
            timeout,
            extra,
            upstream_started,
        ));
    }
    let answer = match upstream::read_answer(response, timeout).await {
        Ok(answer) => answer,
        Err(f) => return Err(failed(state, &call, f.status, f.error).await),
    };
    state
        .metrics
        .proxy_upstream_duration
        .observe(upstream_started.elapsed().as_secs_f64());
    let outcome = Outcome {
        status: answer.status,
        reply: Some(answer.reply),
        prompt_tokens: answer.prompt_tokens,
        completion_tokens: answer.completion_tokens,
    };
    record(state, &call, outcome).await;
    let mut response = (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        answer.body,
    )
        .into_response();
    response.headers_mut().extend(extra);
    Ok(response)
}
