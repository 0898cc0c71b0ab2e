//! Recording which memories an answer actually used.
//!
//! Only the memories packed into a context count as read (a candidate that lost to the budget
//! was not shown to the model), and a degraded answer records nothing. The write is
//! fire-and-forget, off the hot path: the call hands the ids to a bounded channel and returns;
//! one background task writes them (`ibex_core.record_access`) in arrival order. When the channel
//! is full (Postgres slower than the callers) the ids are dropped and counted: access counts are
//! statistics, and the answer must not wait for them.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::db;
use crate::metrics::Metrics;

/// Calls waiting to be recorded before new ones are dropped.
const QUEUE: usize = 1024;
/// A write is statistics: never let one hold a connection for long.
const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

pub struct AccessRecorder {
    queue: Option<mpsc::Sender<(Uuid, Vec<Uuid>)>>,
    metrics: Arc<Metrics>,
}

impl AccessRecorder {
    /// Starts the writer task (none without a database). Must run inside the Tokio runtime.
    pub fn start(db: Option<PgPool>, metrics: Arc<Metrics>) -> Self {
        let queue = db.map(|db| {
            let (tx, rx) = mpsc::channel(QUEUE);
            tokio::spawn(write_loop(db, rx, Arc::clone(&metrics)));
            tx
        });
        Self { queue, metrics }
    }

    /// Queues the packed memories of one answer; never waits.
    pub fn record(&self, org: Uuid, memories: Vec<Uuid>) {
        let (Some(queue), false) = (&self.queue, memories.is_empty()) else {
            return;
        };
        let n = memories.len() as u64;
        match queue.try_send((org, memories)) {
            Ok(()) => self.metrics.context_access.with_label_values(&["queued"]).inc_by(n),
            Err(_) => self.metrics.context_access.with_label_values(&["dropped"]).inc_by(n),
        }
    }
}

async fn write_loop(db: PgPool, mut rx: mpsc::Receiver<(Uuid, Vec<Uuid>)>, metrics: Arc<Metrics>) {
    while let Some((org, memories)) = rx.recv().await {
        let n = memories.len() as u64;
        let write = async {
            let mut tx = db::begin_for_org_with_timeout(&db, org, WRITE_TIMEOUT).await?;
            sqlx::query("SELECT ibex_core.record_access($1, $2)")
                .bind(org)
                .bind(&memories)
                .execute(&mut *tx)
                .await?;
            tx.commit().await
        };
        match write.await {
            Ok(()) => metrics.context_access.with_label_values(&["recorded"]).inc_by(n),
            Err(e) => {
                tracing::warn!(%org, error = %e, "recording memory access failed");
                metrics.context_access.with_label_values(&["failed"]).inc_by(n);
            }
        }
    }
}
