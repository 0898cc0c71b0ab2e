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
//!
//! The wait also adapts to how long calls take now: a call may wait only as long as the deadline
//! leaves after a slow recent call (the 95th percentile of the last [`RECENT`] slot holds). At
//! light load that is the whole `context_queue_wait`; near saturation, when a call itself takes
//! most of the deadline, waiting would only push admitted calls past it, so the excess is shed
//! sooner instead.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
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
    /// The call's deadline, which the wait counts against.
    pub deadline: Duration,
}

impl AdmissionSettings {
    /// `per_core` slots for each core the process may use (at least one slot).
    pub fn per_core(per_core: usize, queue: usize, max_wait: Duration, deadline: Duration) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self {
            slots: (per_core * cores).max(1),
            queue,
            max_wait,
            deadline,
        }
    }

    /// How long a call may wait for a slot: `max_wait`, cut to what the deadline leaves after a
    /// slow recent call (nothing, when such a call alone takes the whole deadline).
    fn wait_budget(&self, slow_hold: Option<Duration>) -> Duration {
        match slow_hold {
            Some(slow) => self.max_wait.min(self.deadline.saturating_sub(slow)),
            None => self.max_wait,
        }
    }
}

/// Slot holds remembered for the wait budget.
const RECENT: usize = 128;
/// Holds needed before they are trusted (until then a caller may wait `max_wait`).
const MIN_SAMPLES: usize = 16;

/// The last [`RECENT`] slot holds, in microseconds (a ring).
#[derive(Default)]
struct RecentHolds {
    micros: Vec<u32>,
    next: usize,
}

impl RecentHolds {
    fn record(&mut self, held: Duration) {
        let micros = u32::try_from(held.as_micros()).unwrap_or(u32::MAX);
        if self.micros.len() < RECENT {
            self.micros.push(micros);
        } else {
            self.micros[self.next] = micros;
        }
        self.next = (self.next + 1) % RECENT;
    }

    /// The 95th percentile, once there are enough holds to tell.
    fn slow(&self) -> Option<Duration> {
        if self.micros.len() < MIN_SAMPLES {
            return None;
        }
        let mut sorted = self.micros.clone();
        let rank = (sorted.len() * 95).div_ceil(100) - 1;
        let (_, slow, _) = sorted.select_nth_unstable(rank);
        Some(Duration::from_micros(u64::from(*slow)))
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
    holds: Arc<Mutex<RecentHolds>>,
    metrics: Arc<Metrics>,
}

/// A slot, held for the whole assembly; freed when dropped, however the call ends (including a
/// client that went away), and its hold time is recorded.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    taken: Instant,
    holds: Arc<Mutex<RecentHolds>>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        // A poisoned lock only means another slot's record panicked: the ring is still valid.
        let mut holds = self.holds.lock().unwrap_or_else(|e| e.into_inner());
        holds.record(self.taken.elapsed());
    }
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
            holds: Arc::new(Mutex::new(RecentHolds::default())),
            metrics,
        }
    }

    fn slot(&self, permit: OwnedSemaphorePermit) -> Slot {
        Slot {
            _permit: permit,
            taken: Instant::now(),
            holds: Arc::clone(&self.holds),
        }
    }

    /// How long the next caller may wait for a slot, now.
    fn wait_budget(&self) -> Duration {
        let slow = self.holds.lock().unwrap_or_else(|e| e.into_inner()).slow();
        self.settings.wait_budget(slow)
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
            return Ok(self.slot(permit));
        }
        let budget = self.wait_budget();
        if budget.is_zero() {
            return Err(self.shed());
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.settings.queue {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(self.shed());
        }
        self.metrics.context_waiting.inc();
        let guard = Waiting(self);
        let started = Instant::now();
        let acquired = tokio::time::timeout(budget, Arc::clone(&self.slots).acquire_owned()).await;
        drop(guard);
        match acquired {
            Ok(Ok(permit)) => {
                self.metrics.context_admission.with_label_values(&["queued"]).inc();
                self.metrics.context_queue_wait.observe(started.elapsed().as_secs_f64());
                Ok(self.slot(permit))
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
            deadline: Duration::from_secs(120),
        };
        Admission::new(settings, Arc::new(Metrics::new().unwrap()))
    }

    #[test]
    fn the_wait_shrinks_as_calls_take_more_of_the_deadline() {
        let settings = AdmissionSettings {
            slots: 2,
            queue: 8,
            max_wait: Duration::from_millis(5),
            deadline: Duration::from_millis(40),
        };
        let mut holds = RecentHolds::default();
        for _ in 0..MIN_SAMPLES - 1 {
            holds.record(Duration::from_millis(39));
        }
        assert_eq!(holds.slow(), None, "too few holds to tell");
        assert_eq!(settings.wait_budget(holds.slow()), Duration::from_millis(5));
        // 95 fast holds and 5 slow ones: the 95th percentile is still a fast one.
        let mut holds = RecentHolds::default();
        for i in 0..100 {
            holds.record(Duration::from_millis(if i % 20 == 0 { 39 } else { 20 }));
        }
        assert_eq!(holds.slow(), Some(Duration::from_millis(20)));
        assert_eq!(
            settings.wait_budget(holds.slow()),
            Duration::from_millis(5),
            "light load: the whole wait"
        );
        for _ in 0..RECENT {
            holds.record(Duration::from_millis(37));
        }
        assert_eq!(holds.micros.len(), RECENT, "a ring: the oldest holds leave");
        assert_eq!(
            settings.wait_budget(holds.slow()),
            Duration::from_millis(3),
            "what the deadline leaves"
        );
        for _ in 0..RECENT {
            holds.record(Duration::from_millis(45));
        }
        assert_eq!(
            settings.wait_budget(holds.slow()),
            Duration::ZERO,
            "no time left to wait"
        );
    }

    #[tokio::test]
    async fn with_no_time_left_to_wait_the_excess_is_shed_at_once() {
        let settings = AdmissionSettings {
            slots: 1,
            queue: 8,
            max_wait: Duration::from_secs(60),
            deadline: Duration::from_millis(1),
        };
        let a = Admission::new(settings, Arc::new(Metrics::new().unwrap()));
        for _ in 0..MIN_SAMPLES {
            let slot = a.admit().await.unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
            drop(slot);
        }
        let _held = a.admit().await.unwrap();
        let started = Instant::now();
        let refused = a.admit().await.err().expect("shed");
        assert_eq!(refused.grpc_code(), tonic::Code::ResourceExhausted);
        assert!(started.elapsed() < Duration::from_secs(1), "refused without waiting");
        assert_eq!(a.waiting.load(Ordering::Acquire), 0);
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
