//! Context assembly: the one core behind gRPC `AssembleContext` and the chat completions proxy.
//!
//! Three sources run concurrently, each as its own task, under one deadline (`context_deadline`,
//! 40 ms) that starts when the request has been validated (after authentication):
//!
//! * directive: the agent's active directives, highest priority first (then name), read as the
//!   application role inside the org. Served from memory for `directive_cache_ttl` (5 s); past
//!   that they are read again, and if that read fails or misses the deadline the last copy read
//!   (up to 10 minutes old) is used and the timing says `stale`. This is what makes a
//!   directive-only answer possible while Postgres is slow.
//! * hot: the agent's hot set from Redis (`crate::hotcache`), plus the query's embedding from the
//!   sidecar's own model (through the Redis embedding cache) to compute each hot memory's cosine.
//!   If the cache lost its data (no `ready` marker) the set is read from Postgres instead
//!   (`fallback`, not degraded: nothing failed). Without a redis_url the set always comes from
//!   Postgres.
//! * cold: `ibex_core.search(org, agent, query, cold_k, p_record_access => true)`: semantic and
//!   lexical candidates scored in Postgres (which embeds the query itself); the memories it
//!   returns count as accessed.
//!
//! The query is the latest user message. Without one, hot and cold are `skipped`.
//!
//! Degradation (goal 3.5): when hot or cold fails (Redis down, a database error, the model not
//! loaded, overload) or has not answered at the deadline, the answer is directive-only:
//! directive and conversation history, no memories, `degraded` set, and the reason naming each
//! source that failed. When the directive read fails and no copy is held, the answer has no
//! directive either and is degraded too. Abandoned tasks finish in the background (their queries
//! are bounded by `context_statement_timeout`) and still refresh the directive cache.
//!
//! Then the pure part (`ibex_engine::context`): candidates merged by memory id and re-scored
//! with the full composite score, packed greedily into the memory budget, history trimmed
//! newest-first into what is left, sections rendered in order.

mod directives;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ibex_engine::context::{
    self as engine, AssemblyInput, ColdCandidate, ContextError, ContextSettings, Directive, HotCandidate,
    ScoredCandidate,
};
use ibex_engine::embed::cosine_similarity;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::db;
use crate::embedding::{EmbedRequest, EmbeddingCore};
use crate::error::ApiError;
use crate::hotcache::source::agent_top;
use crate::hotcache::{HotEntry, HotRead, HotStore};
use crate::metrics::Metrics;

pub use directives::{DirectiveCache, DirectiveSet};

/// Roles a conversation may contain.
pub const ROLES: &[&str] = &["system", "developer", "user", "assistant", "tool"];

#[derive(Clone, Debug)]
pub struct EngineSettings {
    pub deadline: Duration,
    pub hot_cache_size: usize,
    pub cold_k: usize,
    pub statement_timeout: Duration,
    pub directive_cache_ttl: Duration,
    pub scoring: ContextSettings,
}

impl EngineSettings {
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self {
            deadline: config.context_deadline,
            hot_cache_size: config.hot_cache_size,
            cold_k: config.cold_k,
            statement_timeout: config.context_statement_timeout,
            directive_cache_ttl: config.directive_cache_ttl,
            scoring: ContextSettings {
                memory_share: config.memory_share,
                max_memory_tokens: config.max_memory_tokens,
                half_life_hours: config.recency_half_life_hours,
                lexical_weight: config.lexical_weight,
            },
        }
    }
}

#[derive(Clone, Debug)]
pub struct ContextRequest {
    pub org: Uuid,
    pub agent: Uuid,
    pub model: String,
    /// (role, content), oldest first.
    pub messages: Vec<(String, String)>,
    pub max_output_tokens: Option<u32>,
    pub session_id: Option<String>,
}

/// How one source did.
#[derive(Clone, Debug, PartialEq)]
pub struct DependencyReport {
    pub name: &'static str,
    pub millis: f64,
    /// ok, cached, stale, fallback, postgres, timeout, error, skipped.
    pub status: &'static str,
    pub detail: String,
}

