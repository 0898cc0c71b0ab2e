//! The management API, called in process: a request built here goes through the API's router
//! (auth, scopes, validation, handlers) exactly as one from `curl` would, with the signed-in
//! operator's token. Its error envelope becomes an [`ApiFailure`] the pages show.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use axum::Router;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tower::ServiceExt;

/// Largest API answer a page reads (a page of 100 rows is far below).
const MAX_ANSWER_BYTES: usize = 8 << 20;
/// Largest session replay a page reads; the replay page offers larger archives (up to
/// `archive_max_bytes`, 256 MiB by default) as a download through their presigned link.
pub const MAX_REPLAY_BYTES: usize = 64 << 20;

/// An API call that did not succeed: the status and the envelope's code and message.
#[derive(Debug, Clone)]
pub struct ApiFailure {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
}

impl ApiFailure {
    fn internal(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal".into(),
            message: message.into(),
        }
    }
}

#[derive(Clone)]
pub struct Api {
    router: Router,
}

impl Api {
    pub fn new(router: Router) -> Self {
        Self { router }
    }

    pub async fn get<T: DeserializeOwned>(&self, token: &str, path: &str) -> Result<T, ApiFailure> {
        self.call(token, Method::GET, path, None, MAX_ANSWER_BYTES).await
    }

    /// A GET whose answer may be larger than a page's (a session replay).
    pub async fn get_large<T: DeserializeOwned>(
        &self,
        token: &str,
        path: &str,
        max_bytes: usize,
    ) -> Result<T, ApiFailure> {
        self.call(token, Method::GET, path, None, max_bytes).await
    }

    pub async fn send<T: DeserializeOwned>(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Value,
    ) -> Result<T, ApiFailure> {
        self.call(token, method, path, Some(body), MAX_ANSWER_BYTES).await
    }

    async fn call<T: DeserializeOwned>(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
        max_bytes: usize,
    ) -> Result<T, ApiFailure> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        let body = match body {
            Some(json) if !json.is_null() => {
                request = request.header(header::CONTENT_TYPE, "application/json");
                Body::from(json.to_string())
            }
            _ => Body::empty(),
        };
        let request = request
            .body(body)
            .map_err(|e| ApiFailure::internal(format!("building the API request failed: {e}")))?;
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .map_err(|e| ApiFailure::internal(format!("the API did not answer: {e}")))?;
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), max_bytes)
            .await
            .map_err(|e| ApiFailure::internal(format!("reading the API's answer failed: {e}")))?;
        if !status.is_success() {
            let envelope: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let error = &envelope["error"];
            return Err(ApiFailure {
                status,
                code: error["code"].as_str().unwrap_or("error").to_string(),
                message: error["message"]
                    .as_str()
                    .unwrap_or("the API refused the request")
                    .to_string(),
            });
        }
        // A 204 has no body: read as JSON null.
        let value: &[u8] = if bytes.is_empty() { b"null" } else { &bytes };
        serde_json::from_slice(value)
            .map_err(|e| ApiFailure::internal(format!("the API's answer is not the expected JSON: {e}")))
    }
}
