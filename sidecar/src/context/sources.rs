//! The memory sources of context assembly: the query's embedding (computed once per call, shared
//! by both sources), the hot set, and the cold search in Postgres.
//!
//! The query is embedded once, by the sidecar's model through the Redis embedding cache, and the
//! vector goes to Postgres (`ibex_core.search_by_vector`), so the database never embeds it again.
//! The cold query reads `ibex.lexical_weight` and `ibex.recency_half_life_hours` in the same round
//! trip: hot-only candidates are then scored with exactly the parameters the search used, and the
//! sidecar keeps no copy of either setting.
//!
//! Every query is bounded by the time left before the deadline (`statement_timeout`, see
//! [`query_timeout`]): a source the caller stopped waiting for does not keep a backend busy.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::{BoxFuture, FutureExt, Shared};
use ibex_engine::context::{Category, ColdCandidate};
use ibex_engine::score::{ScoreBreakdown, ScoreParams};
use sqlx::PgPool;
use uuid::Uuid;

use super::EngineSettings;
use crate::db;
use crate::embedding::{EmbedRequest, EmbeddingCore, Lane};
use crate::hotcache::source::agent_top;
use crate::hotcache::{HotEntry, HotRead, HotStore};

/// What one source task hands back: its result, its own duration and its status.
pub(super) type Timed<T> = (Result<T, String>, Duration, &'static str);

/// The query's vector (or why there is none) and how long it took; cloneable, so the cold search
/// and the hot scoring share one computation.
pub(super) type QueryEmbedding = Shared<BoxFuture<'static, Result<(Arc<Vec<f32>>, Duration), String>>>;

/// The query's embedding as a shared future. It is not spawned: the cold source drives it, so
/// when the call is abandoned (deadline, client gone) and its tasks are aborted, the request is
/// dropped too and the embedding core's queue skips it. It runs in the context lane (the
/// reserved model instances, see `embedding::pool`), cached under the caller's org. A query
/// longer than `max_text_chars` is cut to it: the model reads only its first 256 tokens.
pub(super) fn embed_query(embed: Arc<EmbeddingCore>, org: Uuid, mut query: String) -> QueryEmbedding {
    if let Some((cut, _)) = query.char_indices().nth(embed.max_text_chars()) {
        query.truncate(cut);
    }
    async move {
        let started = Instant::now();
        let mut out = embed
            .embed(EmbedRequest {
                texts: vec![query],
                count_tokens: false,
                org,
                lane: Lane::Context,
            })
            .await
            .map_err(|e| format!("query embedding failed: {e}"))?;
        let vector = out
            .vectors
            .pop()
            .ok_or_else(|| "the embedding core answered no vector".to_string())?;
        Ok((Arc::new(vector), started.elapsed()))
    }
    .boxed()
    .shared()
}

/// The `statement_timeout` of a hot-path query: the time left before the deadline, never more
/// than the configured cap. Postgres then cancels the query itself when the caller has stopped
/// waiting, whatever happens to the task that sent it.
pub(super) fn query_timeout(deadline: tokio::time::Instant, cap: Duration) -> Duration {
    deadline
        .saturating_duration_since(tokio::time::Instant::now())
        .min(cap)
        .max(Duration::from_millis(1))
}

/// Runs a hot-path database call to its end in a task of its own, even when the caller stops
/// waiting (deadline passed, client gone).
///
/// Dropping a sqlx query mid-flight makes the pool close its connection (the on-release test meets
/// the cancelled statement), and the replacement backend costs a connection set-up and cold
/// caches. Under load that turned every missed deadline into more of them (measured: goodput at
/// 300% of capacity fell to 0.43x). The call is bounded by its `statement_timeout` (the time left
/// before the deadline), so Postgres still stops the work of a caller who is gone by the
/// deadline; what is kept is the connection.
async fn to_completion<T: Send + 'static>(
    call: impl std::future::Future<Output = T> + Send + 'static,
) -> Result<T, String> {
    tokio::spawn(call).await.map_err(|e| format!("task failed: {e}"))
}