#[derive(Clone, Debug)]
pub struct ContextAnswer {
    pub assembly: engine::Assembly,
    pub directives: Vec<Directive>,
    pub candidates: Vec<ScoredCandidate>,
    pub messages: Vec<(String, String)>,
    /// The reason, when degraded.
    pub degraded: Option<String>,
    pub timings: Vec<DependencyReport>,
    pub total: Duration,
    pub session_id: Option<String>,
}

pub struct ContextEngine {
    db: Option<PgPool>,
    hot: Arc<HotStore>,
    embed: Arc<EmbeddingCore>,
    directives: Arc<DirectiveCache>,
    settings: EngineSettings,
    metrics: Arc<Metrics>,
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// What one source task hands back: its result and its own duration.
type Timed<T> = (Result<T, String>, Duration, &'static str);

impl ContextEngine {
    pub fn new(
        db: Option<PgPool>,
        hot: Arc<HotStore>,
        embed: Arc<EmbeddingCore>,
        settings: EngineSettings,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            db,
            hot,
            embed,
            directives: Arc::new(DirectiveCache::new(settings.directive_cache_ttl)),
            settings,
            metrics,
        }
    }

    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    pub async fn assemble(&self, request: ContextRequest) -> Result<ContextAnswer, ApiError> {
        let result = self.assemble_inner(request).await;
        let outcome = match &result {
            Ok(a) if a.degraded.is_some() => "degraded",
            Ok(_) => "ok",
            Err(_) => "error",
        };
        self.metrics.context_requests.with_label_values(&[outcome]).inc();
        if let Ok(a) = &result {
            self.metrics.context_duration.observe(a.total.as_secs_f64());
        }
        result
    }

    async fn assemble_inner(&self, request: ContextRequest) -> Result<ContextAnswer, ApiError> {
        let started = Instant::now();
        validate_messages(&request.messages)?;
        let model = engine::resolve_model(&request.model).map_err(context_error)?;
        engine::output_reserve(model, request.max_output_tokens.map(|n| n as usize)).map_err(context_error)?;
        let db = self.db.clone().ok_or_else(|| ApiError::Unavailable {
            public: "context assembly needs the database, and none is configured".into(),
            detail: "no database_url".into(),
        })?;
        let query = engine::query_text(&request.messages).map(str::to_string);
        let deadline = tokio::time::Instant::now() + self.settings.deadline;
        let (org, agent) = (request.org, request.agent);

        let directive_task = {
            let (cache, db, timeout) = (
                Arc::clone(&self.directives),
                db.clone(),
                self.settings.statement_timeout,
            );
            tokio::spawn(async move { cache.get(db, org, agent, deadline, timeout).await })
        };
        let (hot_task, cold_task) = match &query {
            Some(q) => {
                let hot = tokio::spawn(hot_source(
                    Arc::clone(&self.hot),
                    Arc::clone(&self.embed),
                    db.clone(),
                    org,
                    agent,
                    q.clone(),
                    self.settings.clone(),
                ));
                let cold = tokio::spawn(cold_source(db.clone(), org, agent, q.clone(), self.settings.clone()));
                (Some(hot), Some(cold))
            }
            None => (None, None),
        };

        let deadline_ms = self.settings.deadline.as_millis();
        let late = |name: &'static str| DependencyReport {
            name,
            millis: millis(started.elapsed()),
            status: "timeout",
            detail: format!("no answer within {deadline_ms} ms"),
        };
        let mut timings = Vec::with_capacity(4);
        let mut failures: Vec<String> = Vec::new();

        let (directive_set, directive_report) = match directive_task.await {
            Ok(outcome) => outcome,
            Err(e) => (
                None,
                DependencyReport {
                    name: "directive",
                    millis: millis(started.elapsed()),
                    status: "error",
                    detail: format!("task failed: {e}"),
                },
            ),
        };
        if directive_report.status == "timeout" || directive_report.status == "error" {
            failures.push(format!("directive: {}", directive_report.detail));
        }
        timings.push(directive_report);
        if let Some(set) = &directive_set {
            if !set.agent_exists {
                return Err(ApiError::ResourceNotFound(format!(
                    "agent {agent} does not exist in org {org}"
                )));
            }
        }

        let mut hot: Vec<HotCandidate> = Vec::new();
        match hot_task {
            None => timings.push(skipped("hot")),
            Some(task) => match tokio::time::timeout_at(deadline, task).await {
                Ok(Ok((Ok((entries, embed_ms, query_vector)), took, status))) => {
                    let now = chrono::Utc::now();
                    hot = entries
                        .into_iter()
                        .map(|e: HotEntry| HotCandidate {
                            id: e.id.to_string(),
                            category: e.category,
                            semantic: Some(f64::from(cosine_similarity(&query_vector, &e.embedding))),
                            signals: e.signals(now),
                            content: e.content,
                        })
                        .collect();
                    timings.push(report("hot", took, status, String::new()));
                    timings.push(report("query_embedding", embed_ms, "ok", String::new()));
                }
                Ok(Ok((Err(message), took, _))) => {
                    failures.push(format!("hot: {message}"));
                    timings.push(report("hot", took, "error", message));
                }
                Ok(Err(e)) => {
                    failures.push(format!("hot: task failed: {e}"));
                    timings.push(report("hot", started.elapsed(), "error", e.to_string()));
                }
                Err(_) => {
                    let r = late("hot");
                    failures.push(format!("hot: {}", r.detail));
                    timings.push(r);
                }
            },
        }

        let mut cold: Vec<ColdCandidate> = Vec::new();
        match cold_task {
            None => timings.push(skipped("cold")),
            Some(task) => match tokio::time::timeout_at(deadline, task).await {
                Ok(Ok((Ok(found), took, status))) => {
                    cold = found;
                    timings.push(report("cold", took, status, String::new()));
                }
                Ok(Ok((Err(message), took, _))) => {
                    failures.push(format!("cold: {message}"));
                    timings.push(report("cold", took, "error", message));
                }
                Ok(Err(e)) => {
                    failures.push(format!("cold: task failed: {e}"));
                    timings.push(report("cold", started.elapsed(), "error", e.to_string()));
                }
                Err(_) => {
                    let r = late("cold");
                    failures.push(format!("cold: {}", r.detail));
                    timings.push(r);
                }
            },
        }

        let degraded = (!failures.is_empty()).then(|| failures.join("; "));
        let candidates = if degraded.is_some() {
            Vec::new()
        } else {
            engine::merge_and_score(hot, cold, &self.settings.scoring)
        };
        let directives: Vec<Directive> = directive_set.map(|s| s.directives.to_vec()).unwrap_or_default();
        let assembly = engine::assemble(AssemblyInput {
            model,
            max_output_tokens: request.max_output_tokens.map(|n| n as usize),
            directives: &directives,
            candidates: &candidates,
            messages: &request.messages,
            settings: &self.settings.scoring,
        })
        .map_err(context_error)?;
        if let Some(reason) = &degraded {
            tracing::warn!(%org, %agent, reason = %reason, "context degraded to directive-only");
        }
        Ok(ContextAnswer {
            assembly,
            directives,
            candidates,
            messages: request.messages,
            degraded,
            timings,
            total: started.elapsed(),
            session_id: request.session_id,
        })
    }
}

