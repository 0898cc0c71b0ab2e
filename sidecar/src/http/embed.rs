//! The native embedding endpoints: `POST /v1/embed` and `POST /v1/embed/batch`.

use axum::extract::State;
use axum::Json;
use ibex_engine::EMBEDDING_DIM;
use serde::{Deserialize, Serialize};

use super::json::ApiJson;
use crate::embedding::EmbedRequest;
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
    cached: bool,
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
    cached: Vec<bool>,
    dimensions: usize,
}

pub async fn embed_one(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<EmbedBody>,
) -> Result<Json<EmbedResponse>, ApiError> {
    let request = EmbedRequest {
        texts: vec![body.text],
        count_tokens: false,
    };
    let out = state.core.embed(request).await?;
    let (Some(embedding), Some(&cached)) = (out.vectors.into_iter().next(), out.cached.first()) else {
        return Err(ApiError::Internal("the core answered one text with no vector".into()));
    };
    Ok(Json(EmbedResponse {
        embedding,
        model: out.model,
        cached,
        dimensions: EMBEDDING_DIM,
    }))
}

pub async fn embed_batch(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<BatchBody>,
) -> Result<Json<BatchResponse>, ApiError> {
    let request = EmbedRequest {
        texts: body.texts,
        count_tokens: false,
    };
    let out = state.core.embed(request).await?;
    Ok(Json(BatchResponse {
        embeddings: out.vectors,
        model: out.model,
        cached: out.cached,
        dimensions: EMBEDDING_DIM,
    }))
}
