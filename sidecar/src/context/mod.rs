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
//! * hot: the agent's hot set from Redis (`crate::hotcache`), scored against the query's
//!   embedding. If the cache lost its data (no `ready` marker) the set is read from Postgres
//!   instead (`fallback`, not degraded: nothing failed). Without a redis_url the set always comes
//!   from Postgres.
//! * cold: `ibex_core.search_by_vector(org, agent, query, vector, k, p_record_access =>
//!   false)`: semantic and lexical candidates scored in Postgres; their score is kept as it is.
//!   k grows with the call's memory budget (`ibex_engine::selection::cold_pool_size`).
//!
//! The query is the latest user message, embedded once per call by the sidecar's model (through
//! the Redis embedding cache) and shared by both sources (`sources`). Without one, hot and cold
//! are `skipped`. After packing, the memories actually packed are recorded as accessed,
//! fire-and-forget (`access`); a degraded answer records nothing.
//!
//! Degradation (goal 3.5): when hot or cold fails (Redis down, a database error, the model not
//! loaded, overload) or has not answered at the deadline, the answer is directive-only:
//! directive and conversation history, no memories, `degraded` set, and the reason naming each
//! source that failed. When the directive read fails and no copy is held, the answer has no
//! directive either and is degraded too. A hot or cold task still running at the deadline is aborted, and
//! its query was given the time left as its `statement_timeout`, so nothing keeps running for a
//! caller who is gone. The directive task finishes in the background (bounded by
//! `context_statement_timeout`) and still refreshes the directive cache.
//!
//! Then the pure part (`ibex_engine::context`): candidates merged by memory id (cold ones keep
//! the score Postgres computed; hot-only ones are scored with the same parameters), selected by
//! the question (`ibex_engine::selection`: relevance floors, small talk, near-copies), packed
//! greedily into the memory budget, history trimmed newest-first into what is left, sections
//! rendered in order. A request's [`MemoryControls`] adjust the budget and the floor for that
//! call, and `explain` reports what was left out.

mod access;
pub mod admission;
mod directives;
mod sources;

use std::sync::Arc;
use std::time::{Duration, Instant};

use ibex_engine::context::{
    self as engine, AssemblyInput, ColdCandidate, ContextError, ContextSettings, Directive, HotCandidate, LeftOut,
    ScoredCandidate, SelectionSettings,
};
use ibex_engine::embed::cosine_similarity;
use ibex_engine::score::ScoreParams;
use ibex_engine::selection;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::embedding::EmbeddingCore;
use crate::error::ApiError;
use crate::hotcache::{HotEntry, HotStore};
use crate::metrics::Metrics;
use sources::{cold_source, embed_query, hot_source, ColdQuery};

pub use access::AccessRecorder;
pub use admission::{Admission, AdmissionLoad, AdmissionSettings};
pub use directives::{DirectiveCache, DirectiveSet};

/// Roles a conversation may contain.
pub const ROLES: &[&str] = &["system", "developer", "user", "assistant", "tool"];

#[derive(Clone, Debug)]
pub struct EngineSettings {
    pub deadline: Duration,
    pub hot_cache_size: usize,
    /// Bounds of the cold pool, and the line size that turns a memory budget into a pool size.
    pub cold_k: usize,
    pub cold_k_max: usize,
    pub cold_tokens_per_memory: usize,
    pub statement_timeout: Duration,
    pub directive_cache_ttl: Duration,
    pub scoring: ContextSettings,
    pub admission: AdmissionSettings,
    /// Characters of all messages of one call, checked before any token is counted.
    pub max_context_chars: usize,
}

