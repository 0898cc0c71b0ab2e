//! The one check of a token: shape, failed-attempt limit, then `ibex_core.authenticate_token`
//! (sql/api/auth.sql: hash lookup, revocation, expiry, suspended or deleted org, deactivated
//! user). The gRPC AuthService serves it; the hot path calls it in process.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::failures::FailedAttempts;
use super::{token_hash, well_formed, Principal, DISPLAY_PREFIX_LEN};
use crate::error::ApiError;

/// A token that may be used, and until when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Validated {
    pub principal: Principal,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A row of `ibex_core.authenticate_token(hash)`.
#[derive(sqlx::FromRow)]
struct TokenRow {
    token_id: Uuid,
    token_org: Uuid,
    token_agent: Option<Uuid>,
    token_user: Option<Uuid>,
    token_scopes: Vec<String>,
    /// active, revoked, expired, org_<status> or user_<status>.
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
        "user_disabled" => "the user of this API token is deactivated",
        other => return Some(format!("this API token cannot be used ({other})")),
    };
    Some(reason.to_string())
}

pub struct TokenValidator {
    db: Option<PgPool>,
    failures: FailedAttempts,
}

impl TokenValidator {
    pub fn new(db: Option<PgPool>, failures: FailedAttempts) -> Self {
        Self { db, failures }
    }

    /// Checks `token`, presented from `source` (the client's address).
    pub async fn validate(&self, token: &str, source: &str) -> Result<Validated, ApiError> {
        // Characters, not bytes: the token is untrusted text (a gRPC string may hold any UTF-8).
        let prefix: String = token.chars().take(DISPLAY_PREFIX_LEN).collect();
        self.failures.check(source, &prefix).await?;
        let result = self.lookup(token).await;
        if matches!(result, Err(ApiError::Unauthenticated(_))) {
            self.failures.record(source, &prefix).await;
        }
        result
    }

    async fn lookup(&self, token: &str) -> Result<Validated, ApiError> {
        if !well_formed(token) {
            return Err(ApiError::Unauthenticated(
                "invalid API token (IBEX tokens look like ibx_ followed by 32 letters and digits)".into(),
            ));
        }
        let db = self.db.as_ref().ok_or_else(|| ApiError::Unavailable {
            public: "authentication needs the database, and none is configured".into(),
            detail: "no database_url".into(),
        })?;
        let row: Option<TokenRow> = sqlx::query_as(
            "SELECT token_id, token_org, token_agent, token_user, token_scopes, token_state, token_expires_at
             FROM ibex_core.authenticate_token($1)",
        )
        .bind(token_hash(token))
        .fetch_optional(db)
        .await
        .map_err(|e| ApiError::database("authenticating a token", e))?;
        let Some(row) = row else {
            return Err(ApiError::Unauthenticated("unknown API token".into()));
        };
        if let Some(reason) = refusal(&row.token_state) {
            return Err(ApiError::Unauthenticated(reason));
        }
        Ok(Validated {
            principal: Principal {
                token_id: row.token_id,
                org_id: row.token_org,
                agent_id: row.token_agent,
                user_id: row.token_user,
                scopes: row.token_scopes,
            },
            expires_at: row.token_expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ratelimit::RateSettings;

    #[test]
    fn token_states_other_than_active_are_refused_in_words() {
        assert_eq!(refusal("active"), None);
        assert!(refusal("revoked").unwrap().contains("revoked"));
        assert!(refusal("org_suspended").unwrap().contains("suspended"));
        assert!(refusal("user_disabled").unwrap().contains("deactivated"));
        assert!(refusal("something_new").unwrap().contains("something_new"));
    }

    #[tokio::test]
    async fn malformed_tokens_count_as_failures() {
        let validator = TokenValidator::new(
            None,
            FailedAttempts::new(RateSettings {
                per_second: 0.01,
                burst: 1,
            }),
        );
        let first = validator.validate("ibx_nope", "1.2.3.4").await.unwrap_err();
        assert_eq!(first.code(), "unauthenticated");
        let second = validator.validate("ibx_nope", "1.2.3.4").await.unwrap_err();
        assert_eq!(second.code(), "rate_limited");
        // Multi-byte text where a byte-cut prefix would split a character.
        let odd = validator.validate("ibx_éééééé", "5.6.7.8").await.unwrap_err();
        assert_eq!(odd.code(), "unauthenticated");
    }
}
