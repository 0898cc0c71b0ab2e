//! API tokens: their format, how they are created, and checking them.
//!
//! A token is `ibx_` followed by 32 base62 characters drawn from the thread-local CSPRNG (ChaCha,
//! seeded from the OS): about 190 bits. Only its SHA-256 (lowercase hex) is stored, in
//! `api_tokens.token_hash`, with the first 8 characters (`ibx_` and 4 secret ones) as
//! `token_prefix` so people can tell their tokens apart.
//!
//! Checking happens before the org is known, so the lookup goes through the SECURITY DEFINER
//! function `ibex_core.authenticate_token(hash)` (migration 0008), which returns the token's org,
//! agent, scopes and state and moves `last_used_at` at most once a minute. Successful checks are
//! remembered in-process for `auth_cache_ttl` (10 s by default, never past the token's expiry):
//! the hot path then costs no database round trip, and a revocation takes effect within that
//! time on every sidecar.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ibex_engine::content::sha256_hex;
use moka::future::Cache;
use moka::Expiry;
use rand::distr::Alphanumeric;
use rand::Rng;
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::ApiError;

pub const TOKEN_PREFIX: &str = "ibx_";
pub const SECRET_LEN: usize = 32;
/// Characters of a token kept in `token_prefix`.
pub const DISPLAY_PREFIX_LEN: usize = 8;
/// The scopes `api_tokens.scopes` accepts (the CHECK constraint of migration 0002, with `embed`
/// added by migration 0012).
pub const SCOPES: &[&str] = &[
    "admin",
    "memories:read",
    "memories:write",
    "agents:read",
    "agents:write",
    "directives:read",
    "directives:write",
    "sessions:read",
    "sessions:write",
    "tokens:manage",
    "analytics:read",
    "context:assemble",
    "proxy",
    "embed",
];
pub const SCOPE_ADMIN: &str = "admin";
pub const SCOPE_CONTEXT: &str = "context:assemble";
pub const SCOPE_PROXY: &str = "proxy";
/// The embedding endpoints (`/v1/embed`, `/v1/embed/batch`, `/v1/embeddings`). `admin` implies it,
/// as it implies every scope; `context:assemble` and `proxy` do not (their embeddings happen
/// inside the sidecar, on the hot path's own capacity).
pub const SCOPE_EMBED: &str = "embed";
/// Principals remembered at most; past it the least useful are evicted (tokens in real use
/// come straight back on their next call).
const CACHE_CAPACITY: u64 = 10_000;

/// A new token, never stored: show it once.
pub fn generate_token() -> String {
    let secret: String = rand::rng()
        .sample_iter(Alphanumeric)
        .take(SECRET_LEN)
        .map(char::from)
        .collect();
    format!("{TOKEN_PREFIX}{secret}")
}

pub fn token_hash(token: &str) -> String {
    sha256_hex(token.as_bytes())
}

pub fn display_prefix(token: &str) -> &str {
    &token[..DISPLAY_PREFIX_LEN.min(token.len())]
}

/// Shape check before any lookup: `ibx_` + 32 ASCII alphanumerics.
pub fn well_formed(token: &str) -> bool {
    token.len() == TOKEN_PREFIX.len() + SECRET_LEN
        && token.starts_with(TOKEN_PREFIX)
        && token[TOKEN_PREFIX.len()..].bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Checks a scope list against the allowed names; returns them trimmed and de-duplicated.
pub fn parse_scopes(text: &str) -> Result<Vec<String>, String> {
    let mut scopes: Vec<String> = Vec::new();
    for scope in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if !SCOPES.contains(&scope) {
            return Err(format!("unknown scope {scope:?}; known scopes: {}", SCOPES.join(", ")));
        }
        if !scopes.iter().any(|s| s == scope) {
            scopes.push(scope.to_string());
        }
    }
    if scopes.is_empty() {
        return Err("give at least one scope".into());
    }
    Ok(scopes)
}

/// Who is calling: the token's identity and rights.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub token_id: Uuid,
    pub org_id: Uuid,
    /// An agent-bound token acts for this agent only.
    pub agent_id: Option<Uuid>,
    pub user_id: Option<Uuid>,
    pub scopes: Vec<String>,
}

