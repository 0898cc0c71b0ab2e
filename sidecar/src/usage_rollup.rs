//! The usage rollup worker: every `usage_rollup_interval`, rolls the closed hours of every org's
//! usage up into `usage_hourly` through `ibex_core.roll_up_usage` (`sql/api/usage_rollup.sql`),
//! a bounded number of orgs and hours per transaction until every org has caught up. Analytics
//! stay exact without it (they read raw events past each org's watermark); it keeps them fast.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// Hours of one org rolled up in one transaction: a backlog (a new deployment over old events)
/// is worked off in steps that each hold the org's mark for a bounded time.
const HOURS_PER_ORG: i32 = 24;
/// Orgs rolled up in one transaction.
const ORGS_PER_RUN: i32 = 100;

pub struct UsageRollup {
    pool: PgPool,
    interval: Duration,
    grace: Duration,
}

impl UsageRollup {
    pub fn new(pool: PgPool, interval: Duration, grace: Duration) -> Self {
        Self { pool, interval, grace }
    }

    /// Runs until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        tracing::info!(
            interval_seconds = self.interval.as_secs(),
            grace_seconds = self.grace.as_secs(),
            "usage rollup started"
        );
        while !shutdown.is_cancelled() {
            if let Err(e) = self.catch_up(&shutdown).await {
                tracing::warn!(error = %e, "usage rollup failed; analytics read raw events until it succeeds");
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(self.interval) => {}
            }
        }
        tracing::info!("usage rollup stopped");
    }

    /// Rolls up until no org has a closed hour left; answers the steps taken (one org moving
    /// up to [`HOURS_PER_ORG`] hours is one step).
    pub async fn catch_up(&self, shutdown: &CancellationToken) -> Result<i64, sqlx::Error> {
        let grace = i32::try_from(self.grace.as_secs()).unwrap_or(i32::MAX);
        let mut steps = 0i64;
        while !shutdown.is_cancelled() {
            let moved: i32 = sqlx::query_scalar("SELECT ibex_core.roll_up_usage(NULL, $1, $2, $3)")
                .bind(ORGS_PER_RUN)
                .bind(HOURS_PER_ORG)
                .bind(grace)
                .fetch_one(&self.pool)
                .await?;
            if moved == 0 {
                break;
            }
            steps += i64::from(moved);
        }
        if steps > 0 {
            tracing::debug!(steps, "usage rolled up");
        }
        Ok(steps)
    }
}