fn report(name: &'static str, took: Duration, status: &'static str, detail: String) -> DependencyReport {
    DependencyReport {
        name,
        millis: millis(took),
        status,
        detail,
    }
}

fn skipped(name: &'static str) -> DependencyReport {
    report(name, Duration::ZERO, "skipped", "no user message to search with".into())
}

fn validate_messages(messages: &[(String, String)]) -> Result<(), ApiError> {
    if messages.is_empty() {
        return Err(ApiError::invalid("messages must not be empty"));
    }
    if let Some((index, (role, _))) = messages
        .iter()
        .enumerate()
        .find(|(_, (r, _))| !ROLES.contains(&r.as_str()))
    {
        return Err(ApiError::InvalidRequest {
            message: format!("message {index} has an unknown role {role:?}"),
            details: Some(json!({ "index": index, "roles": ROLES })),
        });
    }
    Ok(())
}

fn context_error(error: ContextError) -> ApiError {
    let details = match &error {
        ContextError::UnknownModel(model) => json!({ "model": model }),
        ContextError::OutputTooLarge { requested, window } => {
            json!({ "max_output_tokens": requested, "context_window": window })
        }
        ContextError::DirectivesTooLarge { directive_tokens, room } => {
            json!({ "directive_tokens": directive_tokens, "room": room })
        }
        ContextError::HistoryTooLarge { needed, available } => json!({ "needed": needed, "available": available }),
    };
    ApiError::InvalidRequest {
        message: error.to_string(),
        details: Some(details),
    }
}

