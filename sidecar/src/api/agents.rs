//! `/v1/agents`: an org's agents. Create, list, get, update, delete, and status transitions
//! (sql/api/agents.sql decides which are allowed; a refused one is a 409 naming the allowed).
//!
//! An agent-bound token sees and changes its own agent only, and cannot create agents.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::extract::{ApiPath, ApiQuery, Caller};
use super::page::{keyed_by_created_at, Page, PageRequest};
use super::{for_org, sql_error::from_sqlx};
use crate::error::ApiError;
use crate::http::json::ApiJson;
use crate::state::AppState;

const LIST: &str = "agents";

#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
pub struct Agent {
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub description: Option<String>,
    pub status: String,
    pub default_model: Option<String>,
    pub metadata: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, org_id, name, description, status, default_model, metadata, created_at, updated_at";

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAgent {
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    #[schema(max_length = 4000)]
    pub description: Option<String>,
    #[schema(max_length = 200)]
    pub default_model: Option<String>,
    pub metadata: Option<Value>,
}

/// Fields absent keep their value; `null` clears description and default_model.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAgent {
    pub name: Option<String>,
    #[serde(default, with = "serde_with::rust::double_option")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    #[serde(default, with = "serde_with::rust::double_option")]
    #[schema(value_type = Option<String>)]
    pub default_model: Option<Option<String>>,
    pub metadata: Option<Value>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusChange {
    #[schema(value_type = AgentStatus)]
    pub status: String,
}

/// The states of an agent (`sql/api/agents.sql` checks them; documented here).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum AgentStatus {
    Active,
    Paused,
    Archived,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListAgents {
    pub status: Option<String>,
    /// Rows per page (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
pub struct DeletedAgent {
    pub memories: i64,
    pub directives: i64,
    pub sessions: i64,
    pub tokens: i64,
}

keyed_by_created_at!(Agent);

#[utoipa::path(
    post,
    path = "/v1/agents",
    operation_id = "agents_create",
    tag = "agents",
    description = "Creates an agent of the caller's org. An agent-bound token cannot create agents. Scope: `agents:write`.",
    request_body = CreateAgent,
    responses((status = 201, description = "The new agent", body = Agent)),
)]
pub async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(body): ApiJson<CreateAgent>,
) -> Result<(StatusCode, Json<Agent>), ApiError> {
    caller.require_scope("agents:write")?;
    if let Some(bound) = caller.agent_id {
        return Err(ApiError::PermissionDenied(format!(
            "this token is bound to agent {bound} and cannot create agents"
        )));
    }
    let mut tx = for_org(&state, caller.org_id).await?;
    let id: Uuid = sqlx::query_scalar("SELECT ibex_core.create_agent($1, $2, $3, $4, $5)")
        .bind(caller.org_id)
        .bind(&body.name)
        .bind(&body.description)
        .bind(&body.default_model)
        .bind(body.metadata.unwrap_or_else(|| Value::Object(Default::default())))
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| from_sqlx("creating an agent", e))?;
    let agent = fetch(&mut tx, caller.org_id, id).await?;
    tx.commit().await.map_err(|e| from_sqlx("creating an agent", e))?;
    Ok((StatusCode::CREATED, Json(agent)))
}

#[utoipa::path(
    get,
    path = "/v1/agents",
    operation_id = "agents_list",
    tag = "agents",
    description = "The org's agents, newest first (an agent-bound token sees its own only). Scope: `agents:read`.",
    params(ListAgents),
    responses((status = 200, description = "A page of agents", body = Page<Agent>)),
)]
pub async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiQuery(query): ApiQuery<ListAgents>,
) -> Result<Json<Page<Agent>>, ApiError> {
    caller.require_scope("agents:read")?;
    let page = PageRequest::new(query.limit, query.cursor.as_deref(), LIST)?;
    let mut tx = for_org(&state, caller.org_id).await?;
    let rows: Vec<Agent> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM ibex_core.agents
         WHERE org_id = $1 AND ($2::text IS NULL OR status = $2) AND ($3::uuid IS NULL OR id = $3)
           AND (created_at, id) < ($4, $5)
         ORDER BY created_at DESC, id DESC LIMIT $6"
    ))
    .bind(caller.org_id)
    .bind(&query.status)
    .bind(caller.agent_id)
    .bind(page.before().created_at)
    .bind(page.before().id)
    .bind(page.fetch())
    .fetch_all(&mut *tx)
    .await
    .map_err(|e| from_sqlx("listing agents", e))?;
    Ok(Json(page.finish(rows, LIST)))
}

