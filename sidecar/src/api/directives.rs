//! Directives: an agent's standing instructions, with their full history. Every change (new
//! content or priority, archiving) is a new immutable version (`directive_versions`, append-only);
//! any version can be read back, and the hot path always serves the current one
//! (sql/api/agents.sql holds the versioning).
//!
//! Routes: `/v1/agents/{agent}/directives` (list, create) and `/v1/directives/{id}` (get,
//! change, archive, versions).

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::extract::{ApiPath, ApiQuery, Caller};
use super::page::{keyed_by_created_at, Page, PageQuery, PageRequest};
use super::{for_org, sql_error::from_sqlx};
use crate::error::ApiError;
use crate::http::json::ApiJson;
use crate::state::AppState;

const READ: &str = "directives:read";
const WRITE: &str = "directives:write";

#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
pub struct Directive {
    pub id: Uuid,
    pub org_id: Uuid,
    pub agent_id: Uuid,
    pub name: String,
    pub content: String,
    pub version: i32,
    pub status: String,
    pub priority: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, org_id, agent_id, name, content, version, status, priority, created_at, updated_at";

#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
pub struct DirectiveVersion {
    pub directive_id: Uuid,
    pub version: i32,
    pub name: String,
    pub content: String,
    pub status: String,
    pub created_at: DateTime<Utc>,
    #[serde(skip)]
    pub id: Uuid,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDirective {
    pub name: String,
    pub content: String,
    pub priority: Option<i32>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangeDirective {
    pub content: String,
    pub priority: Option<i32>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListDirectives {
    pub status: Option<String>,
    /// Rows per page (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

keyed_by_created_at!(Directive, DirectiveVersion);

#[utoipa::path(
    get,
    path = "/v1/agents/{id}/directives",
    operation_id = "directives_list",
    tag = "directives",
    description = "The agent's directives, newest first. Scope: `directives:read`.",
    params(("id" = Uuid, Path, description = "The agent's id"), ListDirectives),
    responses((status = 200, description = "A page of directives", body = Page<Directive>)),
)]
pub async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(agent): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<ListDirectives>,
) -> Result<Json<Page<Directive>>, ApiError> {
    caller.require_scope(READ)?;
    caller.require_agent(agent)?;
    let list = "directives";
    let page = PageRequest::new(query.limit, query.cursor.as_deref(), list)?;
    let mut tx = for_org(&state, caller.org_id).await?;
    super::require_agent_exists(&mut tx, caller.org_id, agent).await?;
    let rows: Vec<Directive> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM ibex_core.directives
         WHERE org_id = $1 AND agent_id = $2 AND ($3::text IS NULL OR status = $3)
           AND (created_at, id) < ($4, $5)
         ORDER BY created_at DESC, id DESC LIMIT $6"
    ))
    .bind(caller.org_id)
    .bind(agent)
    .bind(&query.status)
    .bind(page.before().created_at)
    .bind(page.before().id)
    .bind(page.fetch())
    .fetch_all(&mut *tx)
    .await
    .map_err(|e| from_sqlx("listing directives", e))?;
    Ok(Json(page.finish(rows, list)))
}

