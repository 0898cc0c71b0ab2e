//! Probes and metrics: `GET /livez`, `GET /readyz`, `GET /metrics`.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};

use crate::embedding::Readiness;
use crate::error::ApiError;
use crate::state::AppState;

/// The process is up and serving HTTP: no dependency is consulted, so a slow model load or a
/// database outage never gets the process restarted.
pub async fn livez() -> Json<Value> {
    Json(json!({ "status": "alive" }))
}

/// Ready once the model is loaded and warmed up. The database, Redis and S3 are deliberately not
/// consulted: the embedding API works without any of them. The archive store's state, as the
/// archive worker last saw it, is reported.
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    match state.core.readiness() {
        // Ready while the model is loaded, even with every context slot busy: a saturated hot
        // path refuses the excess at once (RESOURCE_EXHAUSTED, 429), so taking the instance out
        // of a load balancer would only move its load onto the others. Answered from memory, so
        // it never waits behind the load it reports.
        Readiness::Ready { model, workers } => Ok(Json(json!({
            "status": "ready",
            "model": model,
            "embed_workers": workers,
            "context": state.context.admission_load(),
            // Reported, not required: the hot path works while S3 is down (archives queue).
            "archive_store": match &state.archives {
                Some(archives) => json!({
                    "configured": true,
                    "store": archives.store.description,
                    "status": archives.health(),
                }),
                None => json!({ "configured": false }),
            },
        }))),
        Readiness::Loading => Err(ApiError::NotReady("the embedding model is still loading".into())),
        Readiness::Failed(reason) => Err(ApiError::NotReady(format!(
            "the embedding model failed to load: {reason}"
        ))),
    }
}

pub async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let mut text = state
        .metrics
        .render()
        .map_err(|e| ApiError::Internal(format!("rendering metrics: {e}")))?;
    text.push_str(&crate::metrics::render_auth_cache(&[
        ("api", &state.api_auth.counters),
        ("hot_path", &state.auth.counters),
    ]));
    Ok((
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        text,
    ))
}
