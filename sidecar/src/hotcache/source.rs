//! The truth the hot cache is derived from: an agent's top N active memories by the
//! query-independent score, read as the application role inside the agent's org.

use std::time::Duration;

use chrono::{DateTime, Utc};
use ibex_engine::context::Category;
use sqlx::PgPool;
use uuid::Uuid;

use super::HotEntry;
use crate::db;

/// An agent's hot set as of one Postgres read.
#[derive(Clone, Debug)]
pub struct AgentTop {
    /// `statement_timestamp()` of a statement that ran before the read, in microseconds: the
    /// read reflects every commit before it (see the module docs of `hotcache`).
    pub asof_micros: i64,
    /// Best first.
    pub entries: Vec<HotEntry>,
    /// Each entry's query-independent score as Postgres computed it (`ibex_hot_score`, with the
    /// database's `ibex.recency_half_life_hours`): the sidecar stores it, it never recomputes it.
    pub ranks: Vec<f64>,
}

/// A memory of the hot set as read from `ibex_core.memories`.
#[derive(sqlx::FromRow)]
struct TopRow {
    id: Uuid,
    content: String,
    category: String,
    confidence: f32,
    useful_count: i32,
    not_useful_count: i32,
    access_count: i64,
    /// The last access, or the creation for a memory never read: what recency decays from.
    touched_at: DateTime<Utc>,
    embedding: pgvector::Vector,
    /// `ibex_hot_score` as Postgres computed it.
    rank: f64,
}

/// An agent that has active memories, in its org.
#[derive(Clone, Copy, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct AgentRef {
    #[sqlx(rename = "agent_org")]
    pub org: Uuid,
    #[sqlx(rename = "agent_id")]
    pub agent: Uuid,
}

/// `ibex_hot_score` is the extension's query-independent score (`ibex_engine::score::
/// query_independent` with the database's `ibex.recency_half_life_hours`); it is both the order
/// and the rank stored in Redis.
const TOP_SQL: &str = "SELECT m.id, m.content, m.category, m.confidence, m.useful_count, m.not_useful_count,
           m.access_count, coalesce(m.last_accessed_at, m.occurred_at, m.created_at) AS touched_at, m.embedding,
           ibex_hot_score(m.confidence, m.useful_count, m.not_useful_count, m.access_count,
                          coalesce(m.last_accessed_at, m.occurred_at, m.created_at)) AS rank
    FROM ibex_core.memories m
    WHERE m.org_id = $1 AND m.agent_id = $2 AND m.status = 'active'
    ORDER BY rank DESC, m.id
    LIMIT $3";

pub async fn agent_top(
    pool: &PgPool,
    org: Uuid,
    agent: Uuid,
    limit: usize,
    statement_timeout: Duration,
) -> Result<AgentTop, sqlx::Error> {
    let mut tx = db::begin_for_org_with_timeout(pool, org, statement_timeout).await?;
    let asof_micros: i64 = sqlx::query_scalar("SELECT (extract(epoch FROM statement_timestamp()) * 1000000)::bigint")
        .fetch_one(&mut *tx)
        .await?;
    let rows: Vec<TopRow> = sqlx::query_as(TOP_SQL)
        .bind(org)
        .bind(agent)
        .bind(limit as i64)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    let (entries, ranks) = rows
        .into_iter()
        .filter_map(|row| {
            let entry = HotEntry {
                id: row.id,
                category: Category::parse(&row.category)?,
                content: row.content,
                confidence: row.confidence,
                useful_count: row.useful_count,
                not_useful_count: row.not_useful_count,
                access_count: row.access_count,
                touched_at: row.touched_at,
                embedding: row.embedding.to_vec(),
            };
            Some((entry, row.rank))
        })
        .unzip();
    Ok(AgentTop {
        asof_micros,
        entries,
        ranks,
    })
}

/// Every agent that has active memories (through the definer function of sql/api/hot_cache_queue.sql).
pub async fn agents_with_memories(pool: &PgPool) -> Result<Vec<AgentRef>, sqlx::Error> {
    sqlx::query_as("SELECT agent_org, agent_id FROM ibex_core.hot_cache_agents()")
        .fetch_all(pool)
        .await
}
