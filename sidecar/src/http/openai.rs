//! OpenAI-compatible `POST /v1/embeddings`, so existing OpenAI clients can point at the sidecar.
//!
//! The `model` field is accepted and not checked (as other self-hosted embedding servers do):
//! this server has one model, and its name is what the response reports. `encoding_format`
//! `base64` is supported because the official Python client asks for it by default.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use base64::Engine;
use ibex_engine::EMBEDDING_DIM;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::embed::{admit, request};
use super::json::ApiJson;
use crate::embedding::cache::encode_vector;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct EmbeddingsBody {
    /// A string or an array of strings. Kept as raw JSON to explain a wrong shape clearly.
    input: Value,
    // `model` and `user` may be present and are ignored (serde skips unknown fields).
    #[serde(default)]
    encoding_format: Option<EncodingFormat>,
    #[serde(default)]
    dimensions: Option<usize>,
}

#[derive(Deserialize, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum EncodingFormat {
    #[default]
    Float,
    Base64,
}

#[derive(Serialize)]
pub struct EmbeddingsResponse {
    object: &'static str,
    data: Vec<EmbeddingItem>,
    model: String,
    usage: Usage,
}

#[derive(Serialize)]
struct EmbeddingItem {
    object: &'static str,
    index: usize,
    /// Floats, or a base64 string of the little-endian f32 bytes.
    embedding: Value,
}

#[derive(Serialize)]
struct Usage {
    prompt_tokens: usize,
    total_tokens: usize,
}

fn texts_of(input: Value) -> Result<Vec<String>, ApiError> {
    let shape_error =
        || ApiError::invalid("`input` must be a string or an array of strings (token arrays are not supported)");
    match input {
        Value::String(text) => Ok(vec![text]),
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::String(text) => Ok(text),
                _ => Err(shape_error()),
            })
            .collect(),
        _ => Err(shape_error()),
    }
}

/// Authenticated like `/v1/embed` (scope `embed`, rate limited per token, see `embed::admit`).
pub async fn embeddings(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<EmbeddingsBody>,
) -> Result<Json<EmbeddingsResponse>, ApiError> {
    if let Some(dimensions) = body.dimensions.filter(|&d| d != EMBEDDING_DIM) {
        return Err(ApiError::InvalidRequest {
            message: format!("this model produces {EMBEDDING_DIM} dimensions; {dimensions} were requested"),
            details: Some(json!({ "dimensions": EMBEDDING_DIM })),
        });
    }
    let texts = texts_of(body.input)?;
    let principal = admit(&state, &headers, &texts).await?;
    let out = state.core.embed(request(&principal, texts, true)).await?;
    let tokens: usize = out.token_counts.iter().flatten().sum();
    let format = body.encoding_format.unwrap_or_default();
    let data = out
        .vectors
        .into_iter()
        .enumerate()
        .map(|(index, vector)| EmbeddingItem {
            object: "embedding",
            index,
            embedding: match format {
                EncodingFormat::Float => json!(vector),
                EncodingFormat::Base64 => {
                    Value::String(base64::engine::general_purpose::STANDARD.encode(encode_vector(&vector)))
                }
            },
        })
        .collect();
    Ok(Json(EmbeddingsResponse {
        object: "list",
        data,
        model: out.model,
        usage: Usage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_is_a_string_or_strings() {
        assert_eq!(texts_of(json!("a")).unwrap(), vec!["a"]);
        assert_eq!(texts_of(json!(["a", "b"])).unwrap(), vec!["a", "b"]);
        assert_eq!(texts_of(json!([1, 2])).unwrap_err().code(), "invalid_request");
        assert_eq!(texts_of(json!({"text": "a"})).unwrap_err().code(), "invalid_request");
    }
}
