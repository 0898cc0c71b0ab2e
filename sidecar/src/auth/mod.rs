//! API tokens: their format, how they are created, and checking them.
//!
//! A token is `ibx_` followed by 32 base62 characters drawn from the thread-local CSPRNG (ChaCha,
//! seeded from the OS): about 190 bits. Only its SHA-256 (lowercase hex) is stored, in
//! `api_tokens.token_hash`, with the first 8 characters (`ibx_` and 4 secret ones) as
//! `token_prefix` so people can tell their tokens apart.
//!
//! One place decides whether a token may be used: [`validator::TokenValidator`] (the database's
//! `ibex_core.authenticate_token`, with the failed-attempt limit of [`failures`]). It is served
//! as the gRPC `ibex.auth.v1.AuthService` (`crate::grpc::auth`); the REST API's middleware asks it
//! over gRPC ([`client`]), the hot path in process. Both remember valid answers for a few seconds
//! ([`authenticator::Authenticator`]), and both forget them as soon as the database announces a
//! revocation ([`revocation`]).

pub mod authenticator;
pub mod client;
pub mod failures;
pub mod revocation;
pub mod validator;

pub use authenticator::{Authenticator, Backend, CacheCounters};
pub use validator::{TokenValidator, Validated};

use ibex_engine::content::sha256_hex;
use rand::distr::Alphanumeric;
use rand::Rng;
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
    "users:read",
    "users:write",
    "platform:admin",
];
pub const SCOPE_ADMIN: &str = "admin";
pub const SCOPE_CONTEXT: &str = "context:assemble";
pub const SCOPE_PROXY: &str = "proxy";
/// The embedding endpoints (`/v1/embed`, `/v1/embed/batch`, `/v1/embeddings`). `admin` implies it,
/// as it implies every scope; `context:assemble` and `proxy` do not (their embeddings happen
/// inside the sidecar, on the hot path's own capacity).
pub const SCOPE_EMBED: &str = "embed";
/// The platform operators' scope: orgs across the platform. Unlike every other scope it is not
/// implied by `admin` (an org's admin is not a platform operator).
pub const SCOPE_PLATFORM_ADMIN: &str = "platform:admin";

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
    /// `admin` implies every scope of its org (not `platform:admin`).
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes
            .iter()
            .any(|s| s == scope || (s == SCOPE_ADMIN && scope != SCOPE_PLATFORM_ADMIN))
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
        assert!(
            admin.require_scope(SCOPE_PLATFORM_ADMIN).is_err(),
            "an org admin is no platform operator"
        );
        assert!(admin.require_agent(Uuid::from_u128(2)).is_ok());
    }
}
