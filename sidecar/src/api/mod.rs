//! The management REST API under `/v1`: what operators and applications manage (agents, their
//! directives, tokens, memories and their conflicts and export, sessions, users, usage analytics). JSON in and out; every error in the IBEX envelope
//! (`crate::error`); every list cursor-paginated ([`page`]); `Idempotency-Key` honoured on POST
//! ([`idempotency`]); callers authenticated by the AuthService over gRPC ([`extract::Caller`])
//! and checked for scope, org and agent in each handler. Each handler acts in a transaction
//! bound to the caller's org, so row-level security holds whatever ids a request carries.

pub mod agents;
pub mod analytics;
pub mod conflicts;
pub mod directives;
pub mod docs;
pub mod export;
pub mod extract;
pub mod idempotency;
pub mod memories;
pub mod openapi;
pub mod orgs;
pub mod overview;
pub mod page;
pub mod sessions;
pub mod sql_error;
pub mod tokens;
pub mod users;

use axum::routing::{get, post};
use axum::Router;
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::AppState;

/// The API's description (unauthenticated): `/openapi.json` and Swagger UI at `/docs`.
pub fn doc_routes() -> Router<AppState> {
    Router::new()
        .route("/openapi.json", get(openapi::serve))
        .route("/docs", get(docs::index))
        .route("/docs/{file}", get(docs::asset))
}

/// The management routes (merged into the HTTP router under `/v1`). Each has a
/// `#[utoipa::path]` listed in [`openapi::ApiDoc`] (a unit test there holds them equal).
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
        .route("/v1/memories/export", get(export::export))
        .route("/v1/memories/{id}/feedback", post(memories::feedback))
        .route("/v1/conflicts", get(conflicts::list))
        .route("/v1/conflicts/{id}/resolve", post(conflicts::resolve))
        .route("/v1/sessions", get(sessions::list))
        .route("/v1/sessions/{id}", get(sessions::get).delete(sessions::delete))
        .route("/v1/sessions/{id}/replay", get(sessions::replay_link))
        .route("/v1/sessions/{id}/archive", get(sessions::replay))
        .route("/v1/sessions/{id}/turns", get(sessions::turns))
        .route("/v1/sessions/{id}/complete", post(sessions::complete))
        .route("/v1/users", post(users::create).get(users::list))
        .route(
            "/v1/users/{id}",
            get(users::get).patch(users::update).delete(users::deactivate),
        )
        .route("/v1/analytics/usage", get(analytics::usage))
        .route("/v1/overview", get(overview::get))
        .route("/v1/orgs", post(orgs::create).get(orgs::list))
        .route("/v1/orgs/{id}", get(orgs::get).patch(orgs::update).delete(orgs::delete))
        .route("/v1/orgs/{id}/suspend", post(orgs::suspend))
        .route("/v1/orgs/{id}/resume", post(orgs::resume))
        .route("/v1/tokens", post(tokens::create).get(tokens::list))
        .route("/v1/tokens/{id}", get(tokens::get).delete(tokens::revoke))
        .route_layer(axum::middleware::from_fn_with_state(state, idempotency::honour))
}

/// The application pool, or 503 when this sidecar has no database.
pub fn pool(state: &AppState) -> Result<&sqlx::PgPool, ApiError> {
    state.db.as_ref().ok_or_else(|| ApiError::Unavailable {
        public: "the management API needs the database, and none is configured".into(),
        detail: "no database_url".into(),
    })
}

/// A transaction acting for `org` (row-level security sees that org only).
pub async fn for_org(state: &AppState, org: Uuid) -> Result<Transaction<'static, Postgres>, ApiError> {
    crate::db::begin_for_org(pool(state)?, org)
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

/// A refused state change: the database names the allowed states in its DETAIL
/// (`allowed: a, b`, sql/api/agents.sql and platform.sql); the API gives them as a list.
pub fn transition_refused(error: ApiError) -> ApiError {
    let ApiError::Rejected {
        status: 409,
        message,
        details,
        ..
    } = &error
    else {
        return error;
    };
    let allowed = details
        .get("detail")
        .and_then(serde_json::Value::as_str)
        .and_then(|d| d.strip_prefix("allowed: "))
        .map(|list| list.split(", ").filter(|s| !s.is_empty()).map(str::to_string).collect())
        .unwrap_or_default();
    ApiError::InvalidTransition {
        message: message.clone(),
        allowed,
    }
}
