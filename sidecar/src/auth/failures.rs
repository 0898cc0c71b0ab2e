//! The failed-authentication limit: guessing tokens is slowed per source address and per token
//! prefix (the 8 characters a token shows, `ibx_` and 4 of its secret). A refused attempt costs
//! one unit of both buckets; a source or prefix whose bucket is empty is refused before any lookup
//! (429 / RESOURCE_EXHAUSTED with the time until it may try again). Valid tokens cost nothing, so
//! a busy caller with a good token is never slowed by this.

use crate::error::ApiError;
use crate::ratelimit::{RateLimiter, RateSettings};

pub struct FailedAttempts {
    by_source: RateLimiter<String>,
    by_prefix: RateLimiter<String>,
}

impl FailedAttempts {
    pub fn new(settings: RateSettings) -> Self {
        let names = "auth_failures_per_minute, auth_failure_burst";
        Self {
            by_source: RateLimiter::described(settings, "failed authentications from one address", names),
            by_prefix: RateLimiter::described(settings, "failed authentications with one token prefix", names),
        }
    }

    /// Refuses a source or prefix that has no failed attempt left.
    pub async fn check(&self, source: &str, prefix: &str) -> Result<(), ApiError> {
        self.by_source.check(source.to_string(), 1).await?;
        self.by_prefix.check(prefix.to_string(), 1).await
    }

    /// Counts a refused attempt against both.
    pub async fn record(&self, source: &str, prefix: &str) {
        // A bucket already empty stays empty; the refusal was answered by `check`.
        let _ = self.by_source.take(source.to_string(), 1).await;
        let _ = self.by_prefix.take(prefix.to_string(), 1).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn failures_are_limited_per_source_and_per_prefix() {
        let limit = FailedAttempts::new(RateSettings {
            per_second: 0.01,
            burst: 2,
        });
        for _ in 0..2 {
            limit.check("10.0.0.1", "ibx_aaaa").await.unwrap();
            limit.record("10.0.0.1", "ibx_aaaa").await;
        }
        assert_eq!(
            limit.check("10.0.0.1", "ibx_bbbb").await.unwrap_err().code(),
            "rate_limited",
            "the source is out of attempts, whatever prefix it tries"
        );
        assert_eq!(
            limit.check("10.0.0.2", "ibx_aaaa").await.unwrap_err().code(),
            "rate_limited",
            "the prefix is out of attempts, from any source"
        );
        limit
            .check("10.0.0.2", "ibx_bbbb")
            .await
            .expect("others are not affected");
    }
}
