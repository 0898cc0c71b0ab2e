//! Organisations, people, agents, tokens, directives.

use chrono::{DateTime, Utc};
use uuid::Uuid;

crate::model! {
    /// A tenant. Its id is the org_id of every row it owns.
    pub struct Org in "orgs" {
        id: Uuid,
        name: String,
        slug: String,
        status: String,
        settings: serde_json::Value,
        created_at: DateTime<Utc>,
        updated_at: DateTime<Utc>,
    }
}

crate::model! {
    pub struct User in "users" {
        org_id: Uuid,
        id: Uuid,
        email: String,
        display_name: Option<String>,
        role: String,
        status: String,
        created_at: DateTime<Utc>,
        updated_at: DateTime<Utc>,
    }
}

crate::model! {
    pub struct Agent in "agents" {
        org_id: Uuid,
        id: Uuid,
        name: String,
        description: Option<String>,
        status: String,
        default_model: Option<String>,
        metadata: serde_json::Value,
        created_at: DateTime<Utc>,
        updated_at: DateTime<Utc>,
    }
}

crate::model! {
    /// A personal access token: only the SHA-256 of the secret is stored.
    pub struct ApiToken in "api_tokens" {
        org_id: Uuid,
        id: Uuid,
        user_id: Option<Uuid>,
        agent_id: Option<Uuid>,
        name: String,
        token_prefix: String,
        token_hash: String,
        scopes: Vec<String>,
        created_at: DateTime<Utc>,
        expires_at: Option<DateTime<Utc>>,
        last_used_at: Option<DateTime<Utc>>,
        revoked_at: Option<DateTime<Utc>>,
    }
}

crate::model! {
    pub struct Directive in "directives" {
        org_id: Uuid,
        id: Uuid,
        agent_id: Uuid,
        name: String,
        content: String,
        version: i32,
        status: String,
        priority: i32,
        created_at: DateTime<Utc>,
        updated_at: DateTime<Utc>,
    }
}

crate::model! {
    pub struct DirectiveVersion in "directive_versions" {
        org_id: Uuid,
        id: Uuid,
        directive_id: Uuid,
        version: i32,
        name: String,
        content: String,
        status: String,
        changed_by: Option<Uuid>,
        created_at: DateTime<Utc>,
    }
}
