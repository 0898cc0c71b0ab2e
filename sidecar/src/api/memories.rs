//! `/v1/memories`: an org's memories as operators and applications manage them. Writes go through
//! the same SQL as every other writer: `ibex_core.remember` (the 9-step pipeline; the answer says
//! which path it took), `feedback`, `forget` (a soft delete with a version record). Lists filter by
//! agent, category, tag, status and creation time and page by keyset; a text query `q` ranks
//! through `ibex_core.search` instead (one page, best first).

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
use crate::auth::Principal;
use crate::error::ApiError;
use crate::http::json::ApiJson;
use crate::state::AppState;

const READ: &str = "memories:read";
const WRITE: &str = "memories:write";
const LIST: &str = "memories";
const STATUSES: &[&str] = &["active", "superseded", "deleted"];

#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
pub struct Memory {
    pub id: Uuid,
    pub org_id: Uuid,
    pub agent_id: Uuid,
    pub content: String,
    pub category: String,
    pub confidence: f32,
    pub status: String,
    pub tags: Vec<String>,
    pub useful_count: i32,
    pub not_useful_count: i32,
    pub access_count: i64,
    pub last_accessed_at: Option<DateTime<Utc>>,
    pub superseded_by: Option<Uuid>,
    /// The session it was learned from, and the turns of that session it came from.
    pub source_session_id: Option<Uuid>,
    pub source_turns: Option<Vec<i32>>,
    /// When what it says happened (the turn's time for a learned memory); null: when it was stored.
    pub occurred_at: Option<DateTime<Utc>>,
    pub metadata: Value,
    pub version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The columns of [`Memory`] over `ibex_core.memories m`.
pub const COLUMNS: &str = "m.id, m.org_id, m.agent_id, m.content, m.category, m.confidence, m.status, \
     ARRAY(SELECT t.name FROM ibex_core.memory_tags mt JOIN ibex_core.tags t ON t.org_id = mt.org_id AND t.id = mt.tag_id \
           WHERE mt.org_id = m.org_id AND mt.memory_id = m.id ORDER BY t.name) AS tags, \
     m.useful_count, m.not_useful_count, m.access_count, m.last_accessed_at, m.superseded_by, m.source_session_id, \
     m.source_turns, m.occurred_at, m.metadata, m.version, m.created_at, m.updated_at";

#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
pub struct MemoryVersion {
    pub version: i32,
    pub change: String,
    pub content: String,
    pub category: String,
    pub confidence: f32,
    pub status: String,
    pub superseded_by: Option<Uuid>,
    pub reason: Option<String>,
    pub created_at: DateTime<Utc>,
    /// On the 'created' version: the session and turns it was learned from, when it happened.
    pub source_session_id: Option<Uuid>,
    pub source_turns: Option<Vec<i32>>,
    pub occurred_at: Option<DateTime<Utc>>,
}

/// A relationship of a memory with another, either way round.
#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
pub struct MemoryLink {
    /// supersedes, conflicts_with, related_to or derived_from.
    pub kind: String,
    /// True when this memory is the relationship's source (it supersedes the other, say).
    pub outgoing: bool,
    pub other_id: Uuid,
    /// The other memory's first 200 characters.
    pub other_preview: String,
    pub other_status: String,
    pub similarity: Option<f32>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MemoryWithHistory {
    #[serde(flatten)]
    pub memory: Memory,
    pub history: Vec<MemoryVersion>,
    /// Its relationships with other memories, newest first (at most 200).
    pub relationships: Vec<MemoryLink>,
}

/// A search hit: the memory's ranking next to it.
#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
pub struct Hit {
    pub memory_id: Uuid,
    pub content: String,
    pub category: String,
    pub confidence: f32,
    pub tags: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub score: f64,
    pub relevance: f64,
    pub semantic: f64,
    pub lexical: f64,
    pub recency: f64,
    pub usefulness: f64,
    pub access_frequency: f64,
}

/// A ranked answer to a text query: one page, best first, never a cursor.
#[derive(Debug, Serialize, ToSchema)]
pub struct Ranked {
    pub data: Vec<Hit>,
    /// Always null: a ranked answer is one page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Listing {
    Page(Page<Memory>),
    Ranked(Ranked),
}

/// `anyOf`, not the derive's `oneOf`: an empty page (`{"data": [], "next_cursor": null}`) is
/// both shapes, which `oneOf` would forbid.
impl utoipa::PartialSchema for Listing {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::AnyOfBuilder;
        use utoipa::openapi::Ref;
        AnyOfBuilder::new()
            .item(<Page<Memory> as utoipa::PartialSchema>::schema())
            .item(Ref::from_schema_name(Ranked::name()))
            .into()
    }
}

impl ToSchema for Listing {
    fn schemas(schemas: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>)>) {
        use utoipa::PartialSchema;
        schemas.push((Ranked::name().into(), Ranked::schema()));
        schemas.push((Hit::name().into(), Hit::schema()));
        schemas.push((Memory::name().into(), Memory::schema()));
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListMemories {
    pub agent_id: Option<Uuid>,
    pub category: Option<String>,
    pub tag: Option<String>,
    pub status: Option<String>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    /// A text query: results ranked by `ibex_core.search` (needs agent_id).
    pub q: Option<String>,
    /// Rows per page (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateMemory {
    pub agent_id: Uuid,
    pub content: String,
    pub category: Option<String>,
    pub confidence: Option<f32>,
    #[serde(default)]
    pub tags: Vec<String>,
    pub metadata: Option<Value>,
    /// When what it says happened, if not now: between 1900 and a day from now.
    pub occurred_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
pub struct Remembered {
    pub memory_id: Uuid,
    /// created, duplicate or superseded: what the write pipeline did.
    pub path: String,
    pub superseded_ids: Vec<Uuid>,
    pub conflicts: Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedMemory {
    #[serde(flatten)]
    pub result: Remembered,
    pub memory: Memory,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Feedback {
    pub useful: bool,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ForgetQuery {
    pub reason: Option<String>,
}

/// The agent a request may act on: the caller's own when bound, else the one asked.
fn agent_scope(caller: &Principal, asked: Option<Uuid>) -> Result<Option<Uuid>, ApiError> {
    if let Some(agent) = asked {
        caller.require_agent(agent)?;
    }
    Ok(asked.or(caller.agent_id))
}

keyed_by_created_at!(Memory);

#[utoipa::path(
    get,
    path = "/v1/memories",
    operation_id = "memories_list",
    tag = "memories",
    description = "The org's memories, newest first, filtered; with `q` (and agent_id) one ranked page of search hits instead. Scope: `memories:read`.",
    params(ListMemories),
    responses((status = 200, description = "A page of memories, or with `q` a ranked page of hits", body = Listing)),
)]
pub async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiQuery(query): ApiQuery<ListMemories>,
) -> Result<Json<Listing>, ApiError> {
    list_for(&state, &caller, query).await.map(Json)
}

/// What `GET /v1/memories` answers, for any front end (REST, MCP): checks scope and agent,
/// then lists or ranks.
pub async fn list_for(state: &AppState, caller: &Principal, query: ListMemories) -> Result<Listing, ApiError> {
    caller.require_scope(READ)?;
    let agent = agent_scope(caller, query.agent_id)?;
    if let Some(status) = &query.status {
        if !STATUSES.contains(&status.as_str()) {
            return Err(ApiError::invalid(format!(
                "status must be one of {}, got {status:?}",
                STATUSES.join(", ")
            )));
        }
    }
    let page = PageRequest::new(query.limit, query.cursor.as_deref(), LIST)?;
    let mut tx = for_org(state, caller.org_id).await?;
    if let Some(q) = &query.q {
        let agent = agent.ok_or_else(|| ApiError::invalid("a text query (q) needs agent_id"))?;
        if query.cursor.is_some() || query.status.is_some() {
            return Err(ApiError::invalid(
                "a text query (q) answers one ranked page of active memories: no cursor or status",
            ));
        }
        let hits: Vec<Hit> = sqlx::query_as(
            "SELECT memory_id, content, category, confidence, tags, created_at, score, relevance, semantic, lexical,
                    recency, usefulness, access_frequency
             FROM ibex_core.search($1, $2, $3, $4, $5, $6, $7, $8, false)",
        )
        .bind(caller.org_id)
        .bind(agent)
        .bind(q)
        .bind(page.limit as i32)
        .bind(query.category.as_ref().map(|c| vec![c.clone()]))
        .bind(query.tag.as_ref().map(|t| vec![t.clone()]))
        .bind(query.created_after)
        .bind(query.created_before)
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| from_sqlx("searching memories", e))?;
        return Ok(Listing::Ranked(Ranked {
            data: hits,
            next_cursor: None,
        }));
    }
    let rows: Vec<Memory> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM ibex_core.memories m
         WHERE m.org_id = $1 AND ($2::uuid IS NULL OR m.agent_id = $2) AND ($3::text IS NULL OR m.category = $3)
           AND ($4::text IS NULL OR EXISTS (
                 SELECT 1 FROM ibex_core.memory_tags mt JOIN ibex_core.tags t ON t.org_id = mt.org_id AND t.id = mt.tag_id
                 WHERE mt.org_id = m.org_id AND mt.memory_id = m.id AND t.name = lower(btrim($4))))
           AND ($5::text IS NULL OR m.status = $5)
           AND ($6::timestamptz IS NULL OR m.created_at >= $6) AND ($7::timestamptz IS NULL OR m.created_at < $7)
           AND (m.created_at, m.id) < ($8, $9)
         ORDER BY m.created_at DESC, m.id DESC LIMIT $10"
    ))
    .bind(caller.org_id)
    .bind(agent)
    .bind(&query.category)
    .bind(&query.tag)
    .bind(&query.status)
    .bind(query.created_after)
    .bind(query.created_before)
    .bind(page.before().created_at)
    .bind(page.before().id)
    .bind(page.fetch())
    .fetch_all(&mut *tx)
    .await
    .map_err(|e| from_sqlx("listing memories", e))?;
    Ok(Listing::Page(page.finish(rows, LIST)))
}

