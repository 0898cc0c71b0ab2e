//! `/v1/sessions`: an agent's conversations (written by the proxy or by `append_turns`). List,
//! get with its turns (paged by turn index), and complete (from then on the extraction workers
//! learn from it). `replay_url` is where the archived conversation can be replayed, once session
//! archives exist; until then it is null.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::extract::{ApiPath, ApiQuery, Caller};
use super::page::{keyed_by_created_at, Page, PageRequest, MAX_LIMIT};
use super::{for_org, sql_error::from_sqlx};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;

const READ: &str = "sessions:read";
const WRITE: &str = "sessions:write";
const LIST: &str = "sessions";
/// Turns sent with a session; the rest are paged through `/v1/sessions/{id}/turns`.
const TURNS_WITH_SESSION: i64 = 100;

#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
pub struct Session {
    pub id: Uuid,
    pub org_id: Uuid,
    pub agent_id: Uuid,
    pub user_id: Option<Uuid>,
    pub external_id: Option<String>,
    pub status: String,
    pub turn_count: i32,
    pub last_extracted_turn: i32,
    pub metadata: Value,
    pub started_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub archived_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Filled in by session archives.
    #[sqlx(skip)]
    pub replay_url: Option<String>,
}

const COLUMNS: &str = "id, org_id, agent_id, user_id, external_id, status, turn_count, last_extracted_turn, metadata, \
                       started_at, completed_at, archived_at, created_at, updated_at";

#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
pub struct Turn {
    pub turn_index: i32,
    pub role: String,
    pub content: String,
    pub tokens: Option<i32>,
    pub model: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionWithTurns {
    #[serde(flatten)]
    pub session: Session,
    /// The first turns, oldest first.
    pub turns: Vec<Turn>,
    /// Set when more turns follow: page on with `/v1/sessions/{id}/turns?after=<turn_index>`.
    pub more_turns: bool,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListSessions {
    pub agent_id: Option<Uuid>,
    pub status: Option<String>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    /// Rows per page (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TurnsQuery {
    /// Turns after this index (0 or absent: from the first).
    #[param(minimum = 0)]
    pub after: Option<i32>,
    /// Turns per page (default 100).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TurnPage {
    pub data: Vec<Turn>,
    /// The `after` of the next page; absent on the last.
    pub next_after: Option<i32>,
}

keyed_by_created_at!(Session);

#[utoipa::path(
    get,
    path = "/v1/sessions",
    operation_id = "sessions_list",
    tag = "sessions",
    description = "The org's sessions, newest first. Scope: `sessions:read`.",
    params(ListSessions),
    responses((status = 200, description = "A page of sessions", body = Page<Session>)),
)]
pub async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiQuery(query): ApiQuery<ListSessions>,
) -> Result<Json<Page<Session>>, ApiError> {
    caller.require_scope(READ)?;
    if let Some(agent) = query.agent_id {
        caller.require_agent(agent)?;
    }
    let agent = query.agent_id.or(caller.agent_id);
    let page = PageRequest::new(query.limit, query.cursor.as_deref(), LIST)?;
    let mut tx = for_org(&state, caller.org_id).await?;
    let rows: Vec<Session> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM ibex_core.sessions
         WHERE org_id = $1 AND ($2::uuid IS NULL OR agent_id = $2) AND ($3::text IS NULL OR status = $3)
           AND ($4::timestamptz IS NULL OR created_at >= $4) AND ($5::timestamptz IS NULL OR created_at < $5)
           AND (created_at, id) < ($6, $7)
         ORDER BY created_at DESC, id DESC LIMIT $8"
    ))
    .bind(caller.org_id)
    .bind(agent)
    .bind(&query.status)
    .bind(query.created_after)
    .bind(query.created_before)
    .bind(page.before().created_at)
    .bind(page.before().id)
    .bind(page.fetch())
    .fetch_all(&mut *tx)
    .await
    .map_err(|e| from_sqlx("listing sessions", e))?;
    Ok(Json(page.finish(rows, LIST)))
}

