//! The archive worker: one loop per sidecar, several sidecars sharing the work through leases.
//!
//! One cycle:
//! 1. The store: until the bucket is known to exist, create it if missing; while S3 does not
//!    answer, claim nothing (an upload that cannot succeed would only burn the event's
//!    attempts) and probe again after `archive_poll`.
//! 2. Claim up to `archive_batch` archive events (lease `archive_lease_seconds`) and archive
//!    each session; a failure gives the event back after a backoff
//!    (`ibex_engine::archive::retry_delay`), and `archive_max_attempts` failures dead-letter it.
//! 3. Claim queued deletions of archive objects and carry them out (never given up).
//! 4. After a cycle that archived, and at least every minute: clear the turn contents of
//!    sessions archived longer ago than the retention. Every 15 s: refresh the `ibex_archive_*`
//!    gauges from `ibex_ops.archive_status`.
//! 5. A full batch goes round again at once; otherwise wait for a notification of the
//!    `archive` topic or `archive_poll`.
//!
//! Shutdown is checked between cycles, so a claimed batch is finished and recorded rather than
//! left to its lease.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::session::{
    delete_archives, prepare_org, record_batch, upload, ArchiveFailure, Claim, Prepared, ReadySession, Uploaded,
};
use super::Archives;
use crate::db::outbox_wakeup::OutboxWakeup;

/// Sessions of one batch archived at the same time.
const UPLOADS_AT_ONCE: usize = 8;
/// Deletions carried out per cycle.
const DELETION_BATCH: i32 = 16;
/// Sessions whose turns are cleared per sweep.
const CLEAR_BATCH: i32 = 500;
/// How often the retention sweep runs at least (it also runs after every cycle that archived).
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// How often the status gauges are read (a count over every org's sessions).
const GAUGES_EVERY: Duration = Duration::from_secs(15);

#[derive(Clone, Debug)]
pub struct WorkerSettings {
    pub database_url: String,
    pub poll: Duration,
    pub lease: Duration,
    pub batch: usize,
    pub max_attempts: u32,
    pub retention: Duration,
}

pub struct ArchiveWorker {
    archives: Arc<Archives>,
    settings: WorkerSettings,
    bucket_ready: bool,
    last_sweep: Option<Instant>,
    last_gauges: Option<Instant>,
}

#[derive(sqlx::FromRow)]
struct ClaimedEvent {
    event_org: Uuid,
    event_id: i64,
    event_aggregate: Option<Uuid>,
    event_attempts: i32,
}

#[derive(sqlx::FromRow)]
struct ClaimedDeletion {
    deletion_id: i64,
    deletion_prefix: String,
    deletion_attempts: i32,
}

#[derive(sqlx::FromRow)]
struct StatusRow {
    queued: i64,
    retrying: i64,
    archived: i64,
    archived_bytes: i64,
    failed: i64,
    oldest_pending_age_seconds: f64,
    cleared: i64,
    pending_deletions: i64,
}

impl ArchiveWorker {
    pub fn new(archives: Arc<Archives>, settings: WorkerSettings) -> Self {
        Self {
            archives,
            settings,
            bucket_ready: false,
            last_sweep: None,
            last_gauges: None,
        }
    }

