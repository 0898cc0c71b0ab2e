//! The archive worker: several sidecars share the work through leases; inside one, batches are
//! pipelined.
//!
//! * **Lanes.** [`BATCHES_IN_FLIGHT`] lanes each loop: claim up to `archive_batch` archive events
//!   (lease `archive_lease_seconds`, `SKIP LOCKED`), size and read their sessions org by org,
//!   upload them, record the batch in one transaction. While one lane reads or records, the
//!   other's uploads keep the store busy; every upload of the process takes one of
//!   [`UPLOADS_AT_ONCE`] permits, so the lanes overlap database work with uploads without
//!   sending more requests at once to the store. A lane holds at most READ_CHUNK_BYTES of
//!   rendered archives (plus one larger session), whatever the batch. A failure gives the event
//!   back after a backoff (`ibex_engine::archive::retry_delay`); `archive_max_attempts` failures
//!   dead-letter it. A full batch wakes the idle lanes as soon as it is claimed, and its lane
//!   goes round again once it is recorded; otherwise the first lane waits for a notification of the `archive` topic or `archive_poll`, the
//!   others for the first lane's call or `archive_poll`.
//! * **Upkeep**, every `archive_poll`: until the bucket is known to exist, create it if
//!   missing; while S3 does not answer, probe it (the lanes claim nothing meanwhile: an upload
//!   that cannot succeed would only burn the event's attempts). Then carry out queued deletions
//!   of archive objects (never given up), clear the turn contents of sessions archived longer
//!   ago than the retention (at most every minute, or every retention period when it is
//!   shorter), and every 15 s refresh the `ibex_archive_*` gauges from `ibex_ops.archive_status`.
//!
//! Shutdown is checked between batches, so a claimed batch is finished and recorded rather than
//! left to its lease.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::session::{
    delete_archives, read_chunk, record_batch, size_org, upload, ArchiveFailure, Claim, ReadySession, Skipped, Uploaded,
};
use super::Archives;
use super::StoreHealth;
use crate::db::outbox_wakeup::OutboxWakeup;

/// Batches claimed, read, uploaded or recorded at the same time by one worker.
pub const BATCHES_IN_FLIGHT: usize = 2;
/// Uploads at the same time, all lanes together.
pub const UPLOADS_AT_ONCE: usize = 8;
/// Rendered archives a lane holds before it uploads them (a larger session alone).
const UPLOAD_CHUNK_BYTES: usize = 32 << 20;
/// Deletions carried out per cycle.
const DELETION_BATCH: i32 = 16;
/// Sessions whose turns are cleared per sweep.
const CLEAR_BATCH: i32 = 500;
/// How often the retention sweep runs at most (more often when the retention is shorter).
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
    uploads: Semaphore,
    /// Called when a lane claims a full batch: more may be waiting for the idle lanes.
    more_work: Notify,
}

