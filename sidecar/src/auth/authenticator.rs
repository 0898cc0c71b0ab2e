//! What a request handler calls: the `authorization` header in, the caller's [`Principal`] out.
//! Valid answers are remembered for a few seconds (never past the token's expiry), so a busy
//! token costs no round trip; the revocation listener ([`super::revocation`]) drops them as soon
//! as the database announces a change, so a revoked token stops working at once, not when its
//! entry ages out. Refusals are never remembered.
//!
//! Where the answer comes from is the [`Backend`]: the validator in process (the hot path:
//! AssembleContext, the proxy, the embedding API) or the AuthService over gRPC (the REST API).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use moka::future::Cache;
use moka::Expiry;

use super::client::AuthClient;
use super::validator::{TokenValidator, Validated};
use super::{bearer, token_hash, Principal};
use crate::error::ApiError;
use crate::http::middleware::current_client_addr;

/// Principals remembered at most; past it the least useful are evicted (tokens in real use
/// come straight back on their next call).
const CACHE_CAPACITY: u64 = 10_000;

pub enum Backend {
    InProcess(Arc<TokenValidator>),
    Grpc(AuthClient),
}

impl Backend {
    async fn validate(&self, token: &str, source: &str) -> Result<Validated, ApiError> {
        match self {
            Self::InProcess(validator) => validator.validate(token, source).await,
            Self::Grpc(client) => client.validate(token, source).await,
        }
    }
}

/// A successful check and how long it is remembered: the cache TTL or the time left before the
/// token expires, whichever is shorter.
#[derive(Clone)]
struct Cached {
    principal: Principal,
    ttl: Duration,
}

/// Each entry lives for its own `ttl`, so a token about to expire is not served past its expiry.
struct PerEntryTtl;

impl Expiry<String, Cached> for PerEntryTtl {
    fn expire_after_create(&self, _hash: &String, cached: &Cached, _created_at: Instant) -> Option<Duration> {
        Some(cached.ttl)
    }
}

/// Answers remembered and asked, for the metrics and `make bench-api`.
#[derive(Default)]
pub struct CacheCounters {
    pub hits: std::sync::atomic::AtomicU64,
    pub misses: std::sync::atomic::AtomicU64,
}

pub struct Authenticator {
    backend: Backend,
    ttl: Duration,
    /// Principals by token hash; `None` when the TTL is 0.
    cache: Option<Cache<String, Cached>>,
    pub counters: CacheCounters,
}

impl Authenticator {
    pub fn new(backend: Backend, ttl: Duration) -> Self {
        let cache = (!ttl.is_zero()).then(|| {
            Cache::builder()
                .max_capacity(CACHE_CAPACITY)
                .expire_after(PerEntryTtl)
                .build()
        });
        Self {
            backend,
            ttl,
            cache,
            counters: CacheCounters::default(),
        }
    }

    /// Checks the `authorization` header value of a caller at `source` and returns who is calling.
    pub async fn authenticate_from(&self, authorization: Option<&str>, source: &str) -> Result<Principal, ApiError> {
        use std::sync::atomic::Ordering::Relaxed;
        let token = bearer(authorization)?;
        let hash = token_hash(token);
        if let Some(cache) = &self.cache {
            if let Some(cached) = cache.get(&hash).await {
                self.counters.hits.fetch_add(1, Relaxed);
                return Ok(cached.principal);
            }
        }
        self.counters.misses.fetch_add(1, Relaxed);
        let validated = self.backend.validate(token, source).await?;
        self.remember(hash, &validated.principal, validated.expires_at).await;
        Ok(validated.principal)
    }

    /// [`Self::authenticate_from`] for the HTTP client being served (its address is known to the
    /// request's middleware).
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, ApiError> {
        let source = current_client_addr().unwrap_or_else(|| "unknown".to_string());
        self.authenticate_from(authorization, &source).await
    }

    /// Forgets the answer for one token (its hash), or every answer (`None`).
    pub async fn forget(&self, hash: Option<&str>) {
        let Some(cache) = &self.cache else { return };
        match hash {
            Some(hash) => cache.invalidate(hash).await,
            None => cache.invalidate_all(),
        }
    }

    async fn remember(&self, hash: String, principal: &Principal, expires_at: Option<DateTime<Utc>>) {
        let Some(cache) = &self.cache else { return };
        let left = expires_at.map_or(self.ttl, |expires| (expires - Utc::now()).to_std().unwrap_or_default());
        let ttl = self.ttl.min(left);
        if ttl.is_zero() {
            return;
        }
        let cached = Cached {
            principal: principal.clone(),
            ttl,
        };
        cache.insert(hash, cached).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::failures::FailedAttempts;
    use crate::auth::generate_token;
    use crate::ratelimit::RateSettings;
    use uuid::Uuid;

    fn without_database() -> Authenticator {
        let failures = FailedAttempts::new(RateSettings {
            per_second: 100.0,
            burst: 100,
        });
        Authenticator::new(
            Backend::InProcess(Arc::new(TokenValidator::new(None, failures))),
            Duration::from_secs(60),
        )
    }

    fn principal() -> Principal {
        Principal {
            token_id: Uuid::nil(),
            org_id: Uuid::nil(),
            agent_id: None,
            user_id: None,
            scopes: vec!["proxy".into()],
        }
    }

    #[tokio::test]
    async fn a_remembered_check_expires_with_its_token() {
        let auth = without_database();
        let token = generate_token();
        let authorization = format!("Bearer {token}");
        auth.remember(
            token_hash(&token),
            &principal(),
            Some(Utc::now() + chrono::Duration::milliseconds(200)),
        )
        .await;
        assert_eq!(auth.authenticate(Some(&authorization)).await.unwrap(), principal());
        tokio::time::sleep(Duration::from_millis(400)).await;
        // Expired from the cache, and there is no database to ask.
        assert_eq!(
            auth.authenticate(Some(&authorization)).await.unwrap_err().code(),
            "unavailable"
        );
    }

    #[tokio::test]
    async fn a_pushed_revocation_is_forgotten_at_once() {
        let auth = without_database();
        let (one, two) = (generate_token(), generate_token());
        for token in [&one, &two] {
            auth.remember(token_hash(token), &principal(), None).await;
        }
        auth.forget(Some(&token_hash(&one))).await;
        assert!(auth.authenticate(Some(&format!("Bearer {one}"))).await.is_err());
        assert!(auth.authenticate(Some(&format!("Bearer {two}"))).await.is_ok());
        auth.forget(None).await;
        assert!(auth.authenticate(Some(&format!("Bearer {two}"))).await.is_err());
    }
}
