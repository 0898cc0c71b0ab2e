//! The outbox consumer that keeps the hot cache (module docs of `hotcache` give the guarantees).
//!
//! One cycle:
//! 1. Redis healthy? If it does not answer, claim nothing (work that cannot be applied would only
//!    burn attempts) and try again after `hot_cache_poll`.
//! 2. Marker missing (first start, or Redis lost its data) or the periodic rebuild due: recompute
//!    every agent with memories, then set the marker.
//! 3. Claim up to `hot_cache_batch` hot_cache events (lease `hot_cache_lease`), recompute each
//!    agent they name once, acknowledge the events of the agents written, give the others back
//!    with their error (retried after a backoff, dead-lettered after 10 attempts).
//! 4. Take up to `hot_cache_batch` rows of `ibex_ops.hot_cache_evictions` (memories deleted,
//!    orgs deleted or purged: sql/api/hot_cache_invalidation.sql): remove every key of each org
//!    named without an agent, recompute each agent named, then delete the rows, in one
//!    transaction that holds them (`FOR UPDATE SKIP LOCKED`), so a failure leaves them queued.
//! 5. A full batch goes round again at once; otherwise wait for a notification on channel
//!    `ibex_outbox` with payload `hot_cache` (LISTEN) or `hot_cache_poll`, whichever comes first.
//!    Notifications are only a wake-up: a lost one (the LISTEN connection dropped) costs at most
//!    one polling interval.
//!
//! Shutdown is checked between cycles, never inside one, so a claimed batch is finished and
//! acknowledged rather than left to its lease.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::source::{agent_top, agents_with_memories, AgentRef};
use super::HotStore;
use crate::db::outbox_wakeup::OutboxWakeup;
use crate::metrics::Metrics;

/// Failures of one event before it goes to dead_letters.
const MAX_ATTEMPTS: i32 = 10;
/// Postgres reads of the consumer are not on anyone's hot path.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Clone, Debug)]
pub struct ConsumerSettings {
    /// For the LISTEN connection (outside the pool, so it never takes a pooled connection).
    pub database_url: String,
    pub hot_cache_size: usize,
    pub poll: Duration,
    pub lease: Duration,
    pub batch: usize,
    pub rebuild_interval: Duration,
    /// The TTL every hot-cache key gets when written.
    pub key_ttl: Duration,
}

pub struct HotCacheConsumer {
    db: PgPool,
    store: Arc<HotStore>,
    settings: ConsumerSettings,
    metrics: Arc<Metrics>,
    last_rebuild: Option<Instant>,
    redis_down: bool,
}

/// A row of `ibex_core.claim_hot_cache_events`.
#[derive(sqlx::FromRow)]
struct ClaimedRow {
    event_org: Uuid,
    event_id: i64,
    event_name: String,
    event_aggregate: Option<Uuid>,
    event_payload: serde_json::Value,
}

/// A row of `ibex_ops.hot_cache_evictions`: without an agent, the whole org goes.
#[derive(sqlx::FromRow)]
struct EvictionRow {
    id: i64,
    org_id: Uuid,
    agent_id: Option<Uuid>,
}

/// A claimed event, reduced to what applying it needs.
struct Claimed {
    org: Uuid,
    id: i64,
    agent: Option<Uuid>,
}

impl From<ClaimedRow> for Claimed {
    /// The agent is the payload's `agent_id`; an `agent.rescored` event names it as its aggregate.
    fn from(row: ClaimedRow) -> Self {
        let agent = row
            .event_payload
            .get("agent_id")
            .and_then(|v| v.as_str())
            .and_then(|s| Uuid::parse_str(s).ok())
            .or(if row.event_name == "agent.rescored" {
                row.event_aggregate
            } else {
                None
            });
        Self {
            org: row.event_org,
            id: row.event_id,
            agent,
        }
    }
}

impl HotCacheConsumer {
    pub fn new(db: PgPool, store: Arc<HotStore>, settings: ConsumerSettings, metrics: Arc<Metrics>) -> Self {
        Self {
            db,
            store,
            settings,
            metrics,
            last_rebuild: None,
            redis_down: false,
        }
    }

