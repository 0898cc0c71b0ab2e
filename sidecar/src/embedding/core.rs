//! The embedding core ("Infer" in TEI's terms): admission control, the cache in front, the model
//! pool behind. HTTP handlers call it today and gRPC handlers will; it knows neither.
//!
//! Two kinds of callers: the embedding endpoints (`Lane::Shared`: admitted up to `max_inflight`,
//! shared model instances only) and context assembly (`Lane::Context`: admitted by the context
//! core's own admission, served by the reserved instances first), so a flood of the first never
//! takes the capacity of the second.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use super::cache::{cache_key, EmbeddingCache};
use super::pool::{Lane, ModelPool};
use super::EmbeddingError;
use crate::metrics::Metrics;

pub struct CoreSettings {
    /// Requests admitted at once; the next one is refused, never queued without bound.
    pub max_inflight: usize,
    /// Texts per request.
    pub max_batch: usize,
    /// Characters per text.
    pub max_text_chars: usize,
}

/// One embedding request: one or more texts, and whether the caller needs token counts.
pub struct EmbedRequest {
    pub texts: Vec<String>,
    pub count_tokens: bool,
    /// The org the texts are embedded for: the cache is per org.
    pub org: Uuid,
    pub lane: Lane,
}

/// Vectors in input order, with which came from the cache.
#[derive(Debug)]
pub struct Embeddings {
    pub vectors: Vec<Vec<f32>>,
    /// For metrics and logs only: never sent to a client (whether a text is cached says that
    /// someone embedded it before).
    pub cached: Vec<bool>,
    /// Model tokens per text (after truncation), when asked for.
    pub token_counts: Option<Vec<usize>>,
    pub model: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Loading,
    Ready { model: String, workers: usize },
    Failed(String),
}

pub struct EmbeddingCore {
    /// Set once, after every instance is loaded and warmed up: "ready" means exactly this is set.
    model: OnceLock<Arc<ModelPool>>,
    failure: OnceLock<String>,
    cache: Arc<EmbeddingCache>,
    admission: Arc<Semaphore>,
    settings: CoreSettings,
    metrics: Arc<Metrics>,
}

/// An admitted request; frees its slot (and the in-flight gauge) when dropped, however the
/// request ends.
struct Admission {
    _permit: OwnedSemaphorePermit,
    metrics: Arc<Metrics>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.metrics.inflight.dec();
    }
}

impl EmbeddingCore {
    pub fn new(settings: CoreSettings, cache: EmbeddingCache, metrics: Arc<Metrics>) -> Self {
        Self {
            model: OnceLock::new(),
            failure: OnceLock::new(),
            cache: Arc::new(cache),
            admission: Arc::new(Semaphore::new(settings.max_inflight)),
            settings,
            metrics,
        }
    }

    pub fn readiness(&self) -> Readiness {
        if let Some(pool) = self.model.get() {
            Readiness::Ready {
                model: pool.model_id().to_string(),
                workers: pool.size(),
            }
        } else if let Some(reason) = self.failure.get() {
            Readiness::Failed(reason.clone())
        } else {
            Readiness::Loading
        }
    }

    pub fn max_batch(&self) -> usize {
        self.settings.max_batch
    }

    pub fn max_text_chars(&self) -> usize {
        self.settings.max_text_chars
    }

    /// Makes the core ready. The pool must already be warmed up.
    pub fn install(&self, pool: ModelPool) {
        if self.model.set(Arc::new(pool)).is_ok() {
            self.metrics.model_ready.set(1);
        }
    }

    pub fn mark_failed(&self, reason: String) {
        let _ = self.failure.set(reason);
    }

    /// Removes the org's cached embeddings of these texts (a session's GDPR deletion); answers
    /// how many entries existed. Failures are logged: the entries expire with the cache TTL.
    pub async fn forget_texts(&self, org: Uuid, texts: &[String]) -> usize {
        let Ok(pool) = self.pool() else {
            tracing::warn!(org = %org, "model not loaded: cached embeddings of deleted texts are left to expire");
            return 0;
        };
        let keys: Vec<String> = texts.iter().map(|t| cache_key(pool.model_id(), org, t)).collect();
        let mut removed = 0;
        for chunk in keys.chunks(500) {
            match self.cache.delete_many(chunk).await {
                Ok(n) => removed += n,
                Err(e) => tracing::warn!(org = %org, error = %e,
                    "removing cached embeddings of deleted texts failed; they expire with the cache TTL"),
            }
        }
        removed
    }

