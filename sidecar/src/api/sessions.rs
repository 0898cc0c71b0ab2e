//! `/v1/sessions`: an agent's conversations (written by the proxy or by `append_turns`). List,
//! get with its turns (paged by turn index), complete (from then on the extraction workers learn
//! from it and the archive worker archives it), replay from the archive on S3, and delete (GDPR:
//! the session, what was learnt from it, and its archive objects).
//!
//! `replay_url` of an archived session is a presigned GET URL of its archive, valid 15 minutes.

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
use crate::archive::session::{delete_archives, read_archive, ReplayFailure};
use crate::archive::{Archives, ReplayLink, REPLAY_LINK_TTL};
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
    /// The archive's object key, size, line count (one per checkpoint) and SHA-256, once archived.
    pub archive_key: Option<String>,
    pub archive_bytes: Option<i64>,
    pub archive_lines: Option<i32>,
    pub archive_sha256: Option<String>,
    /// When the turn contents were cleared from Postgres after the archive retention (the
    /// archive holds them; roles, token counts, hashes and timestamps stay here).
    pub turns_cleared_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// A presigned GET URL of the archive (valid 15 minutes), in the answer of
    /// `GET /v1/sessions/{id}` once the session is archived.
    #[sqlx(skip)]
    pub replay_url: Option<String>,
}

const COLUMNS: &str = "id, org_id, agent_id, user_id, external_id, status, turn_count, last_extracted_turn, metadata, \
                       started_at, completed_at, archived_at, archive_key, archive_bytes, archive_lines, archive_sha256, \
                       turns_cleared_at, created_at, updated_at";

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
    let mut session = fetch(&mut tx, &caller, id).await?;
    if let (Some(archives), Some(key)) = (&state.archives, &session.archive_key) {
        session.replay_url = Some(archives.store.presigned_get(key, REPLAY_LINK_TTL).to_string());
    }
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

