//! `/v1/tokens`: personal access tokens of the org. Created with a name, scopes, an optional
//! agent or user they act for, and an optional expiry; the secret is in the creation answer only
//! (only its SHA-256 is stored, see `crate::auth`). Lists never show a secret. Revoking is
//! immediate everywhere: the database pushes the change to every sidecar (`auth::revocation`).
//!
//! A token can only hand out what its caller holds: no scope the caller lacks, never
//! `platform:admin` unless the caller is a platform operator, and an agent-bound caller only
//! tokens bound to its agent.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::extract::{ApiPath, ApiQuery, Caller};
use super::page::{keyed_by_created_at, Page, PageRequest};
use super::{for_org, sql_error::from_sqlx};
use crate::auth::{self, Principal, SCOPES};
use crate::error::ApiError;
use crate::http::json::ApiJson;
use crate::state::AppState;

const LIST: &str = "tokens";
const SCOPE_TOKENS: &str = "tokens:manage";
/// The longest life a token may be given.
const MAX_TTL_DAYS: i64 = 3650;

#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
pub struct TokenInfo {
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    /// The first characters of the token (`ibx_` and 4 more), to tell tokens apart.
    pub prefix: String,
    pub scopes: Vec<String>,
    pub agent_id: Option<Uuid>,
    pub user_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

const COLUMNS: &str = "id, org_id, name, token_prefix AS prefix, scopes, agent_id, user_id, created_at, \
                       expires_at, last_used_at, revoked_at";

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedToken {
    /// The secret: shown this once, never again.
    pub token: String,
    #[serde(flatten)]
    pub info: TokenInfo,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    /// Scopes the caller holds itself (`admin` implies every scope of the org but
    /// `platform:admin`).
    #[schema(min_items = 1)]
    pub scopes: Vec<String>,
    pub agent_id: Option<Uuid>,
    pub user_id: Option<Uuid>,
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListTokens {
    pub agent_id: Option<Uuid>,
    pub user_id: Option<Uuid>,
    /// Include revoked tokens (default: only usable and expired ones).
    #[serde(default)]
    pub include_revoked: bool,
    /// Rows per page (default 50).
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// The scopes a caller may give a new token: each one it holds itself.
fn check_grantable(caller: &Principal, wanted: &[String]) -> Result<Vec<String>, ApiError> {
    let scopes = auth::parse_scopes(&wanted.join(",")).map_err(ApiError::invalid)?;
    let lacking: Vec<&str> = scopes
        .iter()
        .map(String::as_str)
        .filter(|s| !caller.has_scope(s))
        .collect();
    if !lacking.is_empty() {
        return Err(ApiError::PermissionDenied(format!(
            "a token cannot grant scopes its caller lacks: {}",
            lacking.join(", ")
        )));
    }
    Ok(scopes)
}

keyed_by_created_at!(TokenInfo);

#[utoipa::path(
    post,
    path = "/v1/tokens",
    operation_id = "tokens_create",
    tag = "tokens",
    description = "Creates a token with scopes the caller holds itself; the secret is in this answer only. Scope: `tokens:manage`.",
    request_body = CreateToken,
    responses((status = 201, description = "The new token with its secret", body = CreatedToken)),
)]
pub async fn create(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiJson(body): ApiJson<CreateToken>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    caller.require_scope(SCOPE_TOKENS)?;
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiError::invalid("name must be 1 to 200 characters"));
    }
    if body.scopes.len() > SCOPES.len() {
        return Err(ApiError::invalid(format!("at most {} scopes", SCOPES.len())));
    }
    let scopes = check_grantable(&caller, &body.scopes)?;
    let agent = match (caller.agent_id, body.agent_id) {
        (Some(bound), Some(asked)) if bound != asked => {
            return Err(ApiError::PermissionDenied(format!(
                "this token is bound to agent {bound}; it can only create tokens for that agent"
            )))
        }
        (Some(bound), _) => Some(bound),
        (None, asked) => asked,
    };
    if let Some(expires) = body.expires_at {
        let now = Utc::now();
        if expires <= now || expires > now + chrono::Duration::days(MAX_TTL_DAYS) {
            return Err(ApiError::invalid(format!(
                "expires_at must be in the future and at most {MAX_TTL_DAYS} days away"
            )));
        }
    }
    let token = auth::generate_token();
    let mut tx = for_org(&state, caller.org_id).await?;
    // The agent and the user must be of this org: the foreign keys include org_id, so a
    // stranger's id fails them (404) whatever its existence elsewhere.
    let info: TokenInfo = sqlx::query_as(&format!(
        "INSERT INTO ibex_core.api_tokens (org_id, agent_id, user_id, name, token_prefix, token_hash, scopes, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {COLUMNS}"
    ))
    .bind(caller.org_id)
    .bind(agent)
    .bind(body.user_id)
    .bind(name)
    .bind(auth::display_prefix(&token))
    .bind(auth::token_hash(&token))
    .bind(&scopes)
    .bind(body.expires_at)
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| from_sqlx("creating a token", e))?;
    tx.commit().await.map_err(|e| from_sqlx("creating a token", e))?;
    Ok((StatusCode::CREATED, Json(CreatedToken { token, info })))
}