#[utoipa::path(
    post,
    path = "/v1/agents/{id}/directives",
    operation_id = "directives_create",
    tag = "directives",
    description = "A new directive (version 1); a name the agent already uses is a 409. Scope: `directives:write`.",
    params(("id" = Uuid, Path, description = "The agent's id")),
    request_body = CreateDirective,
    responses((status = 201, description = "The new directive", body = Directive)),
)]
/// A new directive (version 1); a name the agent already uses is a 409 (change it with PUT).
pub async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(agent): ApiPath<Uuid>,
    ApiJson(body): ApiJson<CreateDirective>,
) -> Result<(StatusCode, Json<Directive>), ApiError> {
    caller.require_scope(WRITE)?;
    caller.require_agent(agent)?;
    let mut tx = for_org(&state, caller.org_id).await?;
    super::require_agent_exists(&mut tx, caller.org_id, agent).await?;
    let taken: Option<Uuid> = sqlx::query_scalar(
        "SELECT id FROM ibex_core.directives WHERE org_id = $1 AND agent_id = $2 AND name = btrim($3)",
    )
    .bind(caller.org_id)
    .bind(agent)
    .bind(&body.name)
    .fetch_optional(&mut *tx)
    .await
    .map_err(|e| from_sqlx("creating a directive", e))?;
    if let Some(id) = taken {
        return Err(ApiError::Conflict(format!(
            "this agent already has a directive named {:?} ({id}); change it with PUT /v1/directives/{id}",
            body.name.trim()
        )));
    }
    let id = set(&mut tx, caller.org_id, agent, &body.name, &body.content, body.priority).await?;
    let directive = fetch(&mut tx, caller.org_id, caller.agent_id, id).await?;
    tx.commit().await.map_err(|e| from_sqlx("creating a directive", e))?;
    Ok((StatusCode::CREATED, Json(directive)))
}

#[utoipa::path(
    get,
    path = "/v1/directives/{id}",
    operation_id = "directives_get",
    tag = "directives",
    description = "The directive's current version. Scope: `directives:read`.",
    params(("id" = Uuid, Path, description = "The directive's id")),
    responses((status = 200, description = "The directive", body = Directive)),
)]
pub async fn get(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Directive>, ApiError> {
    caller.require_scope(READ)?;
    let mut tx = for_org(&state, caller.org_id).await?;
    Ok(Json(fetch(&mut tx, caller.org_id, caller.agent_id, id).await?))
}

#[utoipa::path(
    put,
    path = "/v1/directives/{id}",
    operation_id = "directives_change",
    tag = "directives",
    description = "A new version with this content and priority (an archived directive becomes active again). Scope: `directives:write`.",
    params(("id" = Uuid, Path, description = "The directive's id")),
    request_body = ChangeDirective,
    responses((status = 200, description = "The directive's new current version", body = Directive)),
)]
/// A new version with this content and priority (an archived directive becomes active again);
/// unchanged content and priority of an active directive make no new version.
pub async fn change(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<ChangeDirective>,
) -> Result<Json<Directive>, ApiError> {
    caller.require_scope(WRITE)?;
    let mut tx = for_org(&state, caller.org_id).await?;
    let current = fetch(&mut tx, caller.org_id, caller.agent_id, id).await?;
    let priority = body.priority.or(Some(current.priority));
    set(
        &mut tx,
        caller.org_id,
        current.agent_id,
        &current.name,
        &body.content,
        priority,
    )
    .await?;
    let directive = fetch(&mut tx, caller.org_id, caller.agent_id, id).await?;
    tx.commit().await.map_err(|e| from_sqlx("changing a directive", e))?;
    Ok(Json(directive))
}