#[utoipa::path(
    get,
    path = "/v1/memories/{id}",
    operation_id = "memories_get",
    tag = "memories",
    description = "One memory with its version history and relationships. Scope: `memories:read`.",
    params(("id" = Uuid, Path, description = "The memory's id")),
    responses((status = 200, description = "The memory and its history", body = MemoryWithHistory)),
)]
pub async fn get(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<MemoryWithHistory>, ApiError> {
    caller.require_scope(READ)?;
    let mut tx = for_org(&state, caller.org_id).await?;
    let memory = fetch(&mut tx, &caller, id).await?;
    let history: Vec<MemoryVersion> = sqlx::query_as(
        "SELECT version, change, content, category, confidence, status, superseded_by, reason, created_at,
                source_session_id, source_turns, occurred_at
         FROM ibex_core.memory_history($1, $2)",
    )
    .bind(caller.org_id)
    .bind(id)
    .fetch_all(&mut *tx)
    .await
    .map_err(|e| from_sqlx("reading a memory's history", e))?;
    let relationships: Vec<MemoryLink> = sqlx::query_as(
        "SELECT kind, outgoing, other_id, other_preview, other_status, similarity, created_at
         FROM ibex_core.memory_links($1, $2)",
    )
    .bind(caller.org_id)
    .bind(id)
    .fetch_all(&mut *tx)
    .await
    .map_err(|e| from_sqlx("reading a memory's relationships", e))?;
    Ok(Json(MemoryWithHistory {
        memory,
        history,
        relationships,
    }))
}

#[utoipa::path(
    post,
    path = "/v1/memories",
    operation_id = "memories_create",
    tag = "memories",
    description = "Remembers through the write pipeline: 201 when a memory was written (created or superseding), 200 when the content was already known. Scope: `memories:write`.",
    request_body = CreateMemory,
    responses((status = 201, description = "Written (path created or superseded)", body = CreatedMemory), (status = 200, description = "Already known (path duplicate): the existing memory", body = CreatedMemory)),
)]
/// `remember`: 201 when a memory was written (created, or superseding others), 200 when the
/// content was already known (the existing memory).
pub async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(body): ApiJson<CreateMemory>,
) -> Result<(StatusCode, Json<CreatedMemory>), ApiError> {
    let created = remember_for(&state, &caller, body).await?;
    let status = if created.result.path == "duplicate" {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(created)))
}

