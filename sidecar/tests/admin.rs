//! `ibex bootstrap` and `ibex token create` against the test database, and the tokens they make
//! authenticating through `ibex_core.authenticate_token`.

mod common;

use std::time::Duration;

use ibex_sidecar::admin;
use std::sync::Arc;

use ibex_sidecar::auth::failures::FailedAttempts;
use ibex_sidecar::auth::{Authenticator, Backend, TokenValidator};
use ibex_sidecar::ratelimit::RateSettings;

/// Every check reads the database (no cache), through the one validator.
async fn uncached() -> Authenticator {
    let failures = FailedAttempts::new(RateSettings {
        per_second: 100.0,
        burst: 100,
    });
    let validator = TokenValidator::new(Some(common::app_pool().await), failures);
    Authenticator::new(Backend::InProcess(Arc::new(validator)), Duration::ZERO)
}

fn url() -> String {
    std::env::var("IBEX_MIGRATE_DATABASE_URL").expect("run through `make test-sidecar`")
}

#[tokio::test]
async fn bootstrap_is_idempotent_and_issues_one_admin_token() {
    let first = admin::bootstrap(&url()).await.expect("bootstrap");
    let second = admin::bootstrap(&url()).await.expect("bootstrap again");
    assert_eq!((first.org_id, first.agent_id), (second.org_id, second.agent_id));
    assert!(second.token.is_none(), "a token is issued only while the org has none");
    let admin_pool = common::admin_pool().await;
    let tokens: i64 = sqlx::query_scalar("SELECT count(*) FROM ibex_core.api_tokens WHERE org_id = $1")
        .bind(first.org_id)
        .fetch_one(&admin_pool)
        .await
        .unwrap();
    assert!(tokens >= 1);
    if let Some(token) = first.token {
        let auth = uncached().await;
        let principal = auth
            .authenticate(Some(&format!("Bearer {token}")))
            .await
            .expect("valid");
        assert_eq!(principal.org_id, first.org_id);
        assert!(principal.has_scope("proxy") && principal.has_scope("context:assemble"));
        assert_eq!(principal.scopes.len(), ibex_sidecar::auth::SCOPES.len());
    }
}

#[tokio::test]
async fn created_tokens_are_hashed_scoped_and_checked() {
    let admin_pool = common::admin_pool().await;
    let (org, agent) = common::org_with_agent(&admin_pool, "tokens").await;
    let app_url = std::env::var("IBEX_DATABASE_URL").unwrap();
    // The application role can create tokens for the org it acts for.
    let t = admin::create_token(&app_url, org, "ci", "proxy, context:assemble", Some(agent), Some(30))
        .await
        .expect("token");
    assert!(ibex_sidecar::auth::well_formed(&t.token));
    let (hash, prefix, scopes, agent_id): (String, String, Vec<String>, Option<uuid::Uuid>) = sqlx::query_as(
        "SELECT token_hash, token_prefix, scopes, agent_id FROM ibex_core.api_tokens WHERE org_id = $1 AND id = $2",
    )
    .bind(org)
    .bind(t.id)
    .fetch_one(&admin_pool)
    .await
    .unwrap();
    assert_eq!(
        hash,
        ibex_sidecar::auth::token_hash(&t.token),
        "only the SHA-256 is stored"
    );
    assert_eq!(prefix, &t.token[..8]);
    assert_eq!(scopes, ["proxy", "context:assemble"]);
    assert_eq!(agent_id, Some(agent));

    let auth = uncached().await;
    let p = auth.authenticate(Some(&format!("Bearer {}", t.token))).await.unwrap();
    assert_eq!((p.org_id, p.agent_id, p.token_id), (org, Some(agent), t.id));

    assert!(admin::create_token(&app_url, org, "x", "root", None, None)
        .await
        .is_err());
    let stranger = uuid::Uuid::new_v4();
    let err = admin::create_token(&app_url, org, "x", "proxy", Some(stranger), None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
    let err = admin::create_token(&app_url, uuid::Uuid::new_v4(), "x", "proxy", None, None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
}