/// The agent's hot set: Redis, or Postgres when the cache is not built (or not configured).
pub(super) async fn hot_source(
    store: Arc<HotStore>,
    db: PgPool,
    org: Uuid,
    agent: Uuid,
    deadline: tokio::time::Instant,
    settings: EngineSettings,
) -> Timed<Vec<HotEntry>> {
    let started = Instant::now();
    let timeout = query_timeout(deadline, settings.statement_timeout);
    let size = settings.hot_cache_size;
    let from_postgres = async move {
        to_completion(async move { agent_top(&db, org, agent, size, timeout).await })
            .await
            .and_then(|r| r.map_err(|e| e.to_string()))
    };
    let (result, status) = if !store.is_enabled() {
        let r = from_postgres
            .await
            .map(|top| top.entries)
            .map_err(|e| format!("reading the hot set from Postgres: {e}"));
        (r, "postgres")
    } else {
        match store.read(org, agent).await {
            Ok(HotRead::Ready(entries)) => (Ok(entries), "ok"),
            Ok(HotRead::NotReady) => {
                let r = from_postgres
                    .await
                    .map(|top| top.entries)
                    .map_err(|e| format!("hot cache not built and Postgres failed: {e}"));
                (r, "fallback")
            }
            Err(e) => (Err(format!("hot cache unavailable: {e}")), "error"),
        }
    };
    let status = if result.is_ok() { status } else { "error" };
    (result, started.elapsed(), status)
}

/// One row of the cold query: the settings the search ran with, then a result row (absent when
/// nothing matched, so the settings always come back).
#[derive(sqlx::FromRow)]
struct ColdRow {
    lexical_weight: f64,
    half_life_hours: f64,
    memory_id: Option<Uuid>,
    content: Option<String>,
    category: Option<String>,
    score: Option<f64>,
    relevance: Option<f64>,
    recency: Option<f64>,
    usefulness: Option<f64>,
    confidence: Option<f32>,
    access_frequency: Option<f64>,
    embedding: Option<pgvector::Vector>,
}

impl ColdRow {
    fn candidate(self) -> Option<ColdCandidate> {
        Some(ColdCandidate {
            id: self.memory_id?.to_string(),
            category: Category::parse(self.category.as_deref()?)?,
            content: self.content?,
            score: ScoreBreakdown {
                relevance: self.relevance?,
                recency: self.recency?,
                usefulness: self.usefulness?,
                confidence: f64::from(self.confidence?),
                access_frequency: self.access_frequency?,
                total: self.score?,
            },
            embedding: self.embedding.map(|v| v.to_vec()),
        })
    }
}

/// Access is not recorded here: only the memories packed into the answer count as read, and the
/// context core records them after packing (see `access`). Each memory's embedding comes with it
/// (a primary-key lookup per result row, under the same RLS): the near-copy rule compares them.
const COLD_SQL: &str = "SELECT p.lexical_weight, p.half_life_hours, s.memory_id, s.content, s.category, s.score,
       s.relevance, s.recency, s.usefulness, s.confidence, s.access_frequency, m.embedding
FROM (SELECT current_setting('ibex.lexical_weight')::float8 AS lexical_weight,
             current_setting('ibex.recency_half_life_hours')::float8 AS half_life_hours) p
LEFT JOIN LATERAL ibex_core.search_by_vector($1, $2, $3, $4, $5, p_record_access => false) s ON true
LEFT JOIN ibex_core.memories m ON m.org_id = $1 AND m.id = s.memory_id";

/// The cold candidates with the score Postgres computed, and the score parameters it used.
pub(super) type ColdOutcome = (Vec<ColdCandidate>, ScoreParams);

/// What the cold source searches for: the org and agent, the query's text and how many
/// candidates to ask for.
pub(super) struct ColdQuery {
    pub org: Uuid,
    pub agent: Uuid,
    pub text: String,
    pub k: usize,
}

pub(super) async fn cold_source(
    db: PgPool,
    query: ColdQuery,
    embedding: QueryEmbedding,
    deadline: tokio::time::Instant,
    statement_cap: Duration,
) -> Timed<ColdOutcome> {
    let started = Instant::now();
    let run = async {
        let (vector, _) = embedding.await?;
        let ColdQuery { org, agent, text, k } = query;
        let search = async move {
            let mut tx = db::begin_for_org_until(&db, org, deadline, statement_cap).await?;
            let rows: Vec<ColdRow> = sqlx::query_as(COLD_SQL)
                .bind(org)
                .bind(agent)
                .bind(&text)
                .bind(pgvector::Vector::from(vector.as_ref().clone()))
                .bind(k as i32)
                .fetch_all(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(rows)
        };
        let rows = to_completion(search)
            .await?
            .map_err(|e| format!("semantic search failed: {e}"))?;
        let params = rows.first().map_or_else(ScoreParams::default, |r| ScoreParams {
            half_life_hours: r.half_life_hours,
            lexical_weight: r.lexical_weight,
        });
        Ok((rows.into_iter().filter_map(ColdRow::candidate).collect(), params))
    };
    let result = run.await;
    let status = if result.is_ok() { "ok" } else { "error" };
    (result, started.elapsed(), status)
}
