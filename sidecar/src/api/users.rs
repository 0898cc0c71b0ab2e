//! `/v1/users`: the people of an org. Create, list, get, update, deactivate (and reactivate).
//! Deactivating a user refuses every token of theirs at once, on every sidecar (the database
//! pushes the change, see `crate::auth::revocation`). Writes go through sql/api/users.sql.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::extract::{ApiPath, ApiQuery, Caller};
use super::page::{keyed_by_created_at, Page, PageRequest};
use super::{for_org, sql_error::from_sqlx};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::http::json::ApiJson;
use crate::state::AppState;

const READ: &str = "users:read";
const WRITE: &str = "users:write";
const LIST: &str = "users";

#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
pub struct User {
    pub id: Uuid,
    pub org_id: Uuid,
    pub email: String,
    pub display_name: Option<String>,
    pub role: String,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, org_id, email, display_name, role, status, created_at, updated_at";

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    #[schema(max_length = 320)]
    pub email: String,
    #[schema(max_length = 200)]
    pub display_name: Option<String>,
    /// Default: member.
    #[schema(value_type = Option<Role>)]
    pub role: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    #[schema(max_length = 200)]
    pub display_name: Option<String>,
    #[schema(value_type = Option<Role>)]
    pub role: Option<String>,
    #[schema(value_type = Option<UserStatus>)]
    pub status: Option<String>,
}

/// A user's role (`sql/api/users.sql` checks it; documented here).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum Role {
    Owner,
    Admin,
    Member,
    Viewer,
}

/// A user's status: `disabled` refuses their tokens.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum UserStatus {
    Active,
    Disabled,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListUsers {
    pub status: Option<String>,
    /// Rows per page (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// People are managed by org-wide tokens: an agent-bound token acts for a machine, not for the
/// org's people.
fn require_org_wide(caller: &Principal) -> Result<(), ApiError> {
    match caller.agent_id {
        Some(agent) => Err(ApiError::PermissionDenied(format!(
            "this token is bound to agent {agent}; users are managed with an org-wide token"
        ))),
        None => Ok(()),
    }
}

keyed_by_created_at!(User);

#[utoipa::path(
    post,
    path = "/v1/users",
    operation_id = "users_create",
    tag = "users",
    description = "Creates a person of the org (org-wide tokens only). Scope: `users:write`.",
    request_body = CreateUser,
    responses((status = 201, description = "The new user", body = User)),
)]
pub async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(body): ApiJson<CreateUser>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    caller.require_scope(WRITE)?;
    require_org_wide(&caller)?;
    let mut tx = for_org(&state, caller.org_id).await?;
    let id: Uuid = sqlx::query_scalar("SELECT ibex_core.create_user($1, $2, $3, $4)")
        .bind(caller.org_id)
        .bind(&body.email)
        .bind(&body.display_name)
        .bind(body.role.as_deref().unwrap_or("member"))
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| from_sqlx("creating a user", e))?;
    let user = fetch(&mut tx, caller.org_id, id).await?;
    tx.commit().await.map_err(|e| from_sqlx("creating a user", e))?;
    Ok((StatusCode::CREATED, Json(user)))
}

#[utoipa::path(
    get,
    path = "/v1/users",
    operation_id = "users_list",
    tag = "users",
    description = "The org's people, newest first (org-wide tokens only). Scope: `users:read`.",
    params(ListUsers),
    responses((status = 200, description = "A page of users", body = Page<User>)),
)]
pub async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiQuery(query): ApiQuery<ListUsers>,
) -> Result<Json<Page<User>>, ApiError> {
    caller.require_scope(READ)?;
    require_org_wide(&caller)?;
    let page = PageRequest::new(query.limit, query.cursor.as_deref(), LIST)?;
    let mut tx = for_org(&state, caller.org_id).await?;
    let rows: Vec<User> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM ibex_core.users
         WHERE org_id = $1 AND ($2::text IS NULL OR status = $2)
           AND (created_at, id) < ($3, $4)
         ORDER BY created_at DESC, id DESC LIMIT $5"
    ))
    .bind(caller.org_id)
    .bind(&query.status)
    .bind(page.before().created_at)
    .bind(page.before().id)
    .bind(page.fetch())
    .fetch_all(&mut *tx)
    .await
    .map_err(|e| from_sqlx("listing users", e))?;
    Ok(Json(page.finish(rows, LIST)))
}

