//! Session archives on S3: a completed session's conversation becomes one NDJSON object
//! (`ibex_engine::archive` renders and checks it), Postgres keeps the metadata.
//!
//! * **Queued in the transaction that completes the session** (an `archive` outbox event,
//!   sql/api/archives.sql): completion never waits for S3, and no completion is forgotten.
//! * **The worker** ([`worker::ArchiveWorker`]) claims events with a lease (`SKIP LOCKED`, so
//!   several sidecars share the work), reads the turns inside the session's org, writes the
//!   object whole (one PUT: never half an object, whatever happens to this process), then records
//!   key, size, line count and SHA-256 and acknowledges the event in one transaction. Failures
//!   are retried with backoff, then dead-lettered. While S3 does not answer, nothing is claimed.
//! * **Retention**: once archived and fully extracted, a session's turn contents are cleared
//!   after `archive_retention_seconds` (roles, token counts, hashes and timestamps stay).
//! * **Replay** reads the archive, never Postgres, and refuses an object whose SHA-256 differs
//!   from the one recorded; a replay link is a presigned GET URL valid 15 minutes.
//! * **Deletion** (a session, an agent, an org) is queued in `ibex_ops.archive_deletions` by the
//!   same transaction that deletes the rows, then carried out here until S3 confirms; the
//!   receipt lists the deleted keys.

pub mod session;
pub mod store;
pub mod worker;

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

pub use store::{ArchiveStore, StoreError};

use crate::metrics::Metrics;

/// How long a replay link works.
pub const REPLAY_LINK_TTL: Duration = Duration::from_secs(15 * 60);

/// What the process last learnt of the store: reported by `/readyz`, never waited for there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreHealth {
    Unknown,
    Up,
    Down,
}

/// The archive store and what uses it, shared by the worker and the API.
pub struct Archives {
    pub store: ArchiveStore,
    pub db: PgPool,
    pub metrics: Arc<Metrics>,
    /// Largest archive written or read.
    pub max_bytes: usize,
    health: AtomicU8,
}

/// A replay link: the archive's presigned URL and what it should hold.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReplayLink {
    pub url: String,
    pub expires_at: DateTime<Utc>,
    pub key: String,
    pub sha256: String,
    pub size_bytes: i64,
    pub lines: i32,
}

impl Archives {
    pub fn new(store: ArchiveStore, db: PgPool, metrics: Arc<Metrics>, max_bytes: usize) -> Self {
        Self {
            store,
            db,
            metrics,
            max_bytes,
            health: AtomicU8::new(0),
        }
    }

    pub fn health(&self) -> StoreHealth {
        match self.health.load(Ordering::Relaxed) {
            1 => StoreHealth::Up,
            2 => StoreHealth::Down,
            _ => StoreHealth::Unknown,
        }
    }

    /// Records the outcome of a request to the store; answers whether the store was down before.
    pub fn mark(&self, up: bool) -> bool {
        let was_down = self.health.swap(if up { 1 } else { 2 }, Ordering::Relaxed) == 2;
        self.metrics.archive_store_up.set(i64::from(up));
        was_down
    }

    /// Notes a store error: an unreachable store is marked down.
    pub fn note(&self, error: &StoreError) {
        if matches!(error, StoreError::Unreachable(_)) {
            self.mark(false);
        }
    }

    /// A presigned GET URL of the archive, valid [`REPLAY_LINK_TTL`].
    pub fn replay_link(&self, key: &str, sha256: &str, size_bytes: i64, lines: i32) -> ReplayLink {
        ReplayLink {
            url: self.store.presigned_get(key, REPLAY_LINK_TTL).to_string(),
            expires_at: Utc::now() + REPLAY_LINK_TTL,
            key: key.to_string(),
            sha256: sha256.to_string(),
            size_bytes,
            lines,
        }
    }
}
