//! One session's archive: written from Postgres, read back for a replay, deleted with its
//! session. The worker and the API both come here.

use chrono::{DateTime, SecondsFormat, Utc};
use ibex_engine::archive::{self, ArchivedTurn, CheckpointLine, ReplayError};
use uuid::Uuid;

use super::{Archives, StoreError};
use crate::db::begin_for_org;

#[derive(Debug, thiserror::Error)]
pub enum ArchiveFailure {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Retrying cannot help (the session is larger than archive_max_bytes): dead-letter at once.
    #[error("{0}")]
    Permanent(String),
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

/// Turn contents read from Postgres in one query, and held rendered until uploaded, at most per
/// batch in flight (a larger batch is read and uploaded in chunks).
const READ_CHUNK_BYTES: i64 = 32 << 20;

/// A claimed archive event: which session, of which org.
#[derive(Clone, Copy, Debug)]
pub struct Claim {
    pub org: Uuid,
    pub session: Uuid,
    pub event: i64,
    pub attempts: i32,
}

/// A claimed session with nothing to write.
pub enum Skipped {
    /// Deleted, no longer completed, or already cleared: nothing to archive.
    Gone(Claim),
    /// Larger than archive_max_bytes: retrying cannot help.
    TooLarge(Claim, i64),
}

/// A claimed session read and rendered, ready to upload.
pub struct ReadySession {
    pub claim: Claim,
    key: String,
    object: archive::ArchiveObject,
    turn_count: i32,
    completed_at: Option<DateTime<Utc>>,
}

impl ReadySession {
    /// The rendered archive's size: what this session holds in memory until it is uploaded.
    pub fn size(&self) -> usize {
        self.object.bytes.len()
    }
}

#[derive(Clone, sqlx::FromRow)]
struct SessionRow {
    id: Uuid,
    agent_id: Uuid,
    turn_count: i32,
    completed_at: Option<DateTime<Utc>>,
    content_bytes: i64,
}

/// A claimed session to read, with the size of its turns.
pub struct ToRead {
    claim: Claim,
    session: SessionRow,
}

impl ToRead {
    pub fn claim(&self) -> Claim {
        self.claim
    }
}

/// Claimed sessions of one org after sizing them: those with nothing to write, and the rest in
/// chunks of at most READ_CHUNK_BYTES of turns (a larger session is a chunk of its own), so that
/// a batch is read, rendered and uploaded a bounded amount at a time.
pub struct Sized {
    pub skipped: Vec<Skipped>,
    pub chunks: Vec<Vec<ToRead>>,
}

/// Sizes the claimed sessions of one org, inside the org (row-level security applies, as to
/// every application read), in one query.
pub async fn size_org(archives: &Archives, org: Uuid, claims: Vec<Claim>) -> Result<Sized, sqlx::Error> {
    let ids: Vec<Uuid> = claims.iter().map(|c| c.session).collect();
    let mut tx = begin_for_org(&archives.db, org).await?;
    let rows: Vec<SessionRow> = sqlx::query_as(
        "SELECT s.id, s.agent_id, s.turn_count, s.completed_at,
                coalesce((SELECT sum(octet_length(t.content)) FROM ibex_core.session_turns t
                          WHERE t.org_id = s.org_id AND t.session_id = s.id), 0)::bigint AS content_bytes
         FROM ibex_core.sessions s
         WHERE s.org_id = $1 AND s.id = ANY ($2) AND s.status = 'completed' AND s.turns_cleared_at IS NULL",
    )
    .bind(org)
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?;
    tx.rollback().await?;
    let mut sized = Sized {
        skipped: Vec::new(),
        chunks: Vec::new(),
    };
    let mut chunk: Vec<ToRead> = Vec::new();
    let mut chunk_bytes = 0;
    for claim in claims {
        let Some(session) = rows.iter().find(|r| r.id == claim.session) else {
            sized.skipped.push(Skipped::Gone(claim));
            continue;
        };
        if session.content_bytes > archives.max_bytes as i64 {
            sized.skipped.push(Skipped::TooLarge(claim, session.content_bytes));
            continue;
        }
        if !chunk.is_empty() && chunk_bytes + session.content_bytes > READ_CHUNK_BYTES {
            sized.chunks.push(std::mem::take(&mut chunk));
            chunk_bytes = 0;
        }
        chunk_bytes += session.content_bytes;
        chunk.push(ToRead {
            claim,
            session: session.clone(),
        });
    }
    if !chunk.is_empty() {
        sized.chunks.push(chunk);
    }
    Ok(sized)
}

/// Reads and renders one chunk of sized sessions of one org, in one query inside the org.
/// A session deleted since it was sized renders without turns; recording it then fails (its
/// row is gone), and the worker removes the object again.
pub async fn read_chunk(archives: &Archives, org: Uuid, chunk: Vec<ToRead>) -> Result<Vec<ReadySession>, sqlx::Error> {
    let mut tx = begin_for_org(&archives.db, org).await?;
    let mut ready = Vec::with_capacity(chunk.len());
    render_chunk(&mut tx, org, chunk, &mut ready).await?;
    tx.rollback().await?;
    Ok(ready)
}

#[derive(sqlx::FromRow)]
struct SessionTurnRow {
    session_id: Uuid,
    #[sqlx(flatten)]
    turn: TurnRow,
}

async fn render_chunk(
    tx: &mut sqlx::PgConnection,
    org: Uuid,
    chunk: Vec<ToRead>,
    ready: &mut Vec<ReadySession>,
) -> Result<(), sqlx::Error> {
    let ids: Vec<Uuid> = chunk.iter().map(|c| c.claim.session).collect();
    let rows: Vec<SessionTurnRow> = sqlx::query_as(
        "SELECT session_id, checkpoint, turn_index, role, content, tokens, model, created_at
         FROM ibex_core.session_turns WHERE org_id = $1 AND session_id = ANY ($2) ORDER BY session_id, turn_index",
    )
    .bind(org)
    .bind(&ids)
    .fetch_all(&mut *tx)
    .await?;
    let mut by_session: std::collections::HashMap<Uuid, Vec<(i32, ArchivedTurn)>> = std::collections::HashMap::new();
    for row in rows {
        by_session.entry(row.session_id).or_default().push(row.turn.into());
    }
    for ToRead { claim, session } in chunk {
        let turns = by_session.remove(&claim.session).unwrap_or_default();
        let object = archive::render(&claim.session.to_string(), turns);
        ready.push(ReadySession {
            claim,
            key: archive::object_key(org, session.agent_id, claim.session),
            object,
            turn_count: session.turn_count,
            completed_at: session.completed_at,
        });
    }
    Ok(())
}

/// An archive written to the store, to be recorded with the rest of its batch.
pub struct Uploaded {
    pub claim: Claim,
    pub key: String,
    pub bytes: usize,
    lines: i32,
    sha256: String,
    turn_count: i32,
    pub completed_at: Option<DateTime<Utc>>,
}

/// Writes one prepared archive whole (one PUT).
pub async fn upload(archives: &Archives, ready: ReadySession) -> Result<Uploaded, ArchiveFailure> {
    let ReadySession {
        claim,
        key,
        object,
        turn_count,
        completed_at,
    } = ready;
    if object.bytes.len() > archives.max_bytes {
        return Err(ArchiveFailure::Permanent(format!(
            "the archive would be {} bytes; archive_max_bytes is {}",
            object.bytes.len(),
            archives.max_bytes
        )));
    }
    let bytes = object.bytes.len();
    archives.store.put(&key, object.bytes, archive::CONTENT_TYPE).await?;
    Ok(Uploaded {
        claim,
        key,
        bytes,
        lines: object.lines as i32,
        sha256: object.sha256,
        turn_count,
        completed_at,
    })
}

/// Records a batch's archives and acknowledges its events (also those of sessions that went),
/// in one transaction. Answers, per upload in order, whether its session was recorded: one that
/// was deleted while it was written is not (its object must go again).
pub async fn record_batch(
    archives: &Archives,
    uploaded: &[Uploaded],
    gone: &[Claim],
) -> Result<Vec<bool>, sqlx::Error> {
    if uploaded.is_empty() && gone.is_empty() {
        return Ok(Vec::new());
    }
    let claims: Vec<Claim> = uploaded.iter().map(|u| u.claim).chain(gone.iter().copied()).collect();
    // A session that went is acknowledged with an impossible turn count: nothing is updated.
    let unrecordable = gone.len();
    let rows: Vec<(Uuid, bool)> =
        sqlx::query_as("SELECT * FROM ibex_core.record_session_archives($1, $2, $3, $4, $5, $6, $7, $8)")
            .bind(claims.iter().map(|c| c.org).collect::<Vec<_>>())
            .bind(claims.iter().map(|c| c.session).collect::<Vec<_>>())
            .bind(claims.iter().map(|c| c.event).collect::<Vec<_>>())
            .bind(with_blanks(
                uploaded.iter().map(|u| u.key.clone()),
                unrecordable,
                String::new(),
            ))
            .bind(with_blanks(uploaded.iter().map(|u| u.bytes as i64), unrecordable, 0))
            .bind(with_blanks(uploaded.iter().map(|u| u.lines), unrecordable, 0))
            .bind(with_blanks(
                uploaded.iter().map(|u| u.sha256.clone()),
                unrecordable,
                String::new(),
            ))
            .bind(with_blanks(uploaded.iter().map(|u| u.turn_count), unrecordable, -1))
            .fetch_all(&archives.db)
            .await?;
    Ok(uploaded
        .iter()
        .map(|u| {
            rows.iter()
                .any(|(session, recorded)| *session == u.claim.session && *recorded)
        })
        .collect())
}

fn with_blanks<T: Clone>(values: impl Iterator<Item = T>, blanks: usize, blank: T) -> Vec<T> {
    values.chain(std::iter::repeat_n(blank, blanks)).collect()
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
pub async fn delete_archives(
    archives: &Archives,
    deletion: i64,
    prefix: &str,
    attempts: u32,
) -> Result<Vec<String>, StoreError> {
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
            archives
                .metrics
                .archive_deletions
                .with_label_values(&["confirmed"])
                .inc();
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
