//! Token buckets by key: the per-token rate limit of the embedding endpoints (keyed by API token
//! id), and the failed-authentication limit (keyed by source address and by token prefix, see
//! `crate::auth::failures`).
//!
//! Each token may embed `embed_rate_per_second` texts per second with bursts of up to
//! `embed_rate_burst` texts; a request costs one unit per text (a batch of 512 costs 512, a
//! cache hit costs as much as a miss: whether a text was cached must not change what a caller
//! may do, see `http::embed`). A refused request is answered 429 `rate_limited` with the time
//! until enough units are back (`Retry-After`).
//!
//! The buckets live in memory (per sidecar: N sidecars behind a balancer allow N times the rate
//! to a token that spreads its calls) in a bounded map. A bucket left alone for as long as it
//! takes to refill is full again, so it is dropped after that idle time: forgetting it loses
//! nothing. Past the capacity the least used buckets are evicted, which resets them to full;
//! only a caller holding more valid tokens than the capacity could gain from that.

use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use moka::future::Cache;
use uuid::Uuid;

use crate::error::ApiError;

/// Buckets kept at most (one per active key; about 100 bytes each).
const CAPACITY: u64 = 100_000;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateSettings {
    /// Units given back per second.
    pub per_second: f64,
    /// Units a full bucket holds.
    pub burst: usize,
}

impl RateSettings {
    /// The limit in words, for the refusal's details.
    fn describe(&self, unit: &str, settings: &str) -> String {
        format!(
            "{} {unit} per second, bursts of {} (settings {settings})",
            self.per_second, self.burst
        )
    }
}

struct Bucket {
    units: f64,
    refilled: Instant,
}

pub struct RateLimiter<K = Uuid> {
    buckets: Cache<K, Arc<Mutex<Bucket>>>,
    settings: RateSettings,
    /// The limit in words (what a unit is, which settings), for refusals.
    limit: String,
}

impl RateLimiter<Uuid> {
    /// The embedding endpoints' limit: a unit is a text, the key an API token id.
    pub fn new(settings: RateSettings) -> Self {
        Self::with_description(
            settings,
            settings.describe("texts", "embed_rate_per_second, embed_rate_burst"),
        )
    }
}

impl<K: Hash + Eq + Send + Sync + Clone + 'static> RateLimiter<K> {
    pub fn with_description(settings: RateSettings, limit: String) -> Self {
        let refill = Duration::from_secs_f64((settings.burst as f64 / settings.per_second).clamp(1.0, 86_400.0));
        Self {
            buckets: Cache::builder().max_capacity(CAPACITY).time_to_idle(refill).build(),
            settings,
            limit,
        }
    }

    /// A limiter whose refusals name `unit` and the `settings` that set it.
    pub fn described(settings: RateSettings, unit: &str, setting_names: &str) -> Self {
        Self::with_description(settings, settings.describe(unit, setting_names))
    }

    /// Takes `cost` units from the key's bucket, or refuses with the time until they are back.
    pub async fn take(&self, key: K, cost: usize) -> Result<(), ApiError> {
        self.settle(key, cost as f64, true).await
    }

    /// Whether `cost` units are there, without taking them: a check before work whose cost is
    /// only taken when it fails (a failed authentication).
    pub async fn check(&self, key: K, cost: usize) -> Result<(), ApiError> {
        self.settle(key, cost as f64, false).await
    }

    async fn settle(&self, key: K, cost: f64, take: bool) -> Result<(), ApiError> {
        let RateSettings { per_second, burst } = self.settings;
        let burst = burst as f64;
        let bucket = self
            .buckets
            .get_with(key, async move {
                Arc::new(Mutex::new(Bucket {
                    units: burst,
                    refilled: Instant::now(),
                }))
            })
            .await;
        let mut bucket = bucket.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let earned = now.duration_since(bucket.refilled).as_secs_f64() * per_second;
        bucket.units = (bucket.units + earned).min(burst);
        bucket.refilled = now;
        if bucket.units >= cost {
            if take {
                bucket.units -= cost;
            }
            return Ok(());
        }
        Err(ApiError::RateLimited {
            retry_after: Duration::from_secs_f64((cost - bucket.units) / per_second),
            limit: self.limit.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_token_gets_its_burst_then_the_rate_and_others_are_not_affected() {
        let limiter = RateLimiter::new(RateSettings {
            per_second: 10.0,
            burst: 3,
        });
        let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
        limiter.take(a, 2).await.unwrap();
        limiter.take(a, 1).await.unwrap();
        let refused = limiter.take(a, 1).await.unwrap_err();
        assert_eq!(refused.code(), "rate_limited");
        let ApiError::RateLimited { retry_after, .. } = refused else {
            unreachable!()
        };
        assert!(retry_after <= Duration::from_millis(100), "{retry_after:?}");
        limiter.take(b, 3).await.expect("another token has its own bucket");
        tokio::time::sleep(Duration::from_millis(120)).await;
        limiter.take(a, 1).await.expect("one unit back after 100 ms");
        assert!(limiter.take(a, 4).await.is_err(), "never more than the burst");
    }
}