    /// Runs until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        tracing::info!(
            store = %self.archives.store.description,
            batch = self.settings.batch,
            retention_seconds = self.settings.retention.as_secs(),
            "archive worker started"
        );
        let mut wakeup = OutboxWakeup::new(self.settings.database_url.clone(), "archive");
        while !shutdown.is_cancelled() {
            let busy = match self.cycle().await {
                Ok(full) => full,
                Err(e) => {
                    tracing::debug!(error = %e, "archive cycle failed");
                    false
                }
            };
            if !busy && !wakeup.wait(self.settings.poll, &shutdown).await {
                break;
            }
        }
        tracing::info!("archive worker stopped");
    }

    /// One cycle; `Ok(true)` when a full batch was archived (more may be waiting).
    async fn cycle(&mut self) -> anyhow::Result<bool> {
        if !self.store_answers().await {
            return Ok(false);
        }
        let (archived, full) = self.archive_batch().await?;
        self.delete_batch().await?;
        if archived > 0 || self.last_sweep.is_none_or(|at| at.elapsed() >= SWEEP_EVERY) {
            self.last_sweep = Some(Instant::now());
            self.clear_expired_turns().await?;
        }
        if self.last_gauges.is_none_or(|at| at.elapsed() >= GAUGES_EVERY) {
            self.last_gauges = Some(Instant::now());
            self.refresh_gauges().await?;
        }
        Ok(full)
    }

    /// Creates the bucket on first contact; afterwards, probes only while marked down.
    async fn store_answers(&mut self) -> bool {
        let archives = &self.archives;
        let result = if !self.bucket_ready {
            archives.store.ensure_bucket().await
        } else if archives.health() == super::StoreHealth::Down {
            archives.store.probe().await
        } else {
            return true;
        };
        match result {
            Ok(()) => {
                if archives.mark(true) {
                    tracing::info!(store = %archives.store.description, "archive store reachable again; catching up");
                }
                self.bucket_ready = true;
                true
            }
            Err(e) => {
                if archives.health() != super::StoreHealth::Down {
                    tracing::warn!(store = %archives.store.description, error = %e,
                        "archive store unavailable; sessions stay queued until it is back");
                }
                archives.mark(false);
                false
            }
        }
    }

    /// Archives a claimed batch; answers how many were written and whether the batch was full.
    async fn archive_batch(&self) -> anyhow::Result<(usize, bool)> {
        let archives = &self.archives;
        let claimed: Vec<ClaimedEvent> = sqlx::query_as(
            "SELECT event_org, event_id, event_aggregate, event_attempts FROM ibex_core.claim_archive_events($1, $2)",
        )
        .bind(self.settings.batch as i32)
        .bind(self.settings.lease.as_secs().max(1) as i32)
        .fetch_all(&archives.db)
        .await?;
        let full = claimed.len() >= self.settings.batch;
        // The batch's sessions are read org by org (one transaction each), then uploaded
        // UPLOADS_AT_ONCE at a time (each upload recorded as soon as it is done).
        let mut by_org: BTreeMap<Uuid, Vec<Claim>> = BTreeMap::new();
        for event in claimed {
            let claim = Claim {
                org: event.event_org,
                session: event.event_aggregate.unwrap_or_default(),
                event: event.event_id,
                attempts: event.event_attempts,
            };
            if event.event_aggregate.is_none() {
                self.give_back(claim, "an archive event without a session", 1).await;
                continue;
            }
            by_org.entry(claim.org).or_default().push(claim);
        }
        let mut ready = Vec::new();
        let mut gone = Vec::new();
        for (org, claims) in by_org {
            match prepare_org(archives, org, claims.clone()).await {
                Ok(prepared) => {
                    for p in prepared {
                        match p {
                            Prepared::Ready(session) => ready.push(*session),
                            Prepared::Gone(claim) => gone.push(claim),
                            Prepared::TooLarge(claim, bytes) => {
                                archives.metrics.archive_uploads.with_label_values(&["failed"]).inc();
                                let error = format!(
                                    "the session holds {bytes} bytes of turns; archive_max_bytes is {}",
                                    archives.max_bytes
                                );
                                tracing::warn!(org = %claim.org, session = %claim.session, %error, "session not archived");
                                self.give_back(claim, &error, 1).await;
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(org = %org, error = %e, "reading sessions to archive failed; retried after a backoff");
                    for claim in claims {
                        self.give_back(claim, &e.to_string(), self.settings.max_attempts).await;
                    }
                }
            }
        }
        let results: Vec<Option<Uploaded>> = futures_util::stream::iter(ready)
            .map(|session| self.upload_one(session))
            .buffer_unordered(UPLOADS_AT_ONCE)
            .collect()
            .await;
        let uploaded: Vec<Uploaded> = results.into_iter().flatten().collect();
        archives
            .metrics
            .archive_uploads
            .with_label_values(&["discarded"])
            .inc_by(gone.len() as u64);
        let recorded = match record_batch(archives, &uploaded, &gone).await {
            Ok(recorded) => recorded,
            Err(e) => {
                // The objects stay; a retry writes the same bytes again and records them.
                tracing::warn!(error = %e, "recording archives failed; retried after a backoff");
                for u in &uploaded {
                    self.give_back(u.claim, &e.to_string(), self.settings.max_attempts)
                        .await;
                }
                return Ok((0, full));
            }
        };
        let mut written = 0;
        for (u, recorded) in uploaded.iter().zip(recorded) {
            if recorded {
                written += 1;
                archives.metrics.archive_uploads.with_label_values(&["archived"]).inc();
                archives.metrics.archive_bytes.inc_by(u.bytes as u64);
                if let Some(completed) = u.completed_at {
                    let lag = (chrono::Utc::now() - completed).to_std().unwrap_or_default();
                    archives.metrics.archive_lag.observe(lag.as_secs_f64());
                }
            } else {
                // Deleted while it was written: its deletion may have run before the PUT.
                archives.metrics.archive_uploads.with_label_values(&["discarded"]).inc();
                if let Err(e) = archives.store.delete(&u.key).await {
                    tracing::warn!(key = %u.key, error = %e, "the archive of a deleted session could not be removed");
                }
            }
        }
        Ok((written, full))
    }

    /// Uploads one read session; a failure gives its event back (after a backoff).
    async fn upload_one(&self, session: ReadySession) -> Option<Uploaded> {
        let archives = &self.archives;
        let claim = session.claim;
        match upload(archives, session).await {
            Ok(uploaded) => Some(uploaded),
            Err(e) => {
                archives.metrics.archive_uploads.with_label_values(&["failed"]).inc();
                tracing::warn!(org = %claim.org, session = %claim.session, attempts = claim.attempts,
                    error = %e, "archiving a session failed; retried after a backoff");
                let max = match &e {
                    ArchiveFailure::Permanent(_) => 1,
                    ArchiveFailure::Store(store) => {
                        archives.note(store);
                        self.settings.max_attempts
                    }
                };
                self.give_back(claim, &e.to_string(), max).await;
                None
            }
        }
    }

    async fn give_back(&self, claim: Claim, error: &str, max_attempts: u32) {
        let delay = ibex_engine::archive::retry_delay(claim.attempts.max(0) as u32);
        let result = sqlx::query("SELECT ibex_core.retry_archive_events($1, $2, $3, $4, $5)")
            .bind(vec![claim.org])
            .bind(vec![claim.event])
            .bind(error)
            .bind(delay.as_secs() as i32)
            .bind(max_attempts as i32)
            .execute(&self.archives.db)
            .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "archive event not given back; its lease brings it back");
        }
    }

    async fn delete_batch(&self) -> anyhow::Result<()> {
        let claimed: Vec<ClaimedDeletion> = sqlx::query_as(
            "SELECT deletion_id, deletion_prefix, deletion_attempts FROM ibex_core.claim_archive_deletions($1, $2)",
        )
        .bind(DELETION_BATCH)
        .bind(self.settings.lease.as_secs().max(1) as i32)
        .fetch_all(&self.archives.db)
        .await?;
        for deletion in claimed {
            match delete_archives(
                &self.archives,
                deletion.deletion_id,
                &deletion.deletion_prefix,
                deletion.deletion_attempts.max(0) as u32,
            )
            .await
            {
                Ok(keys) => tracing::info!(deletion = deletion.deletion_id, prefix = %deletion.deletion_prefix,
                    objects = keys.len(), "archive objects deleted"),
                Err(e) => tracing::warn!(deletion = deletion.deletion_id, error = %e,
                    "deleting archive objects failed; retried after a backoff"),
            }
        }
        Ok(())
    }

    async fn clear_expired_turns(&self) -> anyhow::Result<()> {
        let archives = &self.archives;
        let cleared: i32 = sqlx::query_scalar("SELECT ibex_core.clear_archived_turns($1, $2)")
            .bind(self.settings.retention.as_secs() as i64)
            .bind(CLEAR_BATCH)
            .fetch_one(&archives.db)
            .await?;
        if cleared > 0 {
            archives.metrics.archive_cleared_sessions.inc_by(cleared as u64);
            tracing::info!(
                sessions = cleared,
                "turn contents of archived sessions cleared after the retention"
            );
        }
        Ok(())
    }

    async fn refresh_gauges(&self) -> anyhow::Result<()> {
        let archives = &self.archives;
        let status: StatusRow = sqlx::query_as("SELECT * FROM ibex_core.archive_status()")
            .fetch_one(&archives.db)
            .await?;
        let gauges = &archives.metrics.archive_status;
        for (state, value) in [
            ("queued", status.queued),
            ("retrying", status.retrying),
            ("archived", status.archived),
            ("failed", status.failed),
            ("cleared", status.cleared),
            ("pending_deletion", status.pending_deletions),
        ] {
            gauges.with_label_values(&[state]).set(value);
        }
        archives.metrics.archive_archived_bytes.set(status.archived_bytes);
        archives
            .metrics
            .archive_oldest_pending_seconds
            .set(status.oldest_pending_age_seconds);
        Ok(())
    }
}