#[utoipa::path(
    get,
    path = "/v1/tokens",
    operation_id = "tokens_list",
    tag = "tokens",
    description = "The org's tokens, newest first; never a secret. Scope: `tokens:manage`.",
    params(ListTokens),
    responses((status = 200, description = "A page of tokens", body = Page<TokenInfo>)),
)]
pub async fn list(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiQuery(query): ApiQuery<ListTokens>,
) -> Result<Json<Page<TokenInfo>>, ApiError> {
    caller.require_scope(SCOPE_TOKENS)?;
    let page = PageRequest::new(query.limit, query.cursor.as_deref(), LIST)?;
    if let (Some(bound), Some(asked)) = (caller.agent_id, query.agent_id) {
        if bound != asked {
            return Err(ApiError::PermissionDenied(format!(
                "this token is bound to agent {bound}"
            )));
        }
    }
    let agent = caller.agent_id.or(query.agent_id);
    let mut tx = for_org(&state, caller.org_id).await?;
    let rows: Vec<TokenInfo> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM ibex_core.api_tokens
         WHERE org_id = $1 AND ($2::uuid IS NULL OR agent_id = $2) AND ($3::uuid IS NULL OR user_id = $3)
           AND ($4 OR revoked_at IS NULL)
           AND (created_at, id) < ($5, $6)
         ORDER BY created_at DESC, id DESC LIMIT $7"
    ))
    .bind(caller.org_id)
    .bind(agent)
    .bind(query.user_id)
    .bind(query.include_revoked)
    .bind(page.before().created_at)
    .bind(page.before().id)
    .bind(page.fetch())
    .fetch_all(&mut *tx)
    .await
    .map_err(|e| from_sqlx("listing tokens", e))?;
    Ok(Json(page.finish(rows, LIST)))
}

#[utoipa::path(
    get,
    path = "/v1/tokens/{id}",
    operation_id = "tokens_get",
    tag = "tokens",
    description = "One token (never its secret). Scope: `tokens:manage`.",
    params(("id" = Uuid, Path, description = "The token's id")),
    responses((status = 200, description = "The token", body = TokenInfo)),
)]
pub async fn get(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<TokenInfo>, ApiError> {
    caller.require_scope(SCOPE_TOKENS)?;
    let mut tx = for_org(&state, caller.org_id).await?;
    Ok(Json(fetch(&mut tx, &caller, id).await?))
}

#[utoipa::path(
    delete,
    path = "/v1/tokens/{id}",
    operation_id = "tokens_revoke",
    tag = "tokens",
    description = "Revokes the token everywhere at once (idempotent). Scope: `tokens:manage`.",
    params(("id" = Uuid, Path, description = "The token's id")),
    responses((status = 200, description = "The revoked token", body = TokenInfo)),
)]
/// Revokes the token (idempotent: revoking a revoked token answers it as it is).
pub async fn revoke(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<TokenInfo>, ApiError> {
    caller.require_scope(SCOPE_TOKENS)?;
    let mut tx = for_org(&state, caller.org_id).await?;
    fetch(&mut tx, &caller, id).await?;
    let info: TokenInfo = sqlx::query_as(&format!(
        "UPDATE ibex_core.api_tokens SET revoked_at = coalesce(revoked_at, now())
         WHERE org_id = $1 AND id = $2 RETURNING {COLUMNS}"
    ))
    .bind(caller.org_id)
    .bind(id)
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| from_sqlx("revoking a token", e))?;
    tx.commit().await.map_err(|e| from_sqlx("revoking a token", e))?;
    Ok(Json(info))
}

/// The token `id` of the caller's org (and agent, for an agent-bound caller).
async fn fetch(tx: &mut sqlx::PgConnection, caller: &Principal, id: Uuid) -> Result<TokenInfo, ApiError> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM ibex_core.api_tokens
         WHERE org_id = $1 AND id = $2 AND ($3::uuid IS NULL OR agent_id = $3)"
    ))
    .bind(caller.org_id)
    .bind(id)
    .bind(caller.agent_id)
    .fetch_optional(tx)
    .await
    .map_err(|e| from_sqlx("reading a token", e))?
    .ok_or_else(|| ApiError::ResourceNotFound(format!("token {id} not found")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(scopes: &[&str]) -> Principal {
        Principal {
            token_id: Uuid::nil(),
            org_id: Uuid::nil(),
            agent_id: None,
            user_id: None,
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn a_token_grants_only_what_its_caller_holds() {
        let manager = caller(&["tokens:manage", "memories:read"]);
        assert_eq!(
            check_grantable(&manager, &["memories:read".into()]).unwrap(),
            ["memories:read"]
        );
        let refused = check_grantable(&manager, &["memories:write".into()]).unwrap_err();
        assert_eq!(refused.code(), "permission_denied");
        let admin = caller(&["admin"]);
        assert!(check_grantable(&admin, &["memories:write".into(), "proxy".into()]).is_ok());
        assert!(
            check_grantable(&admin, &["platform:admin".into()]).is_err(),
            "an org admin cannot mint a platform operator"
        );
        assert_eq!(
            check_grantable(&admin, &["root".into()]).unwrap_err().code(),
            "invalid_request"
        );
        assert!(check_grantable(&admin, &[]).is_err());
    }
}
