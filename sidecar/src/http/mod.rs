//! The HTTP surface: routes, the shared middleware, and the handlers (one module per area).

pub mod body;
mod dashboard;
mod embed;
mod health;
pub mod json;
pub mod middleware;
mod openai;
pub mod proxy;

use std::any::Any;

use axum::extract::DefaultBodyLimit;
use axum::http::{Method, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;

use crate::error::ApiError;
use crate::state::AppState;

/// All HTTP routes. Layers, outermost first: request id, span/log/metrics, panic to 500 envelope,
/// body size limit (enforced by the JSON extractor, so an oversized body is a 413 envelope).
pub fn router(state: AppState) -> Router {
    let router: Router<AppState> = Router::new();
    let router = if state.config.dashboard {
        router.nest_service("/dashboard", dashboard::routes(&state))
    } else {
        router
    };
    router
        .route("/livez", get(health::livez))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/v1/embed", post(embed::embed_one))
        .route("/v1/embed/batch", post(embed::embed_batch))
        .route("/v1/embeddings", post(openai::embeddings))
        .route("/v1/chat/completions", post(proxy::chat_completions))
        .merge(crate::api::routes(state.clone()))
        .merge(crate::mcp::routes(state.clone()))
        .merge(crate::api::doc_routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            middleware::observe,
        ))
        .layer(axum::middleware::from_fn(middleware::request_id))
        .with_state(state)
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound {
        path: uri.path().to_string(),
    }
}

async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::MethodNotAllowed {
        method: method.to_string(),
    }
}

fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into());
    ApiError::Internal(format!("handler panicked: {message}")).into_response()
}
