//! `/v1/conflicts`: pairs of memories that contradict each other (remember's step 6), listed
//! oldest first, and resolved or dismissed, optionally forgetting the memory that lost
//! (sql/api/conflicts.sql).

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::extract::{ApiPath, ApiQuery, Caller};
use super::page::{keyed_by_created_at, Page, PageRequest};
use super::{for_org, sql_error::from_sqlx};
use crate::error::ApiError;
use crate::http::json::ApiJson;
use crate::state::AppState;

const LIST: &str = "conflicts";

#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
pub struct Conflict {
    #[sqlx(rename = "conflict_id")]
    pub id: Uuid,
    pub agent_id: Uuid,
    pub memory_id: Uuid,
    pub memory_content: String,
    pub conflicting_memory_id: Uuid,
    pub conflicting_content: String,
    pub similarity: f32,
    pub status: String,
    pub created_at: DateTime<Utc>,
}

/// How a conflict is decided (`sql/api/conflicts.sql` checks it; documented here).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
pub enum Decision {
    Resolved,
    Dismissed,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListConflicts {
    pub agent_id: Option<Uuid>,
    /// open (default), resolved, dismissed, or all.
    pub status: Option<String>,
    /// Rows per page (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Resolve {
    /// resolved (default) or dismissed.
    #[schema(value_type = Option<Decision>)]
    pub status: Option<String>,
    pub resolution: Option<String>,
    /// One of the pair, forgotten as the loser.
    pub forget_memory_id: Option<Uuid>,
}

keyed_by_created_at!(Conflict);

#[utoipa::path(
    get,
    path = "/v1/conflicts",
    operation_id = "conflicts_list",
    tag = "conflicts",
    description = "Contradicting pairs of memories, oldest first (default: open ones). Scope: `memories:read`.",
    params(ListConflicts),
    responses((status = 200, description = "A page of conflicts", body = Page<Conflict>)),
)]
pub async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiQuery(query): ApiQuery<ListConflicts>,
) -> Result<Json<Page<Conflict>>, ApiError> {
    caller.require_scope("memories:read")?;
    if let Some(agent) = query.agent_id {
        caller.require_agent(agent)?;
    }
    let agent = query.agent_id.or(caller.agent_id);
    let status = match query.status.as_deref() {
        None => Some("open"),
        Some("all") => None,
        Some(s) => Some(s),
    };
    let page = PageRequest::new(query.limit, query.cursor.as_deref(), LIST)?;
    let mut tx = for_org(&state, caller.org_id).await?;
    // Oldest first: the queue of what still needs a decision.
    let rows: Vec<Conflict> = sqlx::query_as(
        "SELECT * FROM ibex_core.list_conflicts($1, $2, $3)
         WHERE ($4::timestamptz IS NULL OR (created_at, conflict_id) > ($4, $5))
         ORDER BY created_at, conflict_id LIMIT $6",
    )
    .bind(caller.org_id)
    .bind(agent)
    .bind(status)
    .bind(page.after_time())
    .bind(page.after_id())
    .bind(page.fetch())
    .fetch_all(&mut *tx)
    .await
    .map_err(|e| from_sqlx("listing conflicts", e))?;
    Ok(Json(page.finish(rows, LIST)))
}

#[utoipa::path(
    post,
    path = "/v1/conflicts/{id}/resolve",
    operation_id = "conflicts_resolve",
    tag = "conflicts",
    description = "Resolves or dismisses the conflict, optionally forgetting the memory that lost. Scope: `memories:write`.",
    params(("id" = Uuid, Path, description = "The conflict's id")),
    request_body = Resolve,
    responses((status = 200, description = "The conflict as decided", body = Conflict)),
)]
pub async fn resolve(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<Resolve>,
) -> Result<Json<Conflict>, ApiError> {
    caller.require_scope("memories:write")?;
    let mut tx = for_org(&state, caller.org_id).await?;
    fetch(&mut tx, caller.org_id, caller.agent_id, id).await?;
    sqlx::query("SELECT * FROM ibex_core.resolve_conflict($1, $2, $3, $4, $5)")
        .bind(caller.org_id)
        .bind(id)
        .bind(body.status.as_deref().unwrap_or("resolved"))
        .bind(&body.resolution)
        .bind(body.forget_memory_id)
        .execute(&mut *tx)
        .await
        .map_err(|e| from_sqlx("resolving a conflict", e))?;
    let conflict = fetch(&mut tx, caller.org_id, caller.agent_id, id).await?;
    tx.commit().await.map_err(|e| from_sqlx("resolving a conflict", e))?;
    Ok(Json(conflict))
}

async fn fetch(tx: &mut sqlx::PgConnection, org: Uuid, bound: Option<Uuid>, id: Uuid) -> Result<Conflict, ApiError> {
    sqlx::query_as("SELECT * FROM ibex_core.list_conflicts($1, $2, NULL) WHERE conflict_id = $3")
        .bind(org)
        .bind(bound)
        .bind(id)
        .fetch_optional(tx)
        .await
        .map_err(|e| from_sqlx("reading a conflict", e))?
        .ok_or_else(|| ApiError::ResourceNotFound(format!("conflict {id} not found")))
}