    /// Embeds the texts: cache hits are returned as stored, the misses go to the model in one
    /// batch (each distinct text once) and are written back.
    pub async fn embed(&self, request: EmbedRequest) -> Result<Embeddings, EmbeddingError> {
        let EmbedRequest {
            texts,
            count_tokens,
            org,
            lane,
        } = request;
        self.validate(&texts)?;
        let pool = self.pool()?;
        // Context calls were admitted by the context core; only the endpoints count here.
        let _admission = match lane {
            Lane::Shared => Some(self.admit()?),
            Lane::Context => None,
        };
        let model_id = pool.model_id();

        let keys: Vec<String> = texts.iter().map(|t| cache_key(model_id, org, t)).collect();
        let mut found = self.cache.get_many(&keys).await;
        let cached: Vec<bool> = found.iter().map(Option::is_some).collect();
        let hits = cached.iter().filter(|&&c| c).count();
        self.metrics.cache_hits.inc_by(hits as u64);
        self.metrics.cache_misses.inc_by((texts.len() - hits) as u64);

        // A text repeated within one request is embedded once.
        let mut distinct: Vec<usize> = Vec::new();
        let mut slot_of_text: HashMap<&str, usize> = HashMap::new();
        let mut miss_slots: Vec<(usize, usize)> = Vec::new();
        for (index, vector) in found.iter().enumerate() {
            if vector.is_none() {
                let slot = *slot_of_text.entry(texts[index].as_str()).or_insert_with(|| {
                    distinct.push(index);
                    distinct.len() - 1
                });
                miss_slots.push((index, slot));
            }
        }
        if !distinct.is_empty() {
            let batch: Vec<String> = distinct.iter().map(|&i| texts[i].clone()).collect();
            let computed = self.infer(&pool, batch, lane).await?;
            if computed.len() != distinct.len() {
                return Err(EmbeddingError::WorkerLost);
            }
            for &(index, slot) in &miss_slots {
                found[index] = Some(computed[slot].clone());
            }
            let entries: Vec<(String, Vec<f32>)> = distinct.iter().map(|&i| keys[i].clone()).zip(computed).collect();
            self.write_back(entries).await;
        }

        let token_counts = if count_tokens {
            Some(self.count_tokens(&pool, texts).await?)
        } else {
            None
        };
        let vectors = found
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .ok_or(EmbeddingError::WorkerLost)?;
        Ok(Embeddings {
            vectors,
            cached,
            token_counts,
            model: model_id.to_string(),
        })
    }

    /// The checks every request passes before any work: count, emptiness, length. Public so that
    /// handlers can refuse a bad request before charging it to the caller's rate limit.
    pub fn validate(&self, texts: &[String]) -> Result<(), EmbeddingError> {
        if texts.is_empty() {
            return Err(EmbeddingError::NoInput);
        }
        if texts.len() > self.settings.max_batch {
            return Err(EmbeddingError::TooManyTexts {
                len: texts.len(),
                max: self.settings.max_batch,
            });
        }
        if let Some(index) = texts.iter().position(|t| t.trim().is_empty()) {
            return Err(EmbeddingError::EmptyText { index });
        }
        // Bytes bound characters from above: only a long text pays for counting its characters.
        let max = self.settings.max_text_chars;
        if let Some((index, chars)) = texts
            .iter()
            .enumerate()
            .filter(|(_, t)| t.len() > max)
            .map(|(i, t)| (i, t.chars().count()))
            .find(|&(_, chars)| chars > max)
        {
            return Err(EmbeddingError::TextTooLong { index, chars, max });
        }
        Ok(())
    }

    fn pool(&self) -> Result<Arc<ModelPool>, EmbeddingError> {
        if let Some(pool) = self.model.get() {
            return Ok(Arc::clone(pool));
        }
        match self.failure.get() {
            Some(reason) => Err(EmbeddingError::LoadFailed(reason.clone())),
            None => Err(EmbeddingError::Loading),
        }
    }

    fn admit(&self) -> Result<Admission, EmbeddingError> {
        match Arc::clone(&self.admission).try_acquire_owned() {
            Ok(permit) => {
                self.metrics.inflight.inc();
                Ok(Admission {
                    _permit: permit,
                    metrics: Arc::clone(&self.metrics),
                })
            }
            Err(_) => {
                self.metrics.rejected_overloaded.inc();
                Err(EmbeddingError::Overloaded {
                    max_inflight: self.settings.max_inflight,
                })
            }
        }
    }

    async fn infer(
        &self,
        pool: &Arc<ModelPool>,
        texts: Vec<String>,
        lane: Lane,
    ) -> Result<Vec<Vec<f32>>, EmbeddingError> {
        let waiting = Instant::now();
        let lease = pool.checkout(lane).await?;
        self.metrics.queue_duration.observe(waiting.elapsed().as_secs_f64());
        let metrics = Arc::clone(&self.metrics);
        let result = run_blocking(move || {
            let started = Instant::now();
            let result = lease.embedder().embed_batch(&texts);
            drop(lease);
            metrics.inference_duration.observe(started.elapsed().as_secs_f64());
            metrics.inference_batch_size.observe(texts.len() as f64);
            result
        })
        .await?;
        Ok(result?)
    }

    async fn count_tokens(&self, pool: &ModelPool, texts: Vec<String>) -> Result<Vec<usize>, EmbeddingError> {
        let tokenizer = pool.tokenizer();
        let counts = run_blocking(move || {
            texts
                .iter()
                .map(|t| tokenizer.token_count(t))
                .collect::<Result<Vec<_>, _>>()
        })
        .await?;
        Ok(counts?)
    }

    /// Runs as its own task so the entries are stored even if the caller goes away meanwhile;
    /// awaited so that a second identical request right after this one is a hit.
    async fn write_back(&self, entries: Vec<(String, Vec<f32>)>) {
        if !self.cache.is_enabled() {
            return;
        }
        let cache = Arc::clone(&self.cache);
        if let Err(e) = tokio::spawn(async move { cache.put_many(&entries).await }).await {
            tracing::warn!(error = %e, "embedding cache write-back task failed");
        }
    }
}

/// Runs CPU work on the blocking pool so the async runtime never stalls. If the caller is gone
/// by the time a thread picks the work up, the work is skipped.
async fn run_blocking<T, F>(work: F) -> Result<T, EmbeddingError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (reply, answer) = oneshot::channel();
    tokio::task::spawn_blocking(move || {
        if reply.is_closed() {
            return;
        }
        let _ = reply.send(work());
    });
    // A closed channel without an answer means the work panicked (the panic is already logged).
    answer.await.map_err(|_| EmbeddingError::WorkerLost)
}