#[utoipa::path(
    get,
    path = "/v1/agents/{id}",
    operation_id = "agents_get",
    tag = "agents",
    description = "One agent. Scope: `agents:read`.",
    params(("id" = Uuid, Path, description = "The agent's id")),
    responses((status = 200, description = "The agent", body = Agent)),
)]
pub async fn get(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Agent>, ApiError> {
    caller.require_scope("agents:read")?;
    caller.require_agent(id)?;
    let mut tx = for_org(&state, caller.org_id).await?;
    Ok(Json(fetch(&mut tx, caller.org_id, id).await?))
}

#[utoipa::path(
    patch,
    path = "/v1/agents/{id}",
    operation_id = "agents_update",
    tag = "agents",
    description = "Changes the fields sent; absent fields keep their value, `null` clears description and default_model. Scope: `agents:write`.",
    params(("id" = Uuid, Path, description = "The agent's id")),
    request_body = UpdateAgent,
    responses((status = 200, description = "The agent as changed", body = Agent)),
)]
pub async fn update(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<UpdateAgent>,
) -> Result<Json<Agent>, ApiError> {
    caller.require_scope("agents:write")?;
    caller.require_agent(id)?;
    let mut tx = for_org(&state, caller.org_id).await?;
    sqlx::query("SELECT ibex_core.update_agent($1, $2, $3, $4, $5, $6, $7, $8)")
        .bind(caller.org_id)
        .bind(id)
        .bind(&body.name)
        .bind(body.description.clone().flatten())
        .bind(body.default_model.clone().flatten())
        .bind(&body.metadata)
        .bind(matches!(body.description, Some(None)))
        .bind(matches!(body.default_model, Some(None)))
        .execute(&mut *tx)
        .await
        .map_err(|e| from_sqlx("updating an agent", e))?;
    let agent = fetch(&mut tx, caller.org_id, id).await?;
    tx.commit().await.map_err(|e| from_sqlx("updating an agent", e))?;
    Ok(Json(agent))
}

#[utoipa::path(
    post,
    path = "/v1/agents/{id}/status",
    operation_id = "agents_set_status",
    tag = "agents",
    description = "A status transition; a refused one is a 409 `invalid_transition` naming the allowed states. Scope: `agents:write`.",
    params(("id" = Uuid, Path, description = "The agent's id")),
    request_body = StatusChange,
    responses((status = 200, description = "The agent in its new status", body = Agent)),
)]
pub async fn set_status(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<StatusChange>,
) -> Result<Json<Agent>, ApiError> {
    caller.require_scope("agents:write")?;
    caller.require_agent(id)?;
    let mut tx = for_org(&state, caller.org_id).await?;
    let changed = sqlx::query("SELECT ibex_core.set_agent_status($1, $2, $3)")
        .bind(caller.org_id)
        .bind(id)
        .bind(&body.status)
        .execute(&mut *tx)
        .await;
    if let Err(e) = changed {
        return Err(super::transition_refused(from_sqlx("changing an agent's status", e)));
    }
    let agent = fetch(&mut tx, caller.org_id, id).await?;
    tx.commit()
        .await
        .map_err(|e| from_sqlx("changing an agent's status", e))?;
    Ok(Json(agent))
}

#[utoipa::path(
    delete,
    path = "/v1/agents/{id}",
    operation_id = "agents_delete",
    tag = "agents",
    description = "Deletes the agent and everything it owns; the answer counts what went. Scope: `agents:write`.",
    params(("id" = Uuid, Path, description = "The agent's id")),
    responses((status = 200, description = "What was deleted with the agent", body = DeletedAgent)),
)]
pub async fn delete(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<DeletedAgent>, ApiError> {
    caller.require_scope("agents:write")?;
    caller.require_agent(id)?;
    let mut tx = for_org(&state, caller.org_id).await?;
    let deleted: DeletedAgent =
        sqlx::query_as("SELECT memories, directives, sessions, tokens FROM ibex_core.delete_agent($1, $2)")
            .bind(caller.org_id)
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| from_sqlx("deleting an agent", e))?;
    tx.commit().await.map_err(|e| from_sqlx("deleting an agent", e))?;
    Ok(Json(deleted))
}

async fn fetch(tx: &mut sqlx::PgConnection, org: Uuid, id: Uuid) -> Result<Agent, ApiError> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM ibex_core.agents WHERE org_id = $1 AND id = $2"
    ))
    .bind(org)
    .bind(id)
    .fetch_optional(tx)
    .await
    .map_err(|e| from_sqlx("reading an agent", e))?
    .ok_or_else(|| ApiError::ResourceNotFound(format!("agent {id} not found")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_refused_transition_names_the_allowed_ones() {
        let refused = ApiError::Rejected {
            status: 409,
            code: "conflict",
            message: "an agent that is archived cannot become paused".into(),
            details: json!({ "sqlstate": "55000", "detail": "allowed: active", "hint": null }),
        };
        let ApiError::InvalidTransition { allowed, .. } = super::super::transition_refused(refused) else {
            panic!("not a transition refusal")
        };
        assert_eq!(allowed, ["active"]);
    }

    #[test]
    fn updates_tell_absent_from_null() {
        let body: UpdateAgent = serde_json::from_value(json!({ "description": null })).unwrap();
        assert_eq!(body.description, Some(None));
        assert_eq!(body.default_model, None);
        assert!(serde_json::from_value::<UpdateAgent>(json!({ "nme": "x" })).is_err());
    }
}
