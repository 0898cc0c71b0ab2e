//! `/v1/orgs`: orgs across the platform, for platform operators (scope `platform:admin`, which an
//! org's `admin` does not imply). Create, list, get, update, suspend, resume, delete; deletion
//! removes the org's data and answers a receipt of what went. The SQL is sql/api/platform.sql
//! (cross-org functions the sidecar alone may call).

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
use super::pool;
use super::sql_error::from_sqlx;
use crate::auth::SCOPE_PLATFORM_ADMIN;
use crate::error::ApiError;
use crate::http::json::ApiJson;
use crate::state::AppState;

const LIST: &str = "orgs";

#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
pub struct Org {
    pub id: Uuid,
    pub name: String,
    pub slug: String,
    pub status: String,
    pub settings: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

const COLUMNS: &str = "id, name, slug, status, settings, created_at, updated_at";

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrg {
    pub name: String,
    pub slug: String,
    pub settings: Option<Value>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateOrg {
    pub name: Option<String>,
    pub settings: Option<Value>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListOrgs {
    pub status: Option<String>,
    /// Rows per page (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

keyed_by_created_at!(Org);

#[utoipa::path(
    post,
    path = "/v1/orgs",
    operation_id = "orgs_create",
    tag = "orgs",
    description = "Creates an org (platform operators only). Scope: `platform:admin`.",
    request_body = CreateOrg,
    responses((status = 201, description = "The new org", body = Org)),
)]
pub async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(body): ApiJson<CreateOrg>,
) -> Result<(StatusCode, Json<Org>), ApiError> {
    caller.require_scope(SCOPE_PLATFORM_ADMIN)?;
    let org: Org = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM ibex_ops.platform_create_org($1, $2, $3)"
    ))
    .bind(&body.name)
    .bind(&body.slug)
    .bind(body.settings.unwrap_or_else(|| Value::Object(Default::default())))
    .fetch_one(pool(&state)?)
    .await
    .map_err(|e| from_sqlx("creating an org", e))?;
    Ok((StatusCode::CREATED, Json(org)))
}

#[utoipa::path(
    get,
    path = "/v1/orgs",
    operation_id = "orgs_list",
    tag = "orgs",
    description = "Every org, newest first (platform operators only). Scope: `platform:admin`.",
    params(ListOrgs),
    responses((status = 200, description = "A page of orgs", body = Page<Org>)),
)]
pub async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiQuery(query): ApiQuery<ListOrgs>,
) -> Result<Json<Page<Org>>, ApiError> {
    caller.require_scope(SCOPE_PLATFORM_ADMIN)?;
    let page = PageRequest::new(query.limit, query.cursor.as_deref(), LIST)?;
    let rows: Vec<Org> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM ibex_ops.platform_list_orgs($1, $2, $3, $4)"
    ))
    .bind(&query.status)
    .bind(page.after_time())
    .bind(page.after_id())
    .bind(page.fetch() as i32)
    .fetch_all(pool(&state)?)
    .await
    .map_err(|e| from_sqlx("listing orgs", e))?;
    Ok(Json(page.finish(rows, LIST)))
}

#[utoipa::path(
    get,
    path = "/v1/orgs/{id}",
    operation_id = "orgs_get",
    tag = "orgs",
    description = "One org (platform operators only). Scope: `platform:admin`.",
    params(("id" = Uuid, Path, description = "The org's id")),
    responses((status = 200, description = "The org", body = Org)),
)]
pub async fn get(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Org>, ApiError> {
    caller.require_scope(SCOPE_PLATFORM_ADMIN)?;
    sqlx::query_as(&format!("SELECT {COLUMNS} FROM ibex_ops.platform_get_org($1)"))
        .bind(id)
        .fetch_optional(pool(&state)?)
        .await
        .map_err(|e| from_sqlx("reading an org", e))?
        .map(Json)
        .ok_or_else(|| ApiError::ResourceNotFound(format!("org {id} not found")))
}

#[utoipa::path(
    patch,
    path = "/v1/orgs/{id}",
    operation_id = "orgs_update",
    tag = "orgs",
    description = "Changes the org's name or settings (platform operators only). Scope: `platform:admin`.",
    params(("id" = Uuid, Path, description = "The org's id")),
    request_body = UpdateOrg,
    responses((status = 200, description = "The org as changed", body = Org)),
)]
pub async fn update(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<UpdateOrg>,
) -> Result<Json<Org>, ApiError> {
    caller.require_scope(SCOPE_PLATFORM_ADMIN)?;
    let org: Org = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM ibex_ops.platform_update_org($1, $2, $3)"
    ))
    .bind(id)
    .bind(&body.name)
    .bind(&body.settings)
    .fetch_one(pool(&state)?)
    .await
    .map_err(|e| from_sqlx("updating an org", e))?;
    Ok(Json(org))
}

async fn set_status(state: &AppState, id: Uuid, status: &str) -> Result<Json<Org>, ApiError> {
    let changed = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM ibex_ops.platform_set_org_status($1, $2)"
    ))
    .bind(id)
    .bind(status)
    .fetch_one(pool(state)?)
    .await;
    match changed {
        Ok(org) => Ok(Json(org)),
        Err(e) => Err(super::transition_refused(from_sqlx("changing an org's status", e))),
    }
}

#[utoipa::path(
    post,
    path = "/v1/orgs/{id}/suspend",
    operation_id = "orgs_suspend",
    tag = "orgs",
    description = "Suspends the org (its tokens are refused); a token cannot suspend its own org (409). Scope: `platform:admin`.",
    params(("id" = Uuid, Path, description = "The org's id")),
    responses((status = 200, description = "The suspended org", body = Org)),
)]
pub async fn suspend(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Org>, ApiError> {
    caller.require_scope(SCOPE_PLATFORM_ADMIN)?;
    if id == caller.org_id {
        return Err(ApiError::Conflict(
            "a token cannot suspend its own org (it would lock itself out); use another org's operator token".into(),
        ));
    }
    set_status(&state, id, "suspended").await
}

#[utoipa::path(
    post,
    path = "/v1/orgs/{id}/resume",
    operation_id = "orgs_resume",
    tag = "orgs",
    description = "Makes a suspended org active again. Scope: `platform:admin`.",
    params(("id" = Uuid, Path, description = "The org's id")),
    responses((status = 200, description = "The active org", body = Org)),
)]
pub async fn resume(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Org>, ApiError> {
    caller.require_scope(SCOPE_PLATFORM_ADMIN)?;
    set_status(&state, id, "active").await
}

#[utoipa::path(
    delete,
    path = "/v1/orgs/{id}",
    operation_id = "orgs_delete",
    tag = "orgs",
    description = "Deletes the org and everything it owns; a token cannot delete its own org (409). Scope: `platform:admin`.",
    params(("id" = Uuid, Path, description = "The org's id")),
    responses((status = 200, description = "The receipt: rows removed per kind", body = Object)),
)]
/// Deletes the org and everything it owns; the answer is the receipt (rows removed per kind).
pub async fn delete(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Value>, ApiError> {
    caller.require_scope(SCOPE_PLATFORM_ADMIN)?;
    if id == caller.org_id {
        return Err(ApiError::Conflict(
            "a token cannot delete its own org; use another org's operator token".into(),
        ));
    }
    let receipt: Value = sqlx::query_scalar("SELECT ibex_ops.platform_delete_org($1)")
        .bind(id)
        .fetch_one(pool(&state)?)
        .await
        .map_err(|e| from_sqlx("deleting an org", e))?;
    tracing::info!(org = %id, by_token = %caller.token_id, receipt = %receipt, "org deleted");
    Ok(Json(receipt))
}