impl EngineSettings {
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self {
            deadline: config.context_deadline,
            hot_cache_size: config.hot_cache_size,
            cold_k: config.cold_k,
            cold_k_max: config.cold_k_max,
            cold_tokens_per_memory: config.cold_tokens_per_memory,
            statement_timeout: config.context_statement_timeout,
            directive_cache_ttl: config.directive_cache_ttl,
            max_context_chars: config.max_context_chars,
            admission: AdmissionSettings::per_core(
                config.context_slots_per_core,
                config.context_queue,
                config.context_queue_wait,
                config.context_deadline,
            ),
            scoring: ContextSettings {
                memory_share: config.memory_share,
                max_memory_tokens: config.max_memory_tokens,
                selection: SelectionSettings {
                    small_talk_relevance: config.small_talk_relevance,
                    min_relevance: config.min_relevance,
                    relative_relevance: config.relative_relevance,
                    near_copy_similarity: config.near_copy_similarity,
                },
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
    /// The caller's own limits for this call ([`MemoryControls`]).
    pub controls: MemoryControls,
}

/// Per-request control of the memories (AssembleContext's optional fields, the proxy's
/// `x-ibex-*` headers). Bounded by [`MemoryControls::validate`] before any work.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MemoryControls {
    /// At most this many memory tokens (0: no memories); never above the server's
    /// `max_memory_tokens`, which stays the cap.
    pub max_memory_tokens: Option<u32>,
    /// This call's absolute relevance floor, instead of the server's `min_relevance`; the
    /// server's `small_talk_relevance` is lowered to it when higher, so a caller asking for
    /// weaker matches gets them.
    pub min_relevance: Option<f64>,
    /// List the candidates that were considered and left out, with the reason.
    pub explain: bool,
}

/// Largest `max_memory_tokens` a request may name: more than any context window, so a caller
/// can say "no limit of mine" without knowing the server's cap.
pub const MAX_REQUEST_MEMORY_TOKENS: u32 = 1 << 20;

impl MemoryControls {
    pub fn validate(&self) -> Result<(), ApiError> {
        if let Some(n) = self.max_memory_tokens {
            if n > MAX_REQUEST_MEMORY_TOKENS {
                return Err(ApiError::InvalidRequest {
                    message: format!("max_memory_tokens is at most {MAX_REQUEST_MEMORY_TOKENS}, got {n}"),
                    details: Some(json!({ "max_memory_tokens": n, "max": MAX_REQUEST_MEMORY_TOKENS })),
                });
            }
        }
        if let Some(r) = self.min_relevance {
            if !(0.0..=1.0).contains(&r) {
                return Err(ApiError::InvalidRequest {
                    message: format!("min_relevance must be between 0 and 1, got {r}"),
                    details: Some(json!({ "min_relevance": r.to_string() })),
                });
            }
        }
        Ok(())
    }