/// What the upkeep loop remembers between rounds.
#[derive(Default)]
struct Upkeep {
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
            uploads: Semaphore::new(UPLOADS_AT_ONCE),
            more_work: Notify::new(),
        }
    }

    /// Runs until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!(
            store = %self.archives.store.description,
            batch = self.settings.batch,
            lanes = BATCHES_IN_FLIGHT,
            retention_seconds = self.settings.retention.as_secs(),
            "archive worker started"
        );
        let lanes = (0..BATCHES_IN_FLIGHT).map(|lane| self.lane(lane, &shutdown));
        tokio::join!(self.upkeep(&shutdown), futures_util::future::join_all(lanes));
        tracing::info!("archive worker stopped");
    }

    /// One lane: batch after batch while they come full, then waits for more.
    async fn lane(&self, lane: usize, shutdown: &CancellationToken) {
        // The first lane listens for completions; the others follow its call.
        let mut wakeup = (lane == 0).then(|| OutboxWakeup::new(self.settings.database_url.clone(), "archive"));
        while !shutdown.is_cancelled() {
            let full = if self.archives.health() == StoreHealth::Up {
                match self.archive_batch().await {
                    Ok((_, full)) => full,
                    Err(e) => {
                        tracing::debug!(lane, error = %e, "archive batch failed");
                        false
                    }
                }
            } else {
                false
            };
            if full {
                continue;
            }
            let go_on = match wakeup.as_mut() {
                Some(wakeup) => wakeup.wait(self.settings.poll, shutdown).await,
                None => tokio::select! {
                    _ = shutdown.cancelled() => false,
                    _ = self.more_work.notified() => true,
                    _ = tokio::time::sleep(self.settings.poll) => true,
                },
            };
            if !go_on {
                break;
            }
        }
    }

    /// The store's health, deletions, the retention sweep and the gauges, every `archive_poll`.
    async fn upkeep(&self, shutdown: &CancellationToken) {
        let mut state = Upkeep::default();
        let sweep_every = SWEEP_EVERY.min(self.settings.retention.max(self.settings.poll));
        while !shutdown.is_cancelled() {
            if self.store_answers(&mut state).await {
                if let Err(e) = self.delete_batch().await {
                    tracing::debug!(error = %e, "archive deletions failed");
                }
                if state.last_sweep.is_none_or(|at| at.elapsed() >= sweep_every) {
                    state.last_sweep = Some(Instant::now());
                    if let Err(e) = self.clear_expired_turns().await {
                        tracing::debug!(error = %e, "retention sweep failed");
                    }
                }
                if state.last_gauges.is_none_or(|at| at.elapsed() >= GAUGES_EVERY) {
                    state.last_gauges = Some(Instant::now());
                    if let Err(e) = self.refresh_gauges().await {
                        tracing::debug!(error = %e, "archive gauges not refreshed");
                    }
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(self.settings.poll) => {}
            }
        }
    }

    /// Creates the bucket on first contact; afterwards, probes only while marked down.
    async fn store_answers(&self, state: &mut Upkeep) -> bool {
        let archives = &self.archives;
        let result = if !state.bucket_ready {
            archives.store.ensure_bucket().await
        } else if archives.health() == StoreHealth::Down {
            archives.store.probe().await
        } else {
            return true;
        };
        match result {
            Ok(()) => {
                if archives.mark(true) {
                    tracing::info!(store = %archives.store.description, "archive store reachable again; catching up");
                }
                state.bucket_ready = true;
                true
            }
            Err(e) => {
                if archives.health() != StoreHealth::Down {
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
        if full {
            self.more_work.notify_waiters();
        }
        // The batch's sessions are sized org by org, read in chunks (one transaction each) and
        // uploaded UPLOAD_CHUNK_BYTES at a time, UPLOADS_AT_ONCE at once; then the whole batch
        // is recorded in one transaction.
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
        let mut uploaded = Vec::new();
        let mut gone = Vec::new();
        let mut ready = Vec::new();
        let mut ready_bytes = 0;
        for (org, claims) in by_org {
            let sized = match size_org(archives, org, claims.clone()).await {
                Ok(sized) => sized,
                Err(e) => {
                    tracing::warn!(org = %org, error = %e, "sizing sessions to archive failed; retried after a backoff");
                    for claim in claims {
                        self.give_back(claim, &e.to_string(), self.settings.max_attempts).await;
                    }
                    continue;
                }
            };
            for skipped in sized.skipped {
                match skipped {
                    Skipped::Gone(claim) => gone.push(claim),
                    Skipped::TooLarge(claim, bytes) => {
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
            for chunk in sized.chunks {
                let claims: Vec<Claim> = chunk.iter().map(|s| s.claim()).collect();
                match read_chunk(archives, org, chunk).await {
                    Ok(sessions) => {
                        ready_bytes += sessions.iter().map(ReadySession::size).sum::<usize>();
                        ready.extend(sessions);
                    }
                    Err(e) => {
                        tracing::warn!(org = %org, error = %e, "reading sessions to archive failed; retried after a backoff");
                        for claim in claims {
                            self.give_back(claim, &e.to_string(), self.settings.max_attempts).await;
                        }
                    }
                }
                if ready_bytes >= UPLOAD_CHUNK_BYTES {
                    uploaded.extend(self.upload_all(std::mem::take(&mut ready)).await);
                    ready_bytes = 0;
                }
            }
        }
        uploaded.extend(self.upload_all(ready).await);
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

    /// Uploads read sessions, each with one of the worker's upload permits.
    async fn upload_all(&self, ready: Vec<ReadySession>) -> Vec<Uploaded> {
        futures_util::stream::iter(ready)
            .map(|session| self.upload_one(session))
            .buffer_unordered(UPLOADS_AT_ONCE)
            .filter_map(std::future::ready)
            .collect()
            .await
    }

    /// Uploads one read session; a failure gives its event back (after a backoff).
    async fn upload_one(&self, session: ReadySession) -> Option<Uploaded> {
        let archives = &self.archives;
        let _permit = self.uploads.acquire().await.ok()?;
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