/// `ibex_core.remember` for the caller (scope, agent and org checked), then the memory it names.
pub async fn remember_for(state: &AppState, caller: &Principal, body: CreateMemory) -> Result<CreatedMemory, ApiError> {
    caller.require_scope(WRITE)?;
    caller.require_agent(body.agent_id)?;
    let mut tx = for_org(state, caller.org_id).await?;
    super::require_agent_exists(&mut tx, caller.org_id, body.agent_id).await?;
    let result: Remembered = sqlx::query_as(
        "SELECT memory_id, path, superseded_ids, conflicts
         FROM ibex_core.remember($1, $2, $3, $4, $5, $6, NULL, NULL, $7, $8)",
    )
    .bind(caller.org_id)
    .bind(body.agent_id)
    .bind(&body.content)
    .bind(body.category.as_deref().unwrap_or("declarative"))
    .bind(body.confidence.unwrap_or(0.8))
    .bind(&body.tags)
    .bind(body.metadata.unwrap_or_else(|| Value::Object(Default::default())))
    .bind(body.occurred_at)
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| from_sqlx("remembering", e))?;
    let memory = fetch(&mut tx, caller, result.memory_id).await?;
    tx.commit().await.map_err(|e| from_sqlx("remembering", e))?;
    Ok(CreatedMemory { result, memory })
}