    /// The server's settings with this call's limits applied.
    pub fn apply(&self, mut settings: ContextSettings) -> ContextSettings {
        if let Some(n) = self.max_memory_tokens {
            settings.max_memory_tokens = settings.max_memory_tokens.min(n as usize);
        }
        if let Some(r) = self.min_relevance {
            settings.selection.min_relevance = r;
            settings.selection.small_talk_relevance = settings.selection.small_talk_relevance.min(r);
        }
        settings
    }
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
    /// The caller asked which candidates were left out and why (`assembly.left_out`).
    pub explain: bool,
}

pub struct ContextEngine {
    /// Where the reads of an assembly go (directives, hot-cache rebuilds, semantic search): a
    /// replica when `read_database_url` is set, else the primary.
    reads: Option<PgPool>,
    hot: Arc<HotStore>,
    embed: Arc<EmbeddingCore>,
    directives: Arc<DirectiveCache>,
    access: AccessRecorder,
    admission: Admission,
    settings: EngineSettings,
    metrics: Arc<Metrics>,
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

impl ContextEngine {
    /// `db` is the primary (access counts are written there); `reads` serves the assembly's
    /// queries.
    pub fn new(
        db: Option<PgPool>,
        reads: Option<PgPool>,
        hot: Arc<HotStore>,
        embed: Arc<EmbeddingCore>,
        settings: EngineSettings,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            access: AccessRecorder::start(db, Arc::clone(&metrics)),
            admission: Admission::new(settings.admission, Arc::clone(&metrics)),
            reads,
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

    /// How busy admission is right now.
    pub fn admission_load(&self) -> AdmissionLoad {
        self.admission.load()
    }

    /// Assembles a context, or refuses at once with [`ApiError::Shed`] when the hot path is at
    /// capacity (`admission`). The deadline runs from arrival: time spent waiting for a slot is
    /// time the sources do not get.
    pub async fn assemble(&self, request: ContextRequest) -> Result<ContextAnswer, ApiError> {
        let arrived = tokio::time::Instant::now();
        let result = match self.admission.admit().await {
            Ok(_slot) => self.assemble_inner(request, arrived + self.settings.deadline).await,
            Err(shed) => Err(shed),
        };
        let outcome = match &result {
            Ok(a) if a.degraded.is_some() => "degraded",
            Ok(_) => "ok",
            Err(ApiError::Shed { .. }) => "shed",
            Err(_) => "error",
        };
        self.metrics.context_requests.with_label_values(&[outcome]).inc();
        if let Ok(a) = &result {
            self.metrics.context_duration.observe(a.total.as_secs_f64());
            let cost = engine::memory_cost(&a.assembly, &a.candidates);
            self.metrics.context_memory_tokens.observe(cost.tokens as f64);
            self.metrics.context_memories.observe(cost.count as f64);
            self.metrics
                .context_memory_source
                .with_label_values(&[cost.source_name()])
                .inc();
        }
        result
    }

    /// The answer for a call that was shed: no directive, no memories, the conversation trimmed
    /// to the model's budget as usual. Pure computation, no I/O: the proxy forwards with it
    /// rather than failing the caller's LLM call when context assembly is at capacity.
    pub async fn without_memories(&self, request: ContextRequest) -> Result<ContextAnswer, ApiError> {
        let started = Instant::now();
        validate_messages(&request.messages, self.settings.max_context_chars)?;
        let model = engine::resolve_model(&request.model).map_err(context_error)?;
        let (assembly, _, _, messages) = pack(
            model,
            request.max_output_tokens,
            Vec::new(),
            Vec::new(),
            request.messages,
            self.settings.scoring,
        )
        .await?;
        Ok(ContextAnswer {
            assembly,
            directives: Vec::new(),
            candidates: Vec::new(),
            messages,
            degraded: None,
            timings: vec![report("admission", started.elapsed(), "shed", String::new())],
            total: started.elapsed(),
            session_id: request.session_id,
            explain: request.controls.explain,
        })
    }

    async fn assemble_inner(
        &self,
        request: ContextRequest,
        deadline: tokio::time::Instant,
    ) -> Result<ContextAnswer, ApiError> {
        let started = Instant::now();
        validate_messages(&request.messages, self.settings.max_context_chars)?;
        request.controls.validate()?;
        let model = engine::resolve_model(&request.model).map_err(context_error)?;
        let output =
            engine::output_reserve(model, request.max_output_tokens.map(|n| n as usize)).map_err(context_error)?;
        let db = self.reads.clone().ok_or_else(|| ApiError::Unavailable {
            public: "context assembly needs the database, and none is configured".into(),
            detail: "no database_url".into(),
        })?;
        let scoring = request.controls.apply(self.settings.scoring);
        // The cold pool is sized by the most memory tokens this call can take: enough
        // candidates to fill it when they are all relevant.
        let memory_ceiling = engine::memory_token_ceiling(model, output, &scoring);
        let cold_k = selection::cold_pool_size(
            memory_ceiling,
            self.settings.cold_tokens_per_memory,
            self.settings.cold_k,
            self.settings.cold_k_max,
        );
        let query = engine::query_text(&request.messages).map(str::to_string);
        let skip_reason = match (&query, memory_ceiling) {
            (None, _) => "no user message to search with",
            (_, 0) => "no memory tokens for this call (max_memory_tokens)",
            _ => "",
        };
        let query = query.filter(|_| memory_ceiling > 0);
        let (org, agent) = (request.org, request.agent);

        let directive_task = {
            let (cache, db, timeout) = (
                Arc::clone(&self.directives),
                db.clone(),
                self.settings.statement_timeout,
            );
            tokio::spawn(async move { cache.get(db, org, agent, deadline, timeout).await })
        };
        let (hot_task, cold_task, embedding) = match &query {
            Some(q) => {
                self.metrics.context_query_embeddings.inc();
                let embedding = embed_query(Arc::clone(&self.embed), org, q.clone());
                let hot = tokio::spawn(hot_source(
                    Arc::clone(&self.hot),
                    db.clone(),
                    org,
                    agent,
                    deadline,
                    self.settings.clone(),
                ));
                let cold = tokio::spawn(cold_source(
                    db.clone(),
                    ColdQuery {
                        org,
                        agent,
                        text: q.clone(),
                        k: cold_k,
                    },
                    embedding.clone(),
                    deadline,
                    self.settings.statement_timeout,
                ));
                (Some(AbortOnDrop(hot)), Some(AbortOnDrop(cold)), Some(embedding))
            }
            None => (None, None, None),
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

        let mut hot_entries: Vec<HotEntry> = Vec::new();
        match hot_task {
            None => timings.push(skipped("hot", skip_reason)),
            Some(mut task) => match tokio::time::timeout_at(deadline, &mut task.0).await {
                Ok(Ok((Ok(entries), took, status))) => {
                    hot_entries = entries;
                    timings.push(report("hot", took, status, String::new()));
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
        let mut params = ScoreParams::default();
        match cold_task {
            None => timings.push(skipped("cold", skip_reason)),
            Some(mut task) => match tokio::time::timeout_at(deadline, &mut task.0).await {
                Ok(Ok((Ok((found, used)), took, status))) => {
                    (cold, params) = (found, used);
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

        // The cold search consumed the query's vector, so once it answered the vector is ready;
        // the hot memories are scored with it.
        let mut hot: Vec<HotCandidate> = Vec::new();
        if let (Some(embedding), true) = (embedding, failures.is_empty()) {
            match tokio::time::timeout_at(deadline, embedding).await {
                Ok(Ok((vector, took))) => {
                    timings.push(report("query_embedding", took, "ok", String::new()));
                    let now = chrono::Utc::now();
                    hot = hot_entries
                        .into_iter()
                        .map(|e| HotCandidate {
                            id: e.id.to_string(),
                            category: e.category,
                            semantic: Some(f64::from(cosine_similarity(&vector, &e.embedding))),
                            signals: e.signals(now),
                            content: e.content,
                            embedding: Some(e.embedding),
                        })
                        .collect();
                }
                Ok(Err(message)) => {
                    failures.push(format!("query_embedding: {message}"));
                    timings.push(report("query_embedding", started.elapsed(), "error", message));
                }
                Err(_) => {
                    let r = late("query_embedding");
                    failures.push(format!("query_embedding: {}", r.detail));
                    timings.push(r);
                }
            }
        }

        let degraded = (!failures.is_empty()).then(|| failures.join("; "));
        let candidates = if degraded.is_some() {
            Vec::new()
        } else {
            engine::merge_and_score(hot, cold, &params)
        };
        let directives: Vec<Directive> = directive_set.map(|s| s.directives.to_vec()).unwrap_or_default();
        let (assembly, directives, candidates, messages) = pack(
            model,
            request.max_output_tokens,
            directives,
            candidates,
            request.messages,
            scoring,
        )
        .await?;
        match &degraded {
            Some(reason) => tracing::warn!(%org, %agent, reason = %reason, "context degraded to directive-only"),
            None => self.access.record(
                org,
                assembly
                    .chosen
                    .iter()
                    .filter_map(|&(i, _)| Uuid::parse_str(&candidates[i].id).ok())
                    .collect(),
            ),
        }
        Ok(ContextAnswer {
            assembly,
            directives,
            candidates,
            messages,
            degraded,
            timings,
            total: started.elapsed(),
            session_id: request.session_id,
            explain: request.controls.explain,
        })
    }
}

/// A candidate that was considered and not packed, as `explain` reports it.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LeftOutMemory {
    pub memory_id: String,
    pub category: &'static str,
    pub score: f64,
    pub relevance: f64,
    pub tokens: usize,
    pub source: &'static str,
    pub reason: &'static str,
    /// The floor it missed, or the similarity to the copy kept.
    pub threshold: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub near_copy_of: Option<String>,
}

impl ContextAnswer {
    /// The candidates left out, in the order the assembly set them aside.
    pub fn left_out(&self) -> Vec<LeftOutMemory> {
        self.assembly
            .left_out
            .iter()
            .filter_map(|&(i, reason)| {
                let c = self.candidates.get(i)?;
                let (threshold, near_copy_of) = match reason {
                    LeftOut::SmallTalk { floor, .. }
                    | LeftOut::BelowMinRelevance { floor, .. }
                    | LeftOut::BelowRelativeFloor { floor, .. } => (floor, None),
                    LeftOut::NearCopy { of, similarity } => (similarity, self.candidates.get(of).map(|k| k.id.clone())),
                    LeftOut::Budget => (0.0, None),
                };
                Some(LeftOutMemory {
                    memory_id: c.id.clone(),
                    category: c.category.as_str(),
                    score: c.score.total,
                    relevance: c.score.relevance,
                    tokens: self.assembly.line_tokens.get(i).copied().unwrap_or(0),
                    source: c.source.as_str(),
                    reason: reason.code(),
                    threshold,
                    near_copy_of,
                })
            })
            .collect()
    }
}

/// What [`pack`] hands back: the assembly and the inputs it was computed from.
type Packed = (
    engine::Assembly,
    Vec<Directive>,
    Vec<ScoredCandidate>,
    Vec<(String, String)>,
);

/// The pure part (token counts, packing, rendering) on the blocking pool: counting tokens is CPU
/// work proportional to the conversation, and on the async runtime a large one would stall every
/// request sharing the worker thread (`/livez` included). The inputs are moved in and handed back.
async fn pack(
    model: &'static ibex_engine::models::ModelSpec,
    max_output_tokens: Option<u32>,
    directives: Vec<Directive>,
    candidates: Vec<ScoredCandidate>,
    messages: Vec<(String, String)>,
    settings: ContextSettings,
) -> Result<Packed, ApiError> {
    let packed = tokio::task::spawn_blocking(move || {
        engine::assemble(AssemblyInput {
            model,
            max_output_tokens: max_output_tokens.map(|n| n as usize),
            directives: &directives,
            candidates: &candidates,
            messages: &messages,
            settings: &settings,
        })
        .map(|assembly| (assembly, directives, candidates, messages))
    })
    .await
    .map_err(|e| ApiError::Internal(format!("context packing stopped: {e}")))?;
    packed.map_err(context_error)
}

fn report(name: &'static str, took: Duration, status: &'static str, detail: String) -> DependencyReport {
    DependencyReport {
        name,
        millis: millis(took),
        status,
        detail,
    }
}

fn skipped(name: &'static str, why: &str) -> DependencyReport {
    report(name, Duration::ZERO, "skipped", why.into())
}

/// The conversation's bounds: not empty, at most `max_chars` characters, known roles.
pub fn validate_messages(messages: &[(String, String)], max_chars: usize) -> Result<(), ApiError> {
    if messages.is_empty() {
        return Err(ApiError::invalid("messages must not be empty"));
    }
    // Bytes bound characters from above, so only a large conversation pays for counting them.
    let bytes: usize = messages.iter().map(|(_, content)| content.len()).sum();
    if bytes > max_chars {
        let chars: usize = messages.iter().map(|(_, content)| content.chars().count()).sum();
        if chars > max_chars {
            return Err(ApiError::PayloadTooLarge {
                message: format!(
                    "the messages have {chars} characters; at most {max_chars} are accepted (setting max_context_chars)"
                ),
                details: Some(json!({ "chars": chars, "max_context_chars": max_chars })),
            });
        }
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

/// A spawned source task that is aborted when the call stops waiting for it (deadline passed,
/// or the call itself dropped because the client went away): nothing runs for a caller who is
/// gone. Its query's own `statement_timeout` (the time left) ends the backend's side.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_validated() {
        assert_eq!(validate_messages(&[], 100).unwrap_err().code(), "invalid_request");
        let bad = vec![("robot".to_string(), "x".to_string())];
        assert!(validate_messages(&bad, 100).unwrap_err().to_string().contains("robot"));
        let good = vec![("system".into(), "s".into()), ("user".into(), "u".into())];
        assert!(validate_messages(&good, 100).is_ok());
        // Characters, not bytes: four two-byte characters fit a limit of four.
        let accents = vec![("user".to_string(), "éééé".to_string())];
        assert!(validate_messages(&accents, 4).is_ok());
        let long = vec![("user".to_string(), "x".repeat(5))];
        let error = validate_messages(&long, 4).unwrap_err();
        assert_eq!(error.code(), "payload_too_large");
        assert_eq!(error.grpc_code(), tonic::Code::InvalidArgument);
    }

    #[test]
    fn context_errors_are_invalid_requests_with_details() {
        let e = context_error(ContextError::UnknownModel("foo".into()));
        assert_eq!(e.code(), "invalid_request");
        assert_eq!(e.details().unwrap()["model"], "foo");
        assert_eq!(e.grpc_code(), tonic::Code::InvalidArgument);
    }
}