impl Principal {
    /// `admin` implies every scope.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope || s == SCOPE_ADMIN)
    }

    pub fn require_scope(&self, scope: &str) -> Result<(), ApiError> {
        if self.has_scope(scope) {
            Ok(())
        } else {
            Err(ApiError::PermissionDenied(format!(
                "this token lacks the scope {scope:?} (it has: {})",
                self.scopes.join(", ")
            )))
        }
    }

    /// The org named in a request must be the token's (the database checks it again).
    pub fn require_org(&self, org: Uuid) -> Result<(), ApiError> {
        if org == self.org_id {
            Ok(())
        } else {
            Err(ApiError::PermissionDenied(format!(
                "org {org} is not the org of this token"
            )))
        }
    }

    pub fn require_agent(&self, agent: Uuid) -> Result<(), ApiError> {
        match self.agent_id {
            Some(bound) if bound != agent => Err(ApiError::PermissionDenied(format!(
                "this token is bound to agent {bound}, not {agent}"
            ))),
            _ => Ok(()),
        }
    }
}

/// The token of an `authorization: Bearer <token>` value.
pub fn bearer(value: Option<&str>) -> Result<&str, ApiError> {
    let value = value.ok_or_else(|| {
        ApiError::Unauthenticated("missing credentials: send `Authorization: Bearer <IBEX API token>`".into())
    })?;
    let (scheme, token) = value.trim().split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::Unauthenticated(
            "the Authorization header must be `Bearer <IBEX API token>`".into(),
        ));
    }
    Ok(token.trim())
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

/// A row of `ibex_core.authenticate_token(hash)`.
#[derive(sqlx::FromRow)]
struct TokenRow {
    token_id: Uuid,
    token_org: Uuid,
    token_agent: Option<Uuid>,
    token_user: Option<Uuid>,
    token_scopes: Vec<String>,
    /// active, revoked, expired, or org_<status> when the org is not active.
    token_state: String,
    token_expires_at: Option<DateTime<Utc>>,
}

/// Why a known token is refused, in words for the client; `None` when it may be used.
fn refusal(state: &str) -> Option<String> {
    let reason = match state {
        "active" => return None,
        "revoked" => "this API token was revoked",
        "expired" => "this API token has expired",
        "org_suspended" => "the org of this API token is suspended",
        "org_deleted" => "the org of this API token is deleted",
        other => return Some(format!("this API token cannot be used ({other})")),
    };
    Some(reason.to_string())
}

pub struct Authenticator {
    db: Option<PgPool>,
    ttl: Duration,
    /// Principals by token hash; `None` when `auth_cache_ttl` is 0.
    cache: Option<Cache<String, Cached>>,
}

impl Authenticator {
    pub fn new(db: Option<PgPool>, ttl: Duration) -> Self {
        let cache = (!ttl.is_zero()).then(|| {
            Cache::builder()
                .max_capacity(CACHE_CAPACITY)
                .expire_after(PerEntryTtl)
                .build()
        });
        Self { db, ttl, cache }
    }