/// Hot entries, the time the query embedding took, and the query vector.
type HotOutcome = (Vec<HotEntry>, Duration, Vec<f32>);

async fn hot_source(
    store: Arc<HotStore>,
    embed: Arc<EmbeddingCore>,
    db: PgPool,
    org: Uuid,
    agent: Uuid,
    query: String,
    settings: EngineSettings,
) -> Timed<HotOutcome> {
    let started = Instant::now();
    let read = async {
        if !store.is_enabled() {
            return agent_top(&db, org, agent, settings.hot_cache_size, settings.statement_timeout)
                .await
                .map(|top| (top.entries, "postgres"))
                .map_err(|e| format!("reading the hot set from Postgres: {e}"));
        }
        match store.read(org, agent).await {
            Ok(HotRead::Ready(entries)) => Ok((entries, "ok")),
            Ok(HotRead::NotReady) => agent_top(&db, org, agent, settings.hot_cache_size, settings.statement_timeout)
                .await
                .map(|top| (top.entries, "fallback"))
                .map_err(|e| format!("hot cache not built and Postgres failed: {e}")),
            Err(e) => Err(format!("hot cache unavailable: {e}")),
        }
    };
    let embedding = async {
        let t = Instant::now();
        let out = embed
            .embed(EmbedRequest {
                texts: vec![query],
                count_tokens: false,
            })
            .await;
        (out, t.elapsed())
    };
    let (read, (embedded, embed_took)) = tokio::join!(read, embedding);
    let result = match (read, embedded) {
        (Ok((entries, status)), Ok(mut out)) => match out.vectors.pop() {
            Some(vector) => return (Ok((entries, embed_took, vector)), started.elapsed(), status),
            None => Err("the embedding core answered no vector".to_string()),
        },
        (Err(e), _) => Err(e),
        (_, Err(e)) => Err(format!("query embedding failed: {e}")),
    };
    (result, started.elapsed(), "error")
}

type ColdRow = (Uuid, String, String, f64, f64, f64, f32, f64);

async fn cold_source(
    db: PgPool,
    org: Uuid,
    agent: Uuid,
    query: String,
    settings: EngineSettings,
) -> Timed<Vec<ColdCandidate>> {
    let started = Instant::now();
    let run = async {
        let mut tx = db::begin_for_org_with_timeout(&db, org, settings.statement_timeout).await?;
        let rows: Vec<ColdRow> = sqlx::query_as(
            "SELECT memory_id, content, category, relevance, recency, usefulness, confidence, access_frequency
             FROM ibex_core.search($1, $2, $3, $4, p_record_access => true)",
        )
        .bind(org)
        .bind(agent)
        .bind(&query)
        .bind(settings.cold_k as i32)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok::<_, sqlx::Error>(rows)
    };
    let result = run
        .await
        .map(|rows| {
            rows.into_iter()
                .filter_map(
                    |(id, content, category, relevance, recency, usefulness, confidence, access_frequency)| {
                        Some(ColdCandidate {
                            id: id.to_string(),
                            category: engine::Category::parse(&category)?,
                            content,
                            relevance,
                            recency,
                            usefulness,
                            confidence: f64::from(confidence),
                            access_frequency,
                        })
                    },
                )
                .collect()
        })
        .map_err(|e| format!("semantic search failed: {e}"));
    (result, started.elapsed(), "ok")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_validated() {
        assert_eq!(validate_messages(&[]).unwrap_err().code(), "invalid_request");
        let bad = vec![("robot".to_string(), "x".to_string())];
        assert!(validate_messages(&bad).unwrap_err().to_string().contains("robot"));
        let good = vec![("system".into(), "s".into()), ("user".into(), "u".into())];
        assert!(validate_messages(&good).is_ok());
    }

    #[test]
    fn context_errors_are_invalid_requests_with_details() {
        let e = context_error(ContextError::UnknownModel("foo".into()));
        assert_eq!(e.code(), "invalid_request");
        assert_eq!(e.details().unwrap()["model"], "foo");
        assert_eq!(e.grpc_code(), tonic::Code::InvalidArgument);
    }
}
