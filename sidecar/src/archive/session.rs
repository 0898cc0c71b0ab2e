//! One session's archive: written from Postgres, read back for a replay, deleted with its
//! session. The worker and the API both come here.

use chrono::{DateTime, SecondsFormat, Utc};
use ibex_engine::archive::{self, ArchivedTurn, CheckpointLine, ReplayError};
use uuid::Uuid;

use super::{Archives, StoreError};
use crate::db::begin_for_org;

/// What became of one claimed archive event.
#[derive(Debug, PartialEq, Eq)]
pub enum Archived {
    /// Written and recorded.
    Written { bytes: usize },
    /// The session went (deleted) or changed while it was written: the object was removed again
    /// and the event acknowledged.
    Discarded,
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveFailure {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Retrying cannot help (the session is larger than archive_max_bytes): dead-letter at once.
    #[error("{0}")]
    Permanent(String),
}

#[derive(sqlx::FromRow)]
struct SessionRow {
    agent_id: Uuid,
    turn_count: i32,
    completed_at: Option<DateTime<Utc>>,
    turns_cleared_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct TurnRow {
    checkpoint: i32,
    turn_index: i32,
    role: String,
    content: String,
    tokens: Option<i32>,
    model: Option<String>,
    created_at: DateTime<Utc>,
}

impl From<TurnRow> for (i32, ArchivedTurn) {
    fn from(row: TurnRow) -> Self {
        (
            row.checkpoint,
            ArchivedTurn {
                turn_index: row.turn_index,
                role: row.role,
                content: row.content,
                tokens: row.tokens,
                model: row.model,
                created_at: row.created_at.to_rfc3339_opts(SecondsFormat::Micros, true),
            },
        )
    }
}

/// Writes the archive of one completed session and records it (acknowledging `event`).
pub async fn archive_session(
    archives: &Archives,
    org: Uuid,
    session: Uuid,
    event: i64,
) -> Result<Archived, ArchiveFailure> {
    // Read inside the session's org, as every application read is (row-level security).
    let mut tx = begin_for_org(&archives.db, org).await?;
    let row: Option<SessionRow> = sqlx::query_as(
        "SELECT agent_id, turn_count, completed_at, turns_cleared_at FROM ibex_core.sessions
         WHERE org_id = $1 AND id = $2 AND status = 'completed'",
    )
    .bind(org)
    .bind(session)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row.filter(|r| r.turns_cleared_at.is_none()) else {
        // Deleted (or no longer completed): nothing to archive. Recording acknowledges the event.
        tx.rollback().await?;
        record(archives, org, session, event, "", 0, 0, "", -1).await?;
        return Ok(Archived::Discarded);
    };
    let turns: Vec<TurnRow> = sqlx::query_as(
        "SELECT checkpoint, turn_index, role, content, tokens, model, created_at FROM ibex_core.session_turns
         WHERE org_id = $1 AND session_id = $2 ORDER BY turn_index",
    )
    .bind(org)
    .bind(session)
    .fetch_all(&mut *tx)
    .await?;
    tx.rollback().await?;
    let object = archive::render(&session.to_string(), turns.into_iter().map(Into::into).collect());
    if object.bytes.len() > archives.max_bytes {
        return Err(ArchiveFailure::Permanent(format!(
            "the archive would be {} bytes; archive_max_bytes is {}",
            object.bytes.len(),
            archives.max_bytes
        )));
    }
    let key = archive::object_key(org, row.agent_id, session);
    let size = object.bytes.len();
    archives.store.put(&key, object.bytes, archive::CONTENT_TYPE).await?;
    let recorded = record(
        archives,
        org,
        session,
        event,
        &key,
        size as i64,
        object.lines as i32,
        &object.sha256,
        row.turn_count,
    )
    .await?;
    if !recorded {
        // Deleted while it was written: its deletion may have run before the PUT.
        archives.store.delete(&key).await?;
        return Ok(Archived::Discarded);
    }
    if let Some(completed) = row.completed_at {
        let lag = (Utc::now() - completed).to_std().unwrap_or_default();
        archives.metrics.archive_lag.observe(lag.as_secs_f64());
    }
    Ok(Archived::Written { bytes: size })
}

#[allow(clippy::too_many_arguments)]
async fn record(
    archives: &Archives,
    org: Uuid,
    session: Uuid,
    event: i64,
    key: &str,
    bytes: i64,
    lines: i32,
    sha256: &str,
    turns: i32,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT ibex_core.record_session_archive($1, $2, $3, $4, $5, $6, $7, $8)")
        .bind(org)
        .bind(session)
        .bind(event)
        .bind(key)
        .bind(bytes)
        .bind(lines)
        .bind(sha256)
        .bind(turns)
        .fetch_one(&archives.db)
        .await
}

/// Why a replay cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum ReplayFailure {
    #[error("the archive object {key} is missing from the store")]
    Missing { key: String },
    #[error(transparent)]
    Damaged(#[from] ReplayError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The archive read back from the store and checked against the recorded SHA-256.
pub async fn read_archive(archives: &Archives, key: &str, sha256: &str) -> Result<Vec<CheckpointLine>, ReplayFailure> {
    let bytes = match archives.store.get(key, archives.max_bytes).await {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Err(ReplayFailure::Missing { key: key.to_string() }),
        Err(e) => {
            archives.note(&e);
            return Err(e.into());
        }
    };
    Ok(archive::verify(&bytes, sha256)?)
}

/// Carries out one queued deletion: every object under the prefix goes, then S3's confirmation
/// is recorded with the deleted keys. On failure the deletion is retried after a backoff.
pub async fn delete_archives(archives: &Archives, deletion: i64, prefix: &str, attempts: u32) -> Result<Vec<String>, StoreError> {
    match archives.store.delete_prefix(prefix).await {
        Ok(keys) => {
            archives.mark(true);
            let confirmed = sqlx::query("SELECT ibex_core.confirm_archive_deletion($1, $2)")
                .bind(deletion)
                .bind(&keys)
                .execute(&archives.db)
                .await;
            if let Err(e) = confirmed {
                // The objects are gone; the next attempt finds none and confirms then.
                tracing::warn!(deletion, error = %e, "archive deletion done but not recorded; retried");
            }
            archives.metrics.archive_deletions.with_label_values(&["confirmed"]).inc();
            Ok(keys)
        }
        Err(e) => {
            archives.note(&e);
            archives.metrics.archive_deletions.with_label_values(&["failed"]).inc();
            let delay = ibex_engine::archive::retry_delay(attempts);
            let retried = sqlx::query("SELECT ibex_core.retry_archive_deletion($1, $2, $3)")
                .bind(deletion)
                .bind(e.to_string())
                .bind(delay.as_secs() as i32)
                .execute(&archives.db)
                .await;
            if let Err(db) = retried {
                tracing::warn!(deletion, error = %db, "archive deletion failure not recorded; its lease brings it back");
            }
            Err(e)
        }
    }
}
