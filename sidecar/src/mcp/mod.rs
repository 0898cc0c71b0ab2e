//! The MCP endpoint: `/mcp`, Model Context Protocol over Streamable HTTP (the official Rust SDK,
//! rmcp), so an agent's MCP client can remember, search, list and forget its memories.
//!
//! - **Who**: callers authenticate with an IBEX API token ([`auth`]), checked before any MCP
//!   processing; no, invalid or revoked token is a 401 in the error envelope. Each tool checks
//!   its scope (`memories:read` or `memories:write`); the org is always the token's.
//! - **For which agent**: every tool acts for one agent ([`tools`]). A token bound to an agent
//!   acts for that agent (naming another is refused); an org-wide token names it with the tool
//!   argument `agent_id`.
//! - **How**: the tools call the REST handlers' functions (`crate::api::memories::*_for`), so
//!   checks, SQL and answers are the REST API's.
//! - **State**: none. rmcp serves each POST on its own (no sessions, JSON answers, no SSE), so
//!   nothing grows per client, and any sidecar replica can answer any request.

pub mod auth;
pub mod tools;

use std::sync::Arc;

use axum::Router;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};

use crate::state::AppState;

pub const PATH: &str = "/mcp";

/// `/mcp`, authenticated (merged into the HTTP router).
pub fn routes(state: AppState) -> Router<AppState> {
    let server = tools::IbexMcp::new(state.clone());
    let config = StreamableHttpServerConfig::default()
        // Stateless: one POST, one answer. No session table to bound, no SSE stream to keep.
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .with_sse_retry(None)
        // rmcp reads the body itself (axum's DefaultBodyLimit does not apply): the same cap.
        .with_max_request_body_bytes(state.config.max_body_bytes)
        // rmcp's Host allow-list (loopback by default) guards unauthenticated local servers
        // against DNS rebinding. Here every request needs a bearer token, which a rebound
        // browser page cannot send, and the sidecar is reached under whatever name its
        // deployment gives it.
        .disable_allowed_hosts();
    let service = StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(NeverSessionManager::default()),
        config,
    );
    Router::new()
        .nest_service(PATH, service)
        .layer(axum::middleware::from_fn_with_state(state, auth::authenticate))
}
