//! The management REST API under `/v1`: what operators and applications manage (agents, their
//! directives, tokens, memories). JSON in and out; every error in the IBEX envelope
//! (`crate::error`); every list cursor-paginated ([`page`]); `Idempotency-Key` honoured on POST
//! ([`idempotency`]); callers authenticated by the AuthService over gRPC ([`extract::Caller`])
//! and checked for scope, org and agent in each handler. Each handler acts in a transaction
//! bound to the caller's org, so row-level security holds whatever ids a request carries.

pub mod agents;
pub mod directives;
pub mod extract;
pub mod idempotency;
pub mod memories;
pub mod page;
pub mod sql_error;
pub mod tokens;

use axum::routing::{get, post};
use axum::Router;
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::AppState;

/// The management routes (merged into the HTTP router under `/v1`).
pub fn routes(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/v1/agents", post(agents::create).get(agents::list))
        .route(
            "/v1/agents/{id}",
            get(agents::get).patch(agents::update).delete(agents::delete),
        )
        .route("/v1/agents/{id}/status", post(agents::set_status))
        .route(
            "/v1/agents/{id}/directives",
            get(directives::list).post(directives::create),
        )
        .route(
            "/v1/directives/{id}",
            get(directives::get).put(directives::change).delete(directives::archive),
        )
        .route("/v1/directives/{id}/versions", get(directives::versions))
        .route("/v1/directives/{id}/versions/{version}", get(directives::version))
        .route("/v1/memories", post(memories::create).get(memories::list))
        .route("/v1/memories/{id}", get(memories::get).delete(memories::forget))
        .route("/v1/memories/{id}/feedback", post(memories::feedback))
        .route("/v1/tokens", post(tokens::create).get(tokens::list))
        .route("/v1/tokens/{id}", get(tokens::get).delete(tokens::revoke))
        .route_layer(axum::middleware::from_fn_with_state(state, idempotency::honour))
}

/// A transaction acting for `org` (row-level security sees that org only).
pub async fn for_org(state: &AppState, org: Uuid) -> Result<Transaction<'static, Postgres>, ApiError> {
    let pool = state.db.as_ref().ok_or_else(|| ApiError::Unavailable {
        public: "the management API needs the database, and none is configured".into(),
        detail: "no database_url".into(),
    })?;
    crate::db::begin_for_org(pool, org)
        .await
        .map_err(|e| sql_error::from_sqlx("beginning a transaction", e))
}

/// 404 unless `agent` is an agent of `org`.
pub async fn require_agent_exists(tx: &mut sqlx::PgConnection, org: Uuid, agent: Uuid) -> Result<(), ApiError> {
    let found: Option<i32> = sqlx::query_scalar("SELECT 1 FROM ibex_core.agents WHERE org_id = $1 AND id = $2")
        .bind(org)
        .bind(agent)
        .fetch_optional(tx)
        .await
        .map_err(|e| sql_error::from_sqlx("reading an agent", e))?;
    found
        .map(|_| ())
        .ok_or_else(|| ApiError::ResourceNotFound(format!("agent {agent} not found")))
}
