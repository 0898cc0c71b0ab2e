//! Operator commands: `ibex bootstrap` (the demo org, agent and first admin token that
//! `make run` sets up) and `ibex token create`.
//!
//! Tokens are shown once, when created; only their SHA-256 is stored (see `crate::auth`).

use anyhow::{bail, Context};
use chrono::{DateTime, Utc};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use crate::auth::{self, SCOPES};

pub const DEMO_ORG_SLUG: &str = "demo";
pub const DEMO_AGENT: &str = "assistant";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bootstrap {
    pub org_id: Uuid,
    pub agent_id: Uuid,
    /// The admin token, when this run issued it (the first run for the org).
    pub token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewToken {
    pub id: Uuid,
    pub token: String,
    pub prefix: String,
    pub scopes: Vec<String>,
}

async fn act_for(conn: &mut PgConnection, org: Uuid) -> anyhow::Result<()> {
    sqlx::query("SELECT set_config('ibex.org_id', $1, true)")
        .bind(org.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Inserts a token row and returns the token (the only time it exists in clear).
async fn insert_token(
    conn: &mut PgConnection,
    org: Uuid,
    name: &str,
    scopes: &[String],
    agent: Option<Uuid>,
    expires_at: Option<DateTime<Utc>>,
) -> anyhow::Result<NewToken> {
    let token = auth::generate_token();
    let prefix = auth::display_prefix(&token).to_string();
    let id: Uuid = sqlx::query_scalar(
        "INSERT INTO ibex_core.api_tokens (org_id, agent_id, name, token_prefix, token_hash, scopes, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
    )
    .bind(org)
    .bind(agent)
    .bind(name)
    .bind(&prefix)
    .bind(auth::token_hash(&token))
    .bind(scopes)
    .bind(expires_at)
    .fetch_one(&mut *conn)
    .await
    .context("inserting the token")?;
    Ok(NewToken {
        id,
        token,
        prefix,
        scopes: scopes.to_vec(),
    })
}

/// Idempotent: creates org "demo" (slug demo) and its agent "assistant" when missing, and an
/// admin token with every scope only if the org has no token yet. Needs a role that may create
/// orgs (the migration superuser).
pub async fn bootstrap(url: &str) -> anyhow::Result<Bootstrap> {
    let mut conn = PgConnection::connect(url).await.context("connecting for bootstrap")?;
    let mut tx = conn.begin().await?;
    // Two bootstraps at once must not both issue a token.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('ibex.bootstrap', 0))")
        .execute(&mut *tx)
        .await?;
    let existing: Option<Uuid> = sqlx::query_scalar("SELECT id FROM ibex_core.orgs WHERE slug = $1")
        .bind(DEMO_ORG_SLUG)
        .fetch_optional(&mut *tx)
        .await
        .context("looking for the demo org (are the migrations applied, and is this a superuser URL?)")?;
    let org_id = match existing {
        Some(id) => id,
        None => {
            let id = Uuid::new_v4();
            act_for(&mut tx, id).await?;
            sqlx::query("INSERT INTO ibex_core.orgs (id, name, slug) VALUES ($1, 'Demo', $2)")
                .bind(id)
                .bind(DEMO_ORG_SLUG)
                .execute(&mut *tx)
                .await
                .context("creating the demo org")?;
            id
        }
    };
    act_for(&mut tx, org_id).await?;
    sqlx::query(
        "INSERT INTO ibex_core.agents (org_id, name, description) VALUES ($1, $2, 'Created by ibex bootstrap')
         ON CONFLICT (org_id, name) DO NOTHING",
    )
    .bind(org_id)
    .bind(DEMO_AGENT)
    .execute(&mut *tx)
    .await?;
    let agent_id: Uuid = sqlx::query_scalar("SELECT id FROM ibex_core.agents WHERE org_id = $1 AND name = $2")
        .bind(org_id)
        .bind(DEMO_AGENT)
        .fetch_one(&mut *tx)
        .await?;
    let tokens: i64 = sqlx::query_scalar("SELECT count(*) FROM ibex_core.api_tokens WHERE org_id = $1")
        .bind(org_id)
        .fetch_one(&mut *tx)
        .await?;
    let token = if tokens == 0 {
        let scopes: Vec<String> = SCOPES.iter().map(|s| s.to_string()).collect();
        Some(
            insert_token(&mut tx, org_id, "bootstrap admin", &scopes, None, None)
                .await?
                .token,
        )
    } else {
        None
    };
    tx.commit().await?;
    Ok(Bootstrap {
        org_id,
        agent_id,
        token,
    })
}

/// A new token for an existing org (and optionally bound to one of its agents).
pub async fn create_token(
    url: &str,
    org: Uuid,
    name: &str,
    scopes: &str,
    agent: Option<Uuid>,
    expires_in_days: Option<u32>,
) -> anyhow::Result<NewToken> {
    let scopes = auth::parse_scopes(scopes).map_err(anyhow::Error::msg)?;
    if name.trim().is_empty() {
        bail!("--name must not be empty");
    }
    let mut conn = PgConnection::connect(url).await.context("connecting")?;
    let mut tx = conn.begin().await?;
    act_for(&mut tx, org).await?;
    let org_exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM ibex_core.orgs WHERE id = $1)")
        .bind(org)
        .fetch_one(&mut *tx)
        .await?;
    if !org_exists {
        bail!("org {org} does not exist");
    }
    if let Some(agent) = agent {
        let agent_exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM ibex_core.agents WHERE org_id = $1 AND id = $2)")
                .bind(org)
                .bind(agent)
                .fetch_one(&mut *tx)
                .await?;
        if !agent_exists {
            bail!("agent {agent} does not exist in org {org}");
        }
    }
    let expires_at = expires_in_days.map(|d| Utc::now() + chrono::Duration::days(i64::from(d)));
    let token = insert_token(&mut tx, org, name.trim(), &scopes, agent, expires_at).await?;
    tx.commit().await?;
    Ok(token)
}
