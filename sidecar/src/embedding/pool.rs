//! A fixed set of loaded model instances, lent out one request at a time.
//!
//! One ONNX Runtime session runs one batch at a time, so parallelism comes from several instances
//! (`embed_workers`), each with `embed_threads` intra-op threads. A request waits asynchronously
//! for a free instance; waiting is cancellable, so a caller that goes away gives up its place
//! without any work being done for it.
//!
//! The instances form two lanes. The shared lane (`embed_workers`) serves everything; the
//! reserved lane (`context_embed_workers`) serves only context assembly's query embeddings, which
//! take whichever instance of either lane frees first. A flood of `/v1/embed*` batches can then
//! fill the shared lane's queue, but never stand between a context call and a model: before,
//! one query embedding waited behind every queued 512-text batch and each tenant's context
//! degraded.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use ibex_engine::{EmbedError, Embedder, EmbedderConfig};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::EmbeddingError;

pub struct PoolSettings {
    pub embedder: EmbedderConfig,
    pub workers: usize,
    /// Instances only context assembly uses (see the module docs).
    pub reserved: usize,
}

/// Who asks for an instance: the hot path (context assembly) or anyone else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lane {
    /// Context assembly's query embedding: the reserved instances, or a shared one.
    Context,
    /// The embedding endpoints: the shared instances only.
    Shared,
}

/// Instances of one lane, and one permit per idle one.
struct Instances {
    idle: Mutex<Vec<Arc<Embedder>>>,
    /// Holding a permit guarantees an instance in `idle`.
    available: Arc<Semaphore>,
}

impl Instances {
    fn new(instances: Vec<Arc<Embedder>>) -> Self {
        Self {
            available: Arc::new(Semaphore::new(instances.len())),
            idle: Mutex::new(instances),
        }
    }

    fn take(&self) -> Option<Arc<Embedder>> {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop()
    }

    fn give_back(&self, embedder: Arc<Embedder>) {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).push(embedder);
    }
}

pub struct ModelPool {
    shared: Instances,
    reserved: Instances,
    /// Any instance, for tokenizing: token counting does not touch the session, so it needs no
    /// exclusive lease.
    tokenizer: Arc<Embedder>,
    model_id: String,
    size: usize,
    reserved_size: usize,
}

impl ModelPool {
    /// Loads `workers` instances and runs one warm-up inference on each (the first run of a
    /// session allocates and plans; it should not land on a user's request). Blocking: call it
    /// from a blocking thread.
    pub fn load(settings: &PoolSettings) -> Result<Self, EmbedError> {
        let workers = settings.workers.max(1);
        let mut instances = Vec::with_capacity(workers + settings.reserved);
        for index in 0..workers + settings.reserved {
            let started = Instant::now();
            let embedder = Embedder::load(&settings.embedder)?;
            let loaded_ms = started.elapsed().as_millis() as u64;
            embedder.embed("warm-up: the quick brown fox jumps over the lazy dog")?;
            tracing::info!(
                instance = index,
                reserved = index >= workers,
                threads = settings.embedder.intra_threads,
                loaded_ms,
                warm_ms = started.elapsed().as_millis() as u64 - loaded_ms,
                "model instance ready"
            );
            instances.push(Arc::new(embedder));
        }
        let tokenizer = Arc::clone(&instances[0]);
        let model_id = tokenizer.model_id().to_string();
        let reserved = instances.split_off(workers);
        Ok(Self {
            reserved_size: reserved.len(),
            shared: Instances::new(instances),
            reserved: Instances::new(reserved),
            tokenizer,
            model_id,
            size: workers,
        })
    }

    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    /// Instances of the shared lane.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Instances reserved for context assembly.
    pub fn reserved_size(&self) -> usize {
        self.reserved_size
    }

    pub fn tokenizer(&self) -> Arc<Embedder> {
        Arc::clone(&self.tokenizer)
    }

    /// Waits for a free instance of the lane. Cancel-safe: dropping the future gives up the
    /// place in line (in both lines, for a context call).
    pub async fn checkout(self: &Arc<Self>, lane: Lane) -> Result<Lease, EmbeddingError> {
        let shared = Arc::clone(&self.shared.available);
        let (permit, reserved) = match lane {
            Lane::Shared => (shared.acquire_owned().await, false),
            Lane::Context => {
                let reserved = Arc::clone(&self.reserved.available);
                // Biased: a free reserved instance is taken before a shared one, leaving the
                // shared ones to the embedding endpoints.
                tokio::select! {
                    biased;
                    permit = reserved.acquire_owned() => (permit, true),
                    permit = shared.acquire_owned() => (permit, false),
                }
            }
        };
        let permit = permit.map_err(|_| EmbeddingError::WorkerLost)?;
        let lane = if reserved { &self.reserved } else { &self.shared };
        let embedder = lane.take().ok_or(EmbeddingError::WorkerLost)?;
        Ok(Lease {
            pool: Arc::clone(self),
            embedder: Some(embedder),
            reserved,
            _permit: permit,
        })
    }
}

/// Exclusive use of one instance; returned to the pool when dropped (also when the request that
/// took it is gone), before the permit is released.
pub struct Lease {
    pool: Arc<ModelPool>,
    embedder: Option<Arc<Embedder>>,
    /// Which lane the instance goes back to.
    reserved: bool,
    _permit: OwnedSemaphorePermit,
}

impl Lease {
    pub fn embedder(&self) -> &Embedder {
        self.embedder
            .as_deref()
            .expect("a lease holds its instance until dropped")
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(embedder) = self.embedder.take() {
            let lane = if self.reserved {
                &self.pool.reserved
            } else {
                &self.pool.shared
            };
            lane.give_back(embedder);
        }
    }
}