#[utoipa::path(
    get,
    path = "/v1/users/{id}",
    operation_id = "users_get",
    tag = "users",
    description = "One user (org-wide tokens only). Scope: `users:read`.",
    params(("id" = Uuid, Path, description = "The user's id")),
    responses((status = 200, description = "The user", body = User)),
)]
pub async fn get(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<User>, ApiError> {
    caller.require_scope(READ)?;
    require_org_wide(&caller)?;
    let mut tx = for_org(&state, caller.org_id).await?;
    Ok(Json(fetch(&mut tx, caller.org_id, id).await?))
}

#[utoipa::path(
    patch,
    path = "/v1/users/{id}",
    operation_id = "users_update",
    tag = "users",
    description = "Changes the fields sent; `status` deactivates or reactivates (org-wide tokens only). Scope: `users:write`.",
    params(("id" = Uuid, Path, description = "The user's id")),
    request_body = UpdateUser,
    responses((status = 200, description = "The user as changed", body = User)),
)]
pub async fn update(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<UpdateUser>,
) -> Result<Json<User>, ApiError> {
    caller.require_scope(WRITE)?;
    require_org_wide(&caller)?;
    let mut tx = for_org(&state, caller.org_id).await?;
    sqlx::query("SELECT ibex_core.update_user($1, $2, $3, $4)")
        .bind(caller.org_id)
        .bind(id)
        .bind(&body.display_name)
        .bind(&body.role)
        .execute(&mut *tx)
        .await
        .map_err(|e| from_sqlx("updating a user", e))?;
    if let Some(status) = &body.status {
        set_status(&mut tx, caller.org_id, id, status).await?;
    }
    let user = fetch(&mut tx, caller.org_id, id).await?;
    tx.commit().await.map_err(|e| from_sqlx("updating a user", e))?;
    Ok(Json(user))
}

#[utoipa::path(
    delete,
    path = "/v1/users/{id}",
    operation_id = "users_deactivate",
    tag = "users",
    description = "Deactivates the user: their tokens stop working at once (org-wide tokens only). Scope: `users:write`.",
    params(("id" = Uuid, Path, description = "The user's id")),
    responses((status = 200, description = "The deactivated user", body = User)),
)]
/// Deactivates the user (their tokens stop working at once); the row stays, for the history that
/// names it. `PATCH` with `"status": "active"` reactivates.
pub async fn deactivate(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<User>, ApiError> {
    caller.require_scope(WRITE)?;
    require_org_wide(&caller)?;
    let mut tx = for_org(&state, caller.org_id).await?;
    set_status(&mut tx, caller.org_id, id, "disabled").await?;
    let user = fetch(&mut tx, caller.org_id, id).await?;
    tx.commit().await.map_err(|e| from_sqlx("deactivating a user", e))?;
    Ok(Json(user))
}

async fn set_status(tx: &mut sqlx::PgConnection, org: Uuid, id: Uuid, status: &str) -> Result<(), ApiError> {
    sqlx::query("SELECT ibex_core.set_user_status($1, $2, $3)")
        .bind(org)
        .bind(id)
        .bind(status)
        .execute(tx)
        .await
        .map(|_| ())
        .map_err(|e| from_sqlx("changing a user's status", e))
}

async fn fetch(tx: &mut sqlx::PgConnection, org: Uuid, id: Uuid) -> Result<User, ApiError> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM ibex_core.users WHERE org_id = $1 AND id = $2"
    ))
    .bind(org)
    .bind(id)
    .fetch_optional(tx)
    .await
    .map_err(|e| from_sqlx("reading a user", e))?
    .ok_or_else(|| ApiError::ResourceNotFound(format!("user {id} not found")))
}