    /// Runs until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        tracing::info!(
            batch = self.settings.batch,
            poll_ms = self.settings.poll.as_millis() as u64,
            "hot cache consumer started"
        );
        let mut wakeup = OutboxWakeup::new(self.settings.database_url.clone(), "hot_cache");
        while !shutdown.is_cancelled() {
            let busy = match self.cycle().await {
                Ok(full) => full,
                Err(e) => {
                    tracing::debug!(error = %e, "hot cache cycle failed");
                    false
                }
            };
            if !busy && !wakeup.wait(self.settings.poll, &shutdown).await {
                break;
            }
        }
        tracing::info!("hot cache consumer stopped");
    }

    /// One cycle; `Ok(true)` when a full batch was processed (more may be waiting).
    async fn cycle(&mut self) -> anyhow::Result<bool> {
        let ready = match self.store.is_ready().await {
            Ok(ready) => {
                if self.redis_down {
                    tracing::info!("hot cache: Redis reachable again");
                    self.redis_down = false;
                }
                ready
            }
            Err(e) => {
                if !self.redis_down {
                    tracing::warn!(error = %e, "hot cache: Redis unavailable; not consuming until it is back");
                    self.redis_down = true;
                }
                self.metrics.hot_cache_errors.with_label_values(&["redis"]).inc();
                return Ok(false);
            }
        };
        let rebuild_due = self
            .last_rebuild
            .is_none_or(|at| at.elapsed() >= self.settings.rebuild_interval);
        if !ready || rebuild_due {
            if let Err(e) = self.rebuild(!ready).await {
                tracing::warn!(error = %e, "hot cache rebuild failed; retrying next cycle");
                self.metrics.hot_cache_errors.with_label_values(&["rebuild"]).inc();
                if ready {
                    // A periodic recomputation is retried at the next interval, not in a loop.
                    self.last_rebuild = Some(Instant::now());
                }
            }
        }
        let more_events = self.process_batch().await?;
        let more_evictions = self.process_evictions().await?;
        Ok(more_events || more_evictions)
    }

    /// Recomputes every agent with memories, then marks the cache ready.
    pub async fn rebuild(&mut self, lost: bool) -> anyhow::Result<()> {
        let started = Instant::now();
        let agents = agents_with_memories(&self.db).await?;
        let mut failed = 0usize;
        for &AgentRef { org, agent } in &agents {
            if let Err(e) = self.refresh(org, agent).await {
                failed += 1;
                tracing::debug!(%org, %agent, error = %e, "hot cache: agent refresh failed during rebuild");
            }
        }
        if failed > 0 {
            anyhow::bail!("{failed} of {} agents failed to refresh", agents.len());
        }
        let generation = Uuid::new_v4().to_string();
        self.store.mark_ready(&generation).await?;
        self.last_rebuild = Some(Instant::now());
        self.metrics.hot_cache_rebuilds.inc();
        let elapsed_ms = started.elapsed().as_millis() as u64;
        if lost {
            tracing::info!(agents = agents.len(), elapsed_ms, %generation, "hot cache rebuilt from Postgres");
        } else {
            tracing::debug!(
                agents = agents.len(),
                elapsed_ms,
                "hot cache: periodic recomputation done"
            );
        }
        Ok(())
    }

    async fn refresh(&self, org: Uuid, agent: Uuid) -> anyhow::Result<()> {
        let top = agent_top(&self.db, org, agent, self.settings.hot_cache_size, READ_TIMEOUT).await?;
        self.store.replace(org, agent, &top, self.settings.key_ttl).await?;
        self.metrics.hot_cache_refreshes.inc();
        Ok(())
    }

    async fn process_batch(&mut self) -> anyhow::Result<bool> {
        let rows: Vec<ClaimedRow> = sqlx::query_as(
            "SELECT event_org, event_id, event_name, event_aggregate, event_payload
             FROM ibex_core.claim_hot_cache_events($1, $2)",
        )
        .bind(self.settings.batch as i32)
        .bind(self.settings.lease.as_secs().max(1) as i32)
        .fetch_all(&self.db)
        .await?;
        if rows.is_empty() {
            return Ok(false);
        }
        let full = rows.len() >= self.settings.batch;
        let events: Vec<Claimed> = rows.into_iter().map(Claimed::from).collect();
        // Each agent once, however many events name it.
        let mut by_agent: BTreeMap<(Uuid, Uuid), Vec<usize>> = BTreeMap::new();
        let mut done: Vec<usize> = Vec::new();
        for (i, e) in events.iter().enumerate() {
            match e.agent {
                Some(agent) => by_agent.entry((e.org, agent)).or_default().push(i),
                None => {
                    // Nothing to apply: acknowledged so it cannot block the queue.
                    tracing::warn!(org = %e.org, id = e.id, "hot cache event without agent_id; skipped");
                    done.push(i);
                }
            }
        }
        let mut failed: Vec<(usize, String)> = Vec::new();
        for ((org, agent), indices) in by_agent {
            match self.refresh(org, agent).await {
                Ok(()) => done.extend(indices),
                Err(e) => {
                    let message = e.to_string();
                    failed.extend(indices.into_iter().map(|i| (i, message.clone())));
                }
            }
        }
        if !done.is_empty() {
            let orgs: Vec<Uuid> = done.iter().map(|&i| events[i].org).collect();
            let ids: Vec<i64> = done.iter().map(|&i| events[i].id).collect();
            sqlx::query("SELECT ibex_core.ack_hot_cache_events($1, $2)")
                .bind(&orgs)
                .bind(&ids)
                .execute(&self.db)
                .await?;
            self.metrics
                .hot_cache_events
                .with_label_values(&["applied"])
                .inc_by(done.len() as u64);
        }
        if !failed.is_empty() {
            tracing::warn!(events = failed.len(), error = %failed[0].1, "hot cache events failed; retrying later");
            let orgs: Vec<Uuid> = failed.iter().map(|&(i, _)| events[i].org).collect();
            let ids: Vec<i64> = failed.iter().map(|&(i, _)| events[i].id).collect();
            sqlx::query("SELECT ibex_core.retry_hot_cache_events($1, $2, $3, $4, $5)")
                .bind(&orgs)
                .bind(&ids)
                .bind(&failed[0].1)
                .bind(self.settings.poll.as_secs().max(1) as i32)
                .bind(MAX_ATTEMPTS)
                .execute(&self.db)
                .await?;
            self.metrics
                .hot_cache_events
                .with_label_values(&["failed"])
                .inc_by(failed.len() as u64);
        }
        Ok(full)
    }

    /// Applies queued evictions; `Ok(true)` when a full batch was taken (more may be waiting).
    async fn process_evictions(&mut self) -> anyhow::Result<bool> {
        let mut tx = self.db.begin().await?;
        let rows: Vec<EvictionRow> = sqlx::query_as(
            "SELECT id, org_id, agent_id FROM ibex_ops.hot_cache_evictions
             ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
        .bind(self.settings.batch as i64)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(false);
        }
        // An org that goes takes its agents with it: their rows need no recomputation.
        let orgs: BTreeSet<Uuid> = rows.iter().filter(|r| r.agent_id.is_none()).map(|r| r.org_id).collect();
        let agents: BTreeSet<(Uuid, Uuid)> = rows
            .iter()
            .filter_map(|r| r.agent_id.map(|agent| (r.org_id, agent)))
            .filter(|(org, _)| !orgs.contains(org))
            .collect();
        for &org in &orgs {
            let removed = self.store.remove_org(org).await?;
            tracing::info!(%org, keys = removed, "hot cache: org deleted or purged; its keys removed from Redis");
        }
        for &(org, agent) in &agents {
            self.refresh(org, agent).await?;
        }
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        sqlx::query("DELETE FROM ibex_ops.hot_cache_evictions WHERE id = ANY($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.metrics
            .hot_cache_events
            .with_label_values(&["evicted"])
            .inc_by(rows.len() as u64);
        Ok(rows.len() >= self.settings.batch)
    }
}