    /// Checks the `authorization` header value and returns who is calling.
    pub async fn authenticate(&self, authorization: Option<&str>) -> Result<Principal, ApiError> {
        let token = bearer(authorization)?;
        if !well_formed(token) {
            return Err(ApiError::Unauthenticated(
                "invalid API token (IBEX tokens look like ibx_ followed by 32 letters and digits)".into(),
            ));
        }
        let hash = token_hash(token);
        if let Some(cache) = &self.cache {
            if let Some(cached) = cache.get(&hash).await {
                return Ok(cached.principal);
            }
        }
        let db = self.db.as_ref().ok_or_else(|| ApiError::Unavailable {
            public: "authentication needs the database, and none is configured".into(),
            detail: "no database_url".into(),
        })?;
        let row: Option<TokenRow> = sqlx::query_as(
            "SELECT token_id, token_org, token_agent, token_user, token_scopes, token_state, token_expires_at
             FROM ibex_core.authenticate_token($1)",
        )
        .bind(&hash)
        .fetch_optional(db)
        .await
        .map_err(|e| ApiError::database("authenticating a token", e))?;
        let Some(row) = row else {
            return Err(ApiError::Unauthenticated("unknown API token".into()));
        };
        if let Some(reason) = refusal(&row.token_state) {
            return Err(ApiError::Unauthenticated(reason));
        }
        let principal = Principal {
            token_id: row.token_id,
            org_id: row.token_org,
            agent_id: row.token_agent,
            user_id: row.token_user,
            scopes: row.token_scopes,
        };
        self.remember(hash, &principal, row.token_expires_at).await;
        Ok(principal)
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

    #[test]
    fn tokens_are_well_formed_and_distinct() {
        let a = generate_token();
        let b = generate_token();
        assert!(well_formed(&a), "{a}");
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(display_prefix(&a), &a[..8]);
        assert_eq!(token_hash(&a).len(), 64);
        assert!(!well_formed("ibx_short"));
        assert!(!well_formed(&format!("xyz_{}", &a[4..])));
        assert!(!well_formed(&format!("ibx_{}!", &a[4..35])));
    }

    #[test]
    fn secrets_use_all_of_base62() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            seen.extend(generate_token()[4..].chars());
        }
        assert_eq!(seen.len(), 62, "uniform over A-Z, a-z, 0-9");
    }

    #[test]
    fn token_states_other_than_active_are_refused_in_words() {
        assert_eq!(refusal("active"), None);
        assert!(refusal("revoked").unwrap().contains("revoked"));
        assert!(refusal("org_suspended").unwrap().contains("suspended"));
        assert!(refusal("something_new").unwrap().contains("something_new"));
    }

    #[tokio::test]
    async fn a_remembered_check_expires_with_its_token() {
        let auth = Authenticator::new(None, Duration::from_secs(60));
        let principal = Principal {
            token_id: Uuid::nil(),
            org_id: Uuid::nil(),
            agent_id: None,
            user_id: None,
            scopes: vec!["proxy".into()],
        };
        let token = generate_token();
        let authorization = format!("Bearer {token}");
        auth.remember(
            token_hash(&token),
            &principal,
            Some(Utc::now() + chrono::Duration::milliseconds(200)),
        )
        .await;
        assert_eq!(auth.authenticate(Some(&authorization)).await.unwrap(), principal);
        tokio::time::sleep(Duration::from_millis(400)).await;
        // Expired from the cache, and there is no database to ask.
        assert_eq!(
            auth.authenticate(Some(&authorization)).await.unwrap_err().code(),
            "unavailable"
        );
    }

    #[test]
    fn bearer_values() {
        assert_eq!(bearer(Some("Bearer abc")).unwrap(), "abc");
        assert_eq!(bearer(Some("bearer  abc ")).unwrap(), "abc");
        assert_eq!(bearer(None).unwrap_err().code(), "unauthenticated");
        assert_eq!(bearer(Some("Basic abc")).unwrap_err().code(), "unauthenticated");
        assert_eq!(bearer(Some("Bearer")).unwrap_err().code(), "unauthenticated");
    }

    #[test]
    fn scopes_are_checked() {
        assert_eq!(
            parse_scopes("proxy, context:assemble,proxy").unwrap(),
            ["proxy", "context:assemble"]
        );
        assert!(parse_scopes("proxy,root").unwrap_err().contains("root"));
        assert!(parse_scopes(" , ").is_err());
        let p = Principal {
            token_id: Uuid::nil(),
            org_id: Uuid::nil(),
            agent_id: Some(Uuid::from_u128(1)),
            user_id: None,
            scopes: vec!["proxy".into()],
        };
        assert!(p.require_scope("proxy").is_ok());
        assert_eq!(
            p.require_scope("context:assemble").unwrap_err().code(),
            "permission_denied"
        );
        assert!(p.require_agent(Uuid::from_u128(1)).is_ok());
        assert_eq!(
            p.require_agent(Uuid::from_u128(2)).unwrap_err().code(),
            "permission_denied"
        );
        assert_eq!(
            p.require_org(Uuid::from_u128(9)).unwrap_err().code(),
            "permission_denied"
        );
        let admin = Principal {
            scopes: vec!["admin".into()],
            agent_id: None,
            ..p
        };
        assert!(admin.require_scope("context:assemble").is_ok());
        assert!(admin.require_agent(Uuid::from_u128(2)).is_ok());
    }
}