#[utoipa::path(
    delete,
    path = "/v1/directives/{id}",
    operation_id = "directives_archive",
    tag = "directives",
    description = "Archives the directive (a new version, status archived). Scope: `directives:write`.",
    params(("id" = Uuid, Path, description = "The directive's id")),
    responses((status = 200, description = "The archived directive", body = Directive)),
)]
/// Archives the directive (a new version, status archived); the hot path stops serving it.
pub async fn archive(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Directive>, ApiError> {
    caller.require_scope(WRITE)?;
    let mut tx = for_org(&state, caller.org_id).await?;
    fetch(&mut tx, caller.org_id, caller.agent_id, id).await?;
    sqlx::query("SELECT * FROM ibex_core.archive_directive($1, $2)")
        .bind(caller.org_id)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(|e| from_sqlx("archiving a directive", e))?;
    let directive = fetch(&mut tx, caller.org_id, caller.agent_id, id).await?;
    tx.commit().await.map_err(|e| from_sqlx("archiving a directive", e))?;
    Ok(Json(directive))
}

#[utoipa::path(
    get,
    path = "/v1/directives/{id}/versions",
    operation_id = "directives_versions",
    tag = "directives",
    description = "Every version of the directive, newest first. Scope: `directives:read`.",
    params(("id" = Uuid, Path, description = "The directive's id"), PageQuery),
    responses((status = 200, description = "A page of versions", body = Page<DirectiveVersion>)),
)]
/// Every version, newest first.
pub async fn versions(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<Page<DirectiveVersion>>, ApiError> {
    caller.require_scope(READ)?;
    let list = "directive_versions";
    let page = PageRequest::parse(&query, list)?;
    let mut tx = for_org(&state, caller.org_id).await?;
    fetch(&mut tx, caller.org_id, caller.agent_id, id).await?;
    let rows: Vec<DirectiveVersion> = sqlx::query_as(
        "SELECT id, directive_id, version, name, content, status, created_at FROM ibex_core.directive_versions
         WHERE org_id = $1 AND directive_id = $2
           AND (created_at, id) < ($3, $4)
         ORDER BY created_at DESC, id DESC LIMIT $5",
    )
    .bind(caller.org_id)
    .bind(id)
    .bind(page.before().created_at)
    .bind(page.before().id)
    .bind(page.fetch())
    .fetch_all(&mut *tx)
    .await
    .map_err(|e| from_sqlx("listing directive versions", e))?;
    Ok(Json(page.finish(rows, list)))
}

#[utoipa::path(
    get,
    path = "/v1/directives/{id}/versions/{version}",
    operation_id = "directives_version",
    tag = "directives",
    description = "One version of the directive. Scope: `directives:read`.",
    params(("id" = Uuid, Path, description = "The directive's id"), ("version" = i32, Path, description = "The version number")),
    responses((status = 200, description = "The version", body = DirectiveVersion)),
)]
pub async fn version(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath((id, version)): ApiPath<(Uuid, i32)>,
) -> Result<Json<DirectiveVersion>, ApiError> {
    caller.require_scope(READ)?;
    let mut tx = for_org(&state, caller.org_id).await?;
    fetch(&mut tx, caller.org_id, caller.agent_id, id).await?;
    sqlx::query_as(
        "SELECT id, directive_id, version, name, content, status, created_at FROM ibex_core.directive_versions
         WHERE org_id = $1 AND directive_id = $2 AND version = $3",
    )
    .bind(caller.org_id)
    .bind(id)
    .bind(version)
    .fetch_optional(&mut *tx)
    .await
    .map_err(|e| from_sqlx("reading a directive version", e))?
    .map(Json)
    .ok_or_else(|| ApiError::ResourceNotFound(format!("directive {id} has no version {version}")))
}

async fn set(
    tx: &mut sqlx::PgConnection,
    org: Uuid,
    agent: Uuid,
    name: &str,
    content: &str,
    priority: Option<i32>,
) -> Result<Uuid, ApiError> {
    sqlx::query_scalar("SELECT directive_id FROM ibex_core.set_directive($1, $2, $3, $4, $5)")
        .bind(org)
        .bind(agent)
        .bind(name)
        .bind(content)
        .bind(priority.unwrap_or(0))
        .fetch_one(tx)
        .await
        .map_err(|e| from_sqlx("writing a directive", e))
}

/// The directive `id` of `org` (and of the caller's agent, for an agent-bound caller).
async fn fetch(tx: &mut sqlx::PgConnection, org: Uuid, bound: Option<Uuid>, id: Uuid) -> Result<Directive, ApiError> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM ibex_core.directives WHERE org_id = $1 AND id = $2 AND ($3::uuid IS NULL OR agent_id = $3)"
    ))
    .bind(org)
    .bind(id)
    .bind(bound)
    .fetch_optional(tx)
    .await
    .map_err(|e| from_sqlx("reading a directive", e))?
    .ok_or_else(|| ApiError::ResourceNotFound(format!("directive {id} not found")))
}