#[utoipa::path(
    get,
    path = "/v1/sessions/{id}",
    operation_id = "sessions_get",
    tag = "sessions",
    description = "One session with its first 100 turns. Scope: `sessions:read`.",
    params(("id" = Uuid, Path, description = "The session's id")),
    responses((status = 200, description = "The session", body = SessionWithTurns)),
)]
pub async fn get(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<SessionWithTurns>, ApiError> {
    caller.require_scope(READ)?;
    let mut tx = for_org(&state, caller.org_id).await?;
    let session = fetch(&mut tx, &caller, id).await?;
    let mut turns = turns_after(&mut tx, caller.org_id, id, 0, TURNS_WITH_SESSION + 1).await?;
    let more_turns = turns.len() as i64 > TURNS_WITH_SESSION;
    turns.truncate(TURNS_WITH_SESSION as usize);
    Ok(Json(SessionWithTurns {
        session,
        turns,
        more_turns,
    }))
}

#[utoipa::path(
    get,
    path = "/v1/sessions/{id}/turns",
    operation_id = "sessions_turns",
    tag = "sessions",
    description = "The session's turns after a turn index, oldest first. Scope: `sessions:read`.",
    params(("id" = Uuid, Path, description = "The session's id"), TurnsQuery),
    responses((status = 200, description = "A page of turns", body = TurnPage)),
)]
pub async fn turns(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<TurnsQuery>,
) -> Result<Json<TurnPage>, ApiError> {
    caller.require_scope(READ)?;
    let limit = query.limit.unwrap_or(100);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::invalid(format!(
            "limit must be 1 to {MAX_LIMIT}, got {limit}"
        )));
    }
    let after = query.after.unwrap_or(0);
    if after < 0 {
        return Err(ApiError::invalid("after must be a turn index (0 or more)"));
    }
    let mut tx = for_org(&state, caller.org_id).await?;
    fetch(&mut tx, &caller, id).await?;
    let mut data = turns_after(&mut tx, caller.org_id, id, after, i64::from(limit) + 1).await?;
    let more = data.len() > limit as usize;
    data.truncate(limit as usize);
    let next_after = if more { data.last().map(|t| t.turn_index) } else { None };
    Ok(Json(TurnPage { data, next_after }))
}

#[utoipa::path(
    post,
    path = "/v1/sessions/{id}/complete",
    operation_id = "sessions_complete",
    tag = "sessions",
    description = "Completes the session (idempotent); a failed or abandoned one is a 409. Scope: `sessions:write`.",
    params(("id" = Uuid, Path, description = "The session's id")),
    responses((status = 200, description = "The completed session", body = Session)),
)]
/// Completes the session (idempotent); a failed or abandoned one is a 409.
pub async fn complete(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Session>, ApiError> {
    caller.require_scope(WRITE)?;
    let mut tx = for_org(&state, caller.org_id).await?;
    fetch(&mut tx, &caller, id).await?;
    sqlx::query("SELECT ibex_core.complete_session($1, $2)")
        .bind(caller.org_id)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(|e| from_sqlx("completing a session", e))?;
    let session = fetch(&mut tx, &caller, id).await?;
    tx.commit().await.map_err(|e| from_sqlx("completing a session", e))?;
    Ok(Json(session))
}

async fn turns_after(
    tx: &mut sqlx::PgConnection,
    org: Uuid,
    session: Uuid,
    after: i32,
    limit: i64,
) -> Result<Vec<Turn>, ApiError> {
    sqlx::query_as(
        "SELECT turn_index, role, content, tokens, model, created_at FROM ibex_core.session_turns
         WHERE org_id = $1 AND session_id = $2 AND turn_index > $3 ORDER BY turn_index LIMIT $4",
    )
    .bind(org)
    .bind(session)
    .bind(after)
    .bind(limit)
    .fetch_all(tx)
    .await
    .map_err(|e| from_sqlx("reading turns", e))
}

/// The session `id` of the caller's org (and agent, for an agent-bound caller).
async fn fetch(tx: &mut sqlx::PgConnection, caller: &Principal, id: Uuid) -> Result<Session, ApiError> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM ibex_core.sessions WHERE org_id = $1 AND id = $2 AND ($3::uuid IS NULL OR agent_id = $3)"
    ))
    .bind(caller.org_id)
    .bind(id)
    .bind(caller.agent_id)
    .fetch_optional(tx)
    .await
    .map_err(|e| from_sqlx("reading a session", e))?
    .ok_or_else(|| ApiError::ResourceNotFound(format!("session {id} not found")))
}