#[utoipa::path(
    post,
    path = "/v1/memories/{id}/feedback",
    operation_id = "memories_feedback",
    tag = "memories",
    description = "Records whether the memory was useful. Scope: `memories:write`.",
    params(("id" = Uuid, Path, description = "The memory's id")),
    request_body = Feedback,
    responses((status = 200, description = "The memory with its counts updated", body = Memory)),
)]
pub async fn feedback(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(body): ApiJson<Feedback>,
) -> Result<Json<Memory>, ApiError> {
    caller.require_scope(WRITE)?;
    let mut tx = for_org(&state, caller.org_id).await?;
    fetch(&mut tx, &caller, id).await?;
    sqlx::query("SELECT * FROM ibex_core.feedback($1, $2, $3)")
        .bind(caller.org_id)
        .bind(id)
        .bind(body.useful)
        .execute(&mut *tx)
        .await
        .map_err(|e| from_sqlx("recording feedback", e))?;
    let memory = fetch(&mut tx, &caller, id).await?;
    tx.commit().await.map_err(|e| from_sqlx("recording feedback", e))?;
    Ok(Json(memory))
}

#[utoipa::path(
    delete,
    path = "/v1/memories/{id}",
    operation_id = "memories_forget",
    tag = "memories",
    description = "Forgets the memory (a soft delete with a version record): it leaves every ranking and stays readable. Scope: `memories:write`.",
    params(("id" = Uuid, Path, description = "The memory's id"), ForgetQuery),
    responses((status = 200, description = "The forgotten memory", body = Memory)),
)]
/// `forget`: the memory leaves every ranking; it stays readable with its history.
pub async fn forget(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<ForgetQuery>,
) -> Result<Json<Memory>, ApiError> {
    forget_for(&state, &caller, id, query.reason.as_deref()).await.map(Json)
}

/// `ibex_core.forget` of the caller's memory `id` (another org's, or another agent's for an
/// agent-bound caller, is not found); answers the memory as it now is.
pub async fn forget_for(
    state: &AppState,
    caller: &Principal,
    id: Uuid,
    reason: Option<&str>,
) -> Result<Memory, ApiError> {
    caller.require_scope(WRITE)?;
    let mut tx = for_org(state, caller.org_id).await?;
    fetch(&mut tx, caller, id).await?;
    sqlx::query("SELECT * FROM ibex_core.forget($1, $2, $3)")
        .bind(caller.org_id)
        .bind(id)
        .bind(reason)
        .execute(&mut *tx)
        .await
        .map_err(|e| from_sqlx("forgetting", e))?;
    let memory = fetch(&mut tx, caller, id).await?;
    tx.commit().await.map_err(|e| from_sqlx("forgetting", e))?;
    Ok(memory)
}

/// The memory `id` of the caller's org (and agent, for an agent-bound caller).
async fn fetch(tx: &mut sqlx::PgConnection, caller: &Principal, id: Uuid) -> Result<Memory, ApiError> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM ibex_core.memories m
         WHERE m.org_id = $1 AND m.id = $2 AND ($3::uuid IS NULL OR m.agent_id = $3)"
    ))
    .bind(caller.org_id)
    .bind(id)
    .bind(caller.agent_id)
    .fetch_optional(tx)
    .await
    .map_err(|e| from_sqlx("reading a memory", e))?
    .ok_or_else(|| ApiError::ResourceNotFound(format!("memory {id} not found")))
}
