//! Who calls `/mcp`: the same personal access tokens as the REST API, checked before any MCP
//! processing. A request without a valid token never reaches rmcp, so it is answered like every
//! other refusal of the sidecar (401 in the error envelope), not as a JSON-RPC message.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::state::AppState;

/// Authenticates the request's bearer token and puts the [`crate::auth::Principal`] in the
/// request extensions, where the tools find it (rmcp hands them the request's `http::request::Parts`).
pub async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let authorization = request.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok());
    match state.api_auth.authenticate(authorization).await {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            // rmcp caps the body too, but answers an oversized one with a plain-text 413; read
            // here, it gets the error envelope like on every other route.
            let (parts, body) = request.into_parts();
            match crate::http::body::read_limited(body, state.config.max_body_bytes).await {
                Ok(bytes) => next.run(Request::from_parts(parts, Body::from(bytes))).await,
                Err(error) => error.into_response(),
            }
        }
        Err(error) => error.into_response(),
    }
}
