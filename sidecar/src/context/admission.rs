//! Admission to the hot path: a fixed number of context assemblies run at once, a few more wait
//! briefly, the rest are refused at once.
//!
//! Without it, every caller starts its three sources immediately; past what the machine can
//! finish within the deadline, all of them miss it together and every answer degrades (measured:
//! 4 parallel callers on 2 cores, 95% directive-only). Refusing the excess keeps the admitted
//! calls inside the deadline, so goodput stays at capacity instead of collapsing, and the refused
//! caller learns it at once (RESOURCE_EXHAUSTED with a retry hint) instead of 40 ms later with a
//! degraded answer. Degraded answers are then left for real dependency failures.
//!
//! Sizing: `context_slots_per_core` slots per core (default 1), a queue of `context_queue`
//! waiting calls, and a waiting call gives up after `context_queue_wait`, because a call that
//! waited longer could not finish within its deadline anyway (the wait counts against the
//! deadline). One slot per core because every call embeds its question (about 10 ms of one core,
//! one model worker per core) and Postgres' search takes most of the rest: with more calls in
//! flight than cores, each takes longer, not more of them finish, and past the deadline they all
//! degrade. Measured with `make bench-context-load` (2 cores, 100k memories, open loop): at 1 slot
//! per core goodput at 300% of capacity stays at 1.1x capacity with admitted p99 under 40 ms; at 2
//! per core it falls to 0.3x with p99 184 ms, at 4 per core to 0 (docs/ARCHITECTURE.md has the
//! table). A machine with a different balance re-measures and sets the setting.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;
use crate::metrics::Metrics;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdmissionSettings {
    /// Calls assembled at once.
    pub slots: usize,
    /// Calls that may wait for a slot; the next one is refused at once.
    pub queue: usize,
    /// Longest wait for a slot.
    pub max_wait: Duration,
}

impl AdmissionSettings {
    /// `per_core` slots for each core the process may use (at least one slot).
    pub fn per_core(per_core: usize, queue: usize, max_wait: Duration) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self {
            slots: (per_core * cores).max(1),
            queue,
            max_wait,
        }
    }
}

#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct AdmissionLoad {
    pub slots: usize,
    pub in_use: usize,
    pub waiting: usize,
}

pub struct Admission {
    slots: Arc<Semaphore>,
    waiting: AtomicUsize,
    settings: AdmissionSettings,
    metrics: Arc<Metrics>,
}

/// A slot, held for the whole assembly; freed when dropped, however the call ends (including a
/// client that went away).
pub struct Slot {
    _permit: OwnedSemaphorePermit,
}

/// Leaves the waiting count when the wait ends, however it ends (a cancelled call included).
struct Waiting<'a>(&'a Admission);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::AcqRel);
        self.0.metrics.context_waiting.dec();
    }
}

impl Admission {
    pub fn new(settings: AdmissionSettings, metrics: Arc<Metrics>) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(settings.slots.max(1))),
            waiting: AtomicUsize::new(0),
            settings,
            metrics,
        }
    }

    pub fn settings(&self) -> AdmissionSettings {
        self.settings
    }

    /// Slots in use and calls waiting, now (for `/readyz`: a saturated hot path is still ready,
    /// it sheds; the numbers say how busy it is).
    pub fn load(&self) -> AdmissionLoad {
        AdmissionLoad {
            slots: self.settings.slots.max(1),
            in_use: self
                .settings
                .slots
                .max(1)
                .saturating_sub(self.slots.available_permits()),
            waiting: self.waiting.load(Ordering::Acquire),
        }
    }

    /// A slot at once, or after a bounded wait; otherwise [`ApiError::Shed`].
    pub async fn admit(&self) -> Result<Slot, ApiError> {
        if let Ok(permit) = Arc::clone(&self.slots).try_acquire_owned() {
            self.metrics.context_admission.with_label_values(&["admitted"]).inc();
            return Ok(Slot { _permit: permit });
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.settings.queue {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(self.shed());
        }
        self.metrics.context_waiting.inc();
        let guard = Waiting(self);
        let started = Instant::now();
        let acquired = tokio::time::timeout(self.settings.max_wait, Arc::clone(&self.slots).acquire_owned()).await;
        drop(guard);
        match acquired {
            Ok(Ok(permit)) => {
                self.metrics.context_admission.with_label_values(&["queued"]).inc();
                self.metrics.context_queue_wait.observe(started.elapsed().as_secs_f64());
                Ok(Slot { _permit: permit })
            }
            _ => Err(self.shed()),
        }
    }

    fn shed(&self) -> ApiError {
        self.metrics.context_admission.with_label_values(&["shed"]).inc();
        // A slot frees within about one call's time; the longest wait is a fair estimate.
        ApiError::Shed {
            retry_after: self.settings.max_wait.max(Duration::from_millis(5)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admission(slots: usize, queue: usize) -> Admission {
        let settings = AdmissionSettings {
            slots,
            queue,
            max_wait: Duration::from_secs(60),
        };
        Admission::new(settings, Arc::new(Metrics::new().unwrap()))
    }

    #[tokio::test]
    async fn full_slots_and_full_queue_shed_at_once() {
        let a = Arc::new(admission(1, 1));
        let held = a.admit().await.expect("a free slot");
        // One waiter fills the queue...
        let waiter = {
            let a = Arc::clone(&a);
            tokio::spawn(async move { a.admit().await.map(|_| ()) })
        };
        while a.waiting.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        // ...so the next call is refused without waiting.
        let refused = a.admit().await.err().expect("shed");
        assert_eq!(refused.grpc_code(), tonic::Code::ResourceExhausted);
        drop(held);
        waiter.await.unwrap().expect("the waiter gets the freed slot");
        let text = a.metrics.render().unwrap();
        assert!(
            text.contains("ibex_context_admission_total{outcome=\"shed\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("ibex_context_admission_total{outcome=\"queued\"} 1"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_cancelled_waiter_leaves_the_queue() {
        let a = Arc::new(admission(1, 1));
        let _held = a.admit().await.unwrap();
        let waiter = {
            let a = Arc::clone(&a);
            tokio::spawn(async move { a.admit().await.map(|_| ()) })
        };
        while a.waiting.load(Ordering::Acquire) == 0 {
            tokio::task::yield_now().await;
        }
        waiter.abort();
        let _ = waiter.await;
        assert_eq!(a.waiting.load(Ordering::Acquire), 0);
    }
}
