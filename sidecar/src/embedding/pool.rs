//! A fixed set of loaded model instances, lent out one request at a time.
//!
//! One ONNX Runtime session runs one batch at a time, so parallelism comes from several instances
//! (`embed_workers`), each with `embed_threads` intra-op threads. A request waits asynchronously
//! for a free instance; waiting is cancellable, so a caller that goes away gives up its place
//! without any work being done for it.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use ibex_engine::{EmbedError, Embedder, EmbedderConfig};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::EmbeddingError;

pub struct PoolSettings {
    pub embedder: EmbedderConfig,
    pub workers: usize,
}

pub struct ModelPool {
    idle: Mutex<Vec<Arc<Embedder>>>,
    /// One permit per idle instance; holding a permit guarantees an instance in `idle`.
    available: Arc<Semaphore>,
    /// Any instance, for tokenizing: token counting does not touch the session, so it needs no
    /// exclusive lease.
    tokenizer: Arc<Embedder>,
    model_id: String,
    size: usize,
}

impl ModelPool {
    /// Loads `workers` instances and runs one warm-up inference on each (the first run of a
    /// session allocates and plans; it should not land on a user's request). Blocking: call it
    /// from a blocking thread.
    pub fn load(settings: &PoolSettings) -> Result<Self, EmbedError> {
        let workers = settings.workers.max(1);
        let mut instances = Vec::with_capacity(workers);
        for index in 0..workers {
            let started = Instant::now();
            let embedder = Embedder::load(&settings.embedder)?;
            let loaded_ms = started.elapsed().as_millis() as u64;
            embedder.embed("warm-up: the quick brown fox jumps over the lazy dog")?;
            tracing::info!(
                instance = index,
                threads = settings.embedder.intra_threads,
                loaded_ms,
                warm_ms = started.elapsed().as_millis() as u64 - loaded_ms,
                "model instance ready"
            );
            instances.push(Arc::new(embedder));
        }
        let tokenizer = Arc::clone(&instances[0]);
        let model_id = tokenizer.model_id().to_string();
        Ok(Self {
            idle: Mutex::new(instances),
            available: Arc::new(Semaphore::new(workers)),
            tokenizer,
            model_id,
            size: workers,
        })
    }

    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    pub fn size(&self) -> usize {
        self.size
    }

    pub fn tokenizer(&self) -> Arc<Embedder> {
        Arc::clone(&self.tokenizer)
    }

    /// Waits for a free instance. Cancel-safe: dropping the future gives up the place in line.
    pub async fn checkout(self: &Arc<Self>) -> Result<Lease, EmbeddingError> {
        let permit = Arc::clone(&self.available)
            .acquire_owned()
            .await
            .map_err(|_| EmbeddingError::WorkerLost)?;
        let embedder = self
            .idle
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .ok_or(EmbeddingError::WorkerLost)?;
        Ok(Lease {
            pool: Arc::clone(self),
            embedder: Some(embedder),
            _permit: permit,
        })
    }
}

/// Exclusive use of one instance; returned to the pool when dropped (also when the request that
/// took it is gone), before the permit is released.
pub struct Lease {
    pool: Arc<ModelPool>,
    embedder: Option<Arc<Embedder>>,
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
            self.pool.idle.lock().unwrap_or_else(|p| p.into_inner()).push(embedder);
        }
    }
}
