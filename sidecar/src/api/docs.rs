//! Swagger UI at `/docs`, over `/openapi.json`. The assets are vendored from the npm package
//! `swagger-ui-dist` (assets/swagger-ui/VERSION says which) and compiled into the binary: the
//! page works offline and fetches nothing from elsewhere. `index.html` and `init.js` are ours
//! (the initializer is a file, not an inline script, so a strict CSP can allow `'self'` only).

use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

const INDEX: &str = include_str!("../../assets/swagger-ui/index.html");

/// `(file name, content type, bytes)` of each asset under `/docs/`.
pub const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "swagger-ui-bundle.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/swagger-ui/swagger-ui-bundle.js"),
    ),
    (
        "swagger-ui.css",
        "text/css; charset=utf-8",
        include_bytes!("../../assets/swagger-ui/swagger-ui.css"),
    ),
    (
        "init.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../assets/swagger-ui/init.js"),
    ),
    (
        "favicon-32x32.png",
        "image/png",
        include_bytes!("../../assets/swagger-ui/favicon-32x32.png"),
    ),
];

/// `GET /docs`.
pub async fn index() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX).into_response()
}

/// `GET /docs/{file}`.
pub async fn asset(Path(file): Path<String>) -> Response {
    match ASSETS.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, bytes)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                // Built into the binary: the same for as long as this sidecar runs.
                (header::CACHE_CONTROL, "public, max-age=3600"),
            ],
            *bytes,
        )
            .into_response(),
        None => ApiError::NotFound {
            path: format!("/docs/{file}"),
        }
        .into_response(),
    }
}