#[derive(Debug, Serialize, ToSchema)]
pub struct Replay {
    pub session_id: Uuid,
    pub key: String,
    pub sha256: String,
    /// The archive's lines, oldest first: one per checkpoint (one model call) with its turns.
    #[schema(value_type = Vec<Object>)]
    pub checkpoints: Vec<ibex_engine::archive::CheckpointLine>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ArchiveDeletion {
    pub id: i64,
    /// `confirmed` once S3 confirmed every object gone; `pending` while it is retried.
    pub status: String,
    pub prefix: String,
    /// The object keys S3 confirmed deleted.
    pub deleted_keys: Vec<String>,
    pub last_error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeletionReceipt {
    /// What went from Postgres, counted in the deleting transaction.
    #[schema(value_type = Object)]
    pub deleted: Value,
    /// The session's archive objects.
    pub archive: ArchiveDeletion,
    /// Embedding cache entries of the session's texts removed from Redis.
    pub cache_entries_removed: usize,
}

#[utoipa::path(
    get,
    path = "/v1/sessions/{id}/replay",
    operation_id = "sessions_replay_link",
    tag = "sessions",
    description = "A replay link of the archived session: a presigned GET URL of its archive on S3, valid 15 minutes, \
                   with the SHA-256 the archive must have. 409 until the session is archived. Scope: `sessions:read`.",
    params(("id" = Uuid, Path, description = "The session's id")),
    responses((status = 200, description = "The replay link", body = ReplayLink)),
)]
pub async fn replay_link(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<ReplayLink>, ApiError> {
    caller.require_scope(READ)?;
    let archives = archives(&state)?;
    let mut tx = for_org(&state, caller.org_id).await?;
    let session = fetch(&mut tx, &caller, id).await?;
    let (key, sha256, bytes, lines) = archived(&session)?;
    Ok(Json(archives.replay_link(key, sha256, bytes, lines)))
}

#[utoipa::path(
    get,
    path = "/v1/sessions/{id}/archive",
    operation_id = "sessions_replay",
    tag = "sessions",
    description = "Replays the archived session from S3 (never from Postgres): its checkpoints, after checking the \
                   object's SHA-256 against the one recorded when it was written. A missing or damaged object is a 502 \
                   (`archive_missing`, `archive_damaged`). Scope: `sessions:read`.",
    params(("id" = Uuid, Path, description = "The session's id")),
    responses((status = 200, description = "The archived conversation", body = Replay)),
)]
pub async fn replay(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<Replay>, ApiError> {
    caller.require_scope(READ)?;
    let archives = archives(&state)?;
    let session = {
        let mut tx = for_org(&state, caller.org_id).await?;
        fetch(&mut tx, &caller, id).await?
    };
    let (key, sha256, _, _) = archived(&session)?;
    let checkpoints = read_archive(archives, key, sha256).await.map_err(|e| match e {
        ReplayFailure::Missing { .. } => ApiError::ArchiveUnreadable {
            code: "archive_missing",
            message: format!("the archive of session {id} is missing from the object store"),
            details: serde_json::json!({ "key": key }),
        },
        ReplayFailure::Damaged(damage) => ApiError::ArchiveUnreadable {
            code: "archive_damaged",
            message: format!("the archive of session {id} is damaged: {damage}"),
            details: serde_json::json!({ "key": key, "expected_sha256": sha256 }),
        },
        ReplayFailure::Store(store) => ApiError::Unavailable {
            public: "the archive store is unavailable; retry shortly".into(),
            detail: store.to_string(),
        },
    })?;
    Ok(Json(Replay {
        session_id: id,
        key: key.to_string(),
        sha256: sha256.to_string(),
        checkpoints,
    }))
}

#[utoipa::path(
    delete,
    path = "/v1/sessions/{id}",
    operation_id = "sessions_delete",
    tag = "sessions",
    description = "Deletes the session for good (GDPR): its turns, the memories learnt from it with their versions and \
                   embeddings, its usage rows, its embedding cache entries in Redis and its archive objects on S3. The \
                   S3 deletion is recorded in the same transaction and retried until S3 confirms; the receipt says \
                   what went. Scope: `sessions:write`.",
    params(("id" = Uuid, Path, description = "The session's id")),
    responses((status = 200, description = "The deletion's receipt", body = DeletionReceipt)),
)]
pub async fn delete(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<DeletionReceipt>, ApiError> {
    caller.require_scope(WRITE)?;
    let mut tx = for_org(&state, caller.org_id).await?;
    let session = fetch(&mut tx, &caller, id).await?;
    // The texts whose embeddings Redis may hold: what the session said, and what was learnt.
    // Read in one statement with the session's archive state, so in one snapshot: the retention
    // may clear the turn contents meanwhile, and then they are read back from the archive.
    let held: Option<HeldTexts> = sqlx::query_as(
        "SELECT s.turns_cleared_at IS NOT NULL AS cleared, s.archive_key, s.archive_sha256,
                ARRAY(SELECT content FROM ibex_core.session_turns WHERE org_id = $1 AND session_id = $2 AND content <> ''
                      UNION SELECT content FROM ibex_core.memories WHERE org_id = $1 AND source_session_id = $2) AS texts
           FROM ibex_core.sessions s WHERE s.org_id = $1 AND s.id = $2",
    )
    .bind(caller.org_id)
    .bind(id)
    .fetch_optional(&mut *tx)
    .await
    .map_err(|e| from_sqlx("reading the session's texts", e))?;
    let mut texts = Vec::new();
    if let Some(held) = held {
        texts = held.texts;
        if held.cleared {
            texts.extend(archived_texts(&state, session.id, held.archive_key, held.archive_sha256).await);
        }
    }
    let deleted: Value = sqlx::query_scalar("SELECT ibex_core.delete_session($1, $2)")
        .bind(caller.org_id)
        .bind(id)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| from_sqlx("deleting a session", e))?;
    tx.commit().await.map_err(|e| from_sqlx("deleting a session", e))?;
    let cache_entries_removed = state.core.forget_texts(caller.org_id, &texts).await;
    let deletion_id = deleted["archive_deletion_id"].as_i64().unwrap_or_default();
    let prefix =
        ibex_engine::archive::session_prefix(caller.org_id, deleted["agent_id"].as_str().unwrap_or_default(), id);
    // Carried out now when S3 answers; otherwise the archive worker retries it.
    let archive = match &state.archives {
        Some(archives) => match delete_archives(archives, deletion_id, &prefix, 1).await {
            Ok(keys) => ArchiveDeletion {
                id: deletion_id,
                status: "confirmed".into(),
                prefix,
                deleted_keys: keys,
                last_error: None,
            },
            Err(e) => ArchiveDeletion {
                id: deletion_id,
                status: "pending".into(),
                prefix,
                deleted_keys: Vec::new(),
                last_error: Some(e.to_string()),
            },
        },
        None => ArchiveDeletion {
            id: deletion_id,
            status: "pending".into(),
            prefix,
            deleted_keys: Vec::new(),
            last_error: Some("no archive store is configured here; a sidecar with one deletes the objects".into()),
        },
    };
    Ok(Json(DeletionReceipt {
        deleted,
        archive,
        cache_entries_removed,
    }))
}

/// What a session whose turn contents were cleared said, read back from its archive. A failure
/// is logged: the cache entries then expire with their TTL.
/// What a session to delete still holds in Postgres, and where its archive is.
#[derive(sqlx::FromRow)]
struct HeldTexts {
    cleared: bool,
    archive_key: Option<String>,
    archive_sha256: Option<String>,
    texts: Vec<String>,
}

async fn archived_texts(state: &AppState, session: Uuid, key: Option<String>, sha256: Option<String>) -> Vec<String> {
    let (Some(archives), Some(key), Some(sha256)) = (&state.archives, key, sha256) else {
        return Vec::new();
    };
    match read_archive(archives, &key, &sha256).await {
        Ok(lines) => lines
            .into_iter()
            .flat_map(|line| line.turns.into_iter().map(|turn| turn.content))
            .collect(),
        Err(e) => {
            tracing::warn!(session = %session, error = %e,
                "the deleted session's archive could not be read; its cached embeddings expire with their TTL");
            Vec::new()
        }
    }
}

fn archives(state: &AppState) -> Result<&Archives, ApiError> {
    state.archives.as_deref().ok_or_else(|| ApiError::Unavailable {
        public: "session archives are not configured on this server (setting s3_endpoint)".into(),
        detail: "no archive store".into(),
    })
}

/// The archive's key, SHA-256, size and lines; 409 while the session is not archived.
fn archived(session: &Session) -> Result<(&str, &str, i64, i32), ApiError> {
    match (&session.archive_key, &session.archive_sha256) {
        (Some(key), Some(sha256)) => Ok((
            key,
            sha256,
            session.archive_bytes.unwrap_or_default(),
            session.archive_lines.unwrap_or_default(),
        )),
        _ => Err(ApiError::Conflict(format!(
            "session {} is not archived yet (archiving starts when it is completed)",
            session.id
        ))),
    }
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
