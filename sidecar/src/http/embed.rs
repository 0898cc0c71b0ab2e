//! The native embedding endpoints: `POST /v1/embed` and `POST /v1/embed/batch`, and what every
//! embedding endpoint checks first ([`admit`]).
//!
//! The answers do not say whether a text came from the cache: cache entries are per org (see
//! `embedding::cache`), and even within one org a `cached` flag would tell one user what another
//! had embedded. Hits are counted in metrics (`ibex_embed_cache_hits_total`).

use axum::extract::State;
use axum::http::{header, HeaderMap};
use axum::Json;
use ibex_engine::EMBEDDING_DIM;
use serde::{Deserialize, Serialize};

use super::json::ApiJson;
use crate::auth::{Principal, SCOPE_EMBED};
use crate::embedding::{EmbedRequest, Lane};
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbedBody {
    text: String,
}

#[derive(Serialize)]
pub struct EmbedResponse {
    embedding: Vec<f32>,
    model: String,
    dimensions: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchBody {
    texts: Vec<String>,
}

#[derive(Serialize)]
pub struct BatchResponse {
    embeddings: Vec<Vec<f32>>,
    model: String,
    dimensions: usize,
}

/// The checks of every embedding endpoint, cheapest first and all before any model work: a token
/// with scope `embed` (or `admin`), the texts' shape and size, then the token's rate limit
/// (charged one unit per text, so a refused malformed request costs nothing).
pub(super) async fn admit(state: &AppState, headers: &HeaderMap, texts: &[String]) -> Result<Principal, ApiError> {
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let principal = state.auth.authenticate(authorization).await?;
    principal.require_scope(SCOPE_EMBED)?;
    state.core.validate(texts)?;
    if let Err(limited) = state.embed_limit.take(principal.token_id, texts.len()).await {
        state.metrics.rate_limited.inc();
        return Err(limited);
    }
    Ok(principal)
}

/// An embedding request of the endpoints: the caller's org (the cache is per org), the shared
/// model instances.
pub(super) fn request(principal: &Principal, texts: Vec<String>, count_tokens: bool) -> EmbedRequest {
    EmbedRequest {
        texts,
        count_tokens,
        org: principal.org_id,
        lane: Lane::Shared,
    }
}

pub async fn embed_one(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<EmbedBody>,
) -> Result<Json<EmbedResponse>, ApiError> {
    let texts = vec![body.text];
    let principal = admit(&state, &headers, &texts).await?;
    let out = state.core.embed(request(&principal, texts, false)).await?;
    let Some(embedding) = out.vectors.into_iter().next() else {
        return Err(ApiError::Internal("the core answered one text with no vector".into()));
    };
    Ok(Json(EmbedResponse {
        embedding,
        model: out.model,
        dimensions: EMBEDDING_DIM,
    }))
}

pub async fn embed_batch(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<BatchBody>,
) -> Result<Json<BatchResponse>, ApiError> {
    let principal = admit(&state, &headers, &body.texts).await?;
    let out = state.core.embed(request(&principal, body.texts, false)).await?;
    Ok(Json(BatchResponse {
        embeddings: out.vectors,
        model: out.model,
        dimensions: EMBEDDING_DIM,
    }))
}
