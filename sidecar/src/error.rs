//! The one error map of the service surface. Every refusal or failure a client can see is an
//! [`ApiError`]; this file alone decides its HTTP status, its stable `code`, its gRPC code and
//! the JSON envelope:
//!
//! ```json
//! {"error": {"code": "payload_too_large", "message": "...", "details": {...} | null, "request_id": "..."}}
//! ```

use axum::extract::rejection::JsonRejection;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ibex_engine::EmbedError;
use serde_json::{json, Value};

use crate::embedding::EmbeddingError;
use crate::http::middleware::current_request_id;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    InvalidRequest { message: String, details: Option<Value> },
    #[error("{message}")]
    PayloadTooLarge { message: String, details: Option<Value> },
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("no such endpoint: {path}")]
    NotFound { path: String },
    #[error("method {method} is not allowed on this endpoint")]
    MethodNotAllowed { method: String },
    #[error("{max_inflight} requests are already in flight; retry shortly")]
    Overloaded { max_inflight: usize },
    /// Context assembly refused at admission: every slot busy and the queue full (or the wait
    /// too long to finish within the deadline). Retry after `retry_after`.
    #[error("context assembly is at capacity; retry after {} ms", retry_after.as_millis())]
    Shed { retry_after: std::time::Duration },
    /// The calling token used up its share of an endpoint (a token bucket per token, see
    /// `crate::ratelimit`); retry after `retry_after`.
    #[error("this API token is over its rate limit ({limit}); retry after {} ms", retry_after.as_millis())]
    RateLimited {
        retry_after: std::time::Duration,
        limit: String,
    },
    #[error("{0}")]
    NotReady(String),
    /// No credentials, or credentials that are not (or no longer) valid.
    #[error("{0}")]
    Unauthenticated(String),
    /// Valid credentials without the right to do this (scope, org, agent).
    #[error("{0}")]
    PermissionDenied(String),
    /// A named resource (agent, session) that does not exist in the caller's org.
    #[error("{0}")]
    ResourceNotFound(String),
    /// The request conflicts with the resource's state (e.g. appending to a completed session).
    #[error("{0}")]
    Conflict(String),
    /// A state change the resource's current state does not allow; `allowed` names those it does.
    #[error("{message}")]
    InvalidTransition { message: String, allowed: Vec<String> },
    /// An `Idempotency-Key` sent again with a different request.
    #[error("this Idempotency-Key was used for a different request (method, path or body); use a new key")]
    IdempotencyKeyReused,
    /// A database refusal of the request's content (SQLSTATE class 22 or 23): the database's
    /// message, with its SQLSTATE, detail and hint as details.
    #[error("{message}")]
    Rejected {
        status: u16,
        code: &'static str,
        message: String,
        details: Value,
    },
    /// A dependency (the database) is unreachable or failing; retrying later may work. The
    /// detail is logged, never sent.
    #[error("{public}")]
    Unavailable { public: String, detail: String },
    /// The proxy's upstream failed: unreachable, or answered an error status.
    #[error("{message}")]
    UpstreamError {
        message: String,
        upstream_status: Option<u16>,
        upstream_body: Option<Value>,
    },
    #[error("the upstream did not answer within {timeout_ms} ms")]
    UpstreamTimeout { timeout_ms: u64 },
    #[error("no upstream is configured for the proxy (setting upstream_base_url)")]
    UpstreamNotConfigured,
    /// A session archive read back from S3 that cannot be replayed: missing (`archive_missing`)
    /// or not what was written (`archive_damaged`, with the recorded and actual SHA-256).
    #[error("{message}")]
    ArchiveUnreadable {
        code: &'static str,
        message: String,
        details: Value,
    },
    /// The detail is logged, never sent: it may name files, hosts or internals.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidRequest {
            message: message.into(),
            details: None,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidRequest { .. } => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::NotFound { .. } => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            Self::Overloaded { .. } | Self::Shed { .. } | Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            Self::PermissionDenied(_) => StatusCode::FORBIDDEN,
            Self::ResourceNotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) | Self::InvalidTransition { .. } => StatusCode::CONFLICT,
            Self::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Rejected { status, .. } => StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST),
            Self::Unavailable { .. } | Self::UpstreamNotConfigured => StatusCode::SERVICE_UNAVAILABLE,
            // The client's own mistakes, reported by the upstream, keep their status; anything
            // else (the upstream's failures, our key refused) is a bad gateway.
            Self::UpstreamError { upstream_status, .. } => match upstream_status {
                Some(s @ (400 | 404 | 409 | 413 | 422 | 429)) => {
                    StatusCode::from_u16(*s).unwrap_or(StatusCode::BAD_GATEWAY)
                }
                _ => StatusCode::BAD_GATEWAY,
            },
            Self::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            // The object store, our upstream, returned something other than what was written.
            Self::ArchiveUnreadable { .. } => StatusCode::BAD_GATEWAY,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Stable machine-readable code: clients branch on this, never on the message.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest { .. } => "invalid_request",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::NotFound { .. } => "not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::Overloaded { .. } | Self::Shed { .. } => "overloaded",
            Self::RateLimited { .. } => "rate_limited",
            Self::NotReady(_) => "not_ready",
            Self::Unauthenticated(_) => "unauthenticated",
            Self::PermissionDenied(_) => "permission_denied",
            Self::ResourceNotFound(_) => "not_found",
            Self::Conflict(_) => "conflict",
            Self::InvalidTransition { .. } => "invalid_transition",
            Self::IdempotencyKeyReused => "idempotency_key_reused",
            Self::Rejected { code, .. } => code,
            Self::Unavailable { .. } => "unavailable",
            Self::UpstreamError { .. } => "upstream_error",
            Self::UpstreamTimeout { .. } => "upstream_timeout",
            Self::UpstreamNotConfigured => "upstream_not_configured",
            Self::ArchiveUnreadable { code, .. } => code,
            Self::Internal(_) => "internal",
        }
    }

    /// The same classification for gRPC callers (RESOURCE_EXHAUSTED is gRPC's 429; UNAVAILABLE
    /// tells clients and balancers to try again or elsewhere).
    pub fn grpc_code(&self) -> tonic::Code {
        match self {
            Self::InvalidRequest { .. } | Self::PayloadTooLarge { .. } | Self::UnsupportedMediaType(_) => {
                tonic::Code::InvalidArgument
            }
            Self::NotFound { .. } => tonic::Code::NotFound,
            Self::MethodNotAllowed { .. } => tonic::Code::Unimplemented,
            Self::Overloaded { .. } | Self::Shed { .. } | Self::RateLimited { .. } => tonic::Code::ResourceExhausted,
            Self::NotReady(_) => tonic::Code::Unavailable,
            Self::Unauthenticated(_) => tonic::Code::Unauthenticated,
            Self::PermissionDenied(_) => tonic::Code::PermissionDenied,
            Self::ResourceNotFound(_) => tonic::Code::NotFound,
            Self::Conflict(_) | Self::InvalidTransition { .. } | Self::IdempotencyKeyReused => {
                tonic::Code::FailedPrecondition
            }
            Self::Rejected { status, .. } => match status {
                404 => tonic::Code::NotFound,
                409 => tonic::Code::AlreadyExists,
                403 => tonic::Code::PermissionDenied,
                _ => tonic::Code::InvalidArgument,
            },
            Self::Unavailable { .. } | Self::UpstreamError { .. } | Self::UpstreamNotConfigured => {
                tonic::Code::Unavailable
            }
            Self::UpstreamTimeout { .. } => tonic::Code::DeadlineExceeded,
            Self::ArchiveUnreadable { .. } => tonic::Code::DataLoss,
            Self::Internal(_) => tonic::Code::Internal,
        }
    }

    pub fn details(&self) -> Option<Value> {
        match self {
            Self::InvalidRequest { details, .. } | Self::PayloadTooLarge { details, .. } => details.clone(),
            Self::Overloaded { max_inflight } => Some(json!({ "max_inflight": max_inflight })),
            Self::Shed { retry_after } => Some(json!({ "retry_after_ms": retry_after.as_millis() as u64 })),
            Self::RateLimited { retry_after, limit } => Some(json!({
                "retry_after_ms": retry_after.as_millis() as u64,
                "limit": limit,
            })),
            Self::UpstreamError {
                upstream_status,
                upstream_body,
                ..
            } => Some(json!({ "upstream_status": upstream_status, "upstream_body": upstream_body })),
            Self::UpstreamTimeout { timeout_ms } => Some(json!({ "timeout_ms": timeout_ms })),
            Self::InvalidTransition { allowed, .. } => Some(json!({ "allowed": allowed })),
            Self::Rejected { details, .. } | Self::ArchiveUnreadable { details, .. } => Some(details.clone()),
            _ => None,
        }
    }

    /// The JSON envelope.
    pub fn envelope(&self, request_id: Option<&str>) -> Value {
        json!({
            "error": {
                "code": self.code(),
                "message": self.to_string(),
                "details": self.details(),
                "request_id": request_id,
            }
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let request_id = current_request_id();
        self.log(request_id.as_deref());
        let mut response = (self.status(), axum::Json(self.envelope(request_id.as_deref()))).into_response();
        if let Self::RateLimited { retry_after, .. } = &self {
            // Whole seconds, rounded up: retrying at the announced time must succeed.
            let seconds = retry_after.as_millis().div_ceil(1000).max(1);
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        if matches!(
            self,
            Self::Overloaded { .. } | Self::Shed { .. } | Self::NotReady(_) | Self::Unavailable { .. }
        ) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if matches!(self, Self::Unauthenticated(_)) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl ApiError {
    /// The details that are never sent are logged where the error is answered.
    pub(crate) fn log(&self, request_id: Option<&str>) {
        match self {
            Self::Internal(detail) => tracing::error!(request_id, error = %detail, "internal error"),
            Self::Unavailable { detail, .. } => tracing::warn!(request_id, error = %detail, "dependency unavailable"),
            Self::ArchiveUnreadable { message, .. } => {
                tracing::error!(request_id, error = %message, "session archive unreadable")
            }
            _ => {}
        }
    }

    /// A database failure on a request path: the client learns the database is unavailable,
    /// the log learns why.
    pub fn database(context: &str, error: impl std::fmt::Display) -> Self {
        Self::Unavailable {
            public: "the database is unavailable; retry shortly".into(),
            detail: format!("{context}: {error}"),
        }
    }
}

impl From<ApiError> for tonic::Status {
    fn from(error: ApiError) -> Self {
        error.log(None);
        let mut status = tonic::Status::new(error.grpc_code(), error.to_string());
        status.metadata_mut().insert(
            "ibex-error-code",
            tonic::metadata::MetadataValue::from_static(error.code()),
        );
        if let ApiError::Shed { retry_after } | ApiError::RateLimited { retry_after, .. } = &error {
            // gRPC has no Retry-After; the hint travels as metadata, in milliseconds.
            status
                .metadata_mut()
                .insert("retry-after-ms", (retry_after.as_millis() as u64).into());
        }
        status
    }
}

impl From<EmbeddingError> for ApiError {
    fn from(error: EmbeddingError) -> Self {
        let message = error.to_string();
        match error {
            EmbeddingError::NoInput => Self::invalid(message),
            EmbeddingError::EmptyText { index } | EmbeddingError::Inference(EmbedError::EmptyText { index }) => {
                Self::InvalidRequest {
                    message,
                    details: Some(json!({ "index": index })),
                }
            }
            EmbeddingError::TooManyTexts { len, max }
            | EmbeddingError::Inference(EmbedError::BatchTooLarge { len, max }) => Self::PayloadTooLarge {
                message,
                details: Some(json!({ "max_texts": max, "received": len })),
            },
            EmbeddingError::TextTooLong { index, chars, max } => Self::PayloadTooLarge {
                message,
                details: Some(json!({ "index": index, "chars": chars, "max_text_chars": max })),
            },
            EmbeddingError::Loading | EmbeddingError::LoadFailed(_) => Self::NotReady(message),
            EmbeddingError::Overloaded { max_inflight } => Self::Overloaded { max_inflight },
            EmbeddingError::Inference(_) | EmbeddingError::WorkerLost => Self::Internal(message),
        }
    }
}

/// Body extraction failures: unreadable JSON and wrong shapes are the client's (400), a body over
/// the size limit is 413, a missing JSON content type 415.
impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let message = rejection.body_text();
        match rejection.status() {
            StatusCode::PAYLOAD_TOO_LARGE => Self::PayloadTooLarge { message, details: None },
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::UnsupportedMediaType(message),
            _ => Self::invalid(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_status_code_and_grpc_code() {
        let cases = [
            (
                ApiError::invalid("x"),
                400,
                "invalid_request",
                tonic::Code::InvalidArgument,
            ),
            (
                ApiError::PayloadTooLarge {
                    message: "x".into(),
                    details: None,
                },
                413,
                "payload_too_large",
                tonic::Code::InvalidArgument,
            ),
            (
                ApiError::UnsupportedMediaType("x".into()),
                415,
                "unsupported_media_type",
                tonic::Code::InvalidArgument,
            ),
            (
                ApiError::NotFound { path: "/x".into() },
                404,
                "not_found",
                tonic::Code::NotFound,
            ),
            (
                ApiError::MethodNotAllowed { method: "GET".into() },
                405,
                "method_not_allowed",
                tonic::Code::Unimplemented,
            ),
            (
                ApiError::Overloaded { max_inflight: 2 },
                429,
                "overloaded",
                tonic::Code::ResourceExhausted,
            ),
            (
                ApiError::RateLimited {
                    retry_after: std::time::Duration::from_millis(1500),
                    limit: "x".into(),
                },
                429,
                "rate_limited",
                tonic::Code::ResourceExhausted,
            ),
            (
                ApiError::NotReady("x".into()),
                503,
                "not_ready",
                tonic::Code::Unavailable,
            ),
            (ApiError::Internal("x".into()), 500, "internal", tonic::Code::Internal),
            (
                ApiError::Unauthenticated("x".into()),
                401,
                "unauthenticated",
                tonic::Code::Unauthenticated,
            ),
            (
                ApiError::PermissionDenied("x".into()),
                403,
                "permission_denied",
                tonic::Code::PermissionDenied,
            ),
            (
                ApiError::ResourceNotFound("x".into()),
                404,
                "not_found",
                tonic::Code::NotFound,
            ),
            (
                ApiError::Conflict("x".into()),
                409,
                "conflict",
                tonic::Code::FailedPrecondition,
            ),
            (
                ApiError::database("ctx", "connection refused"),
                503,
                "unavailable",
                tonic::Code::Unavailable,
            ),
            (
                ApiError::UpstreamError {
                    message: "x".into(),
                    upstream_status: Some(500),
                    upstream_body: None,
                },
                502,
                "upstream_error",
                tonic::Code::Unavailable,
            ),
            (
                ApiError::UpstreamError {
                    message: "x".into(),
                    upstream_status: Some(429),
                    upstream_body: None,
                },
                429,
                "upstream_error",
                tonic::Code::Unavailable,
            ),
            (
                ApiError::UpstreamTimeout { timeout_ms: 5 },
                504,
                "upstream_timeout",
                tonic::Code::DeadlineExceeded,
            ),
            (
                ApiError::UpstreamNotConfigured,
                503,
                "upstream_not_configured",
                tonic::Code::Unavailable,
            ),
        ];
        for (error, status, code, grpc) in cases {
            assert_eq!(error.status().as_u16(), status, "{error:?}");
            assert_eq!(error.code(), code);
            assert_eq!(error.grpc_code(), grpc);
            let status = tonic::Status::from(error);
            assert_eq!(status.code(), grpc);
            assert_eq!(status.metadata().get("ibex-error-code").unwrap(), code);
        }
    }

    #[test]
    fn core_errors_map_to_client_or_server_faults() {
        let map = |e: EmbeddingError| ApiError::from(e);
        assert_eq!(map(EmbeddingError::NoInput).code(), "invalid_request");
        let empty = map(EmbeddingError::EmptyText { index: 3 });
        assert_eq!(empty.code(), "invalid_request");
        assert_eq!(empty.details(), Some(json!({"index": 3})));
        let big = map(EmbeddingError::TooManyTexts { len: 513, max: 512 });
        assert_eq!(big.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(big.details(), Some(json!({"max_texts": 512, "received": 513})));
        assert_eq!(map(EmbeddingError::Loading).status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            map(EmbeddingError::Overloaded { max_inflight: 1 }).status(),
            StatusCode::TOO_MANY_REQUESTS
        );
        let internal = map(EmbeddingError::Inference(EmbedError::Runtime(
            "boom at /secret/path".into(),
        )));
        assert_eq!(internal.code(), "internal");
        assert!(!internal.envelope(None).to_string().contains("/secret/path"));
    }

    #[test]
    fn dependency_details_stay_in_the_log() {
        let error = ApiError::database("ensure_session", "password authentication failed for host db-7");
        let text = error.envelope(None).to_string();
        assert!(!text.contains("db-7"), "{text}");
        let upstream = ApiError::UpstreamError {
            message: "the upstream answered 500".into(),
            upstream_status: Some(500),
            upstream_body: Some(json!({"error": "boom"})),
        };
        assert_eq!(
            upstream.details(),
            Some(json!({"upstream_status": 500, "upstream_body": {"error": "boom"}}))
        );
    }

    #[test]
    fn envelope_has_the_stable_shape() {
        let error = ApiError::PayloadTooLarge {
            message: "too many".into(),
            details: Some(json!({"max_texts": 512})),
        };
        assert_eq!(
            error.envelope(Some("req-1")),
            json!({"error": {"code": "payload_too_large", "message": "too many",
                             "details": {"max_texts": 512}, "request_id": "req-1"}})
        );
        assert_eq!(ApiError::invalid("bad").envelope(None)["error"]["details"], Value::Null);
    }

    #[tokio::test]
    async fn response_carries_status_envelope_and_retry_after() {
        let response = crate::http::middleware::with_request_id("abc".into(), async {
            ApiError::Overloaded { max_inflight: 4 }.into_response()
        })
        .await;
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        let body = axum::body::to_bytes(response.into_body(), 1 << 16).await.unwrap();
        let value: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["error"]["code"], "overloaded");
        assert_eq!(value["error"]["request_id"], "abc");
        assert_eq!(value["error"]["details"]["max_inflight"], 4);

        let limited = ApiError::RateLimited {
            retry_after: std::time::Duration::from_millis(1500),
            limit: "1 text per second, burst 4".into(),
        }
        .into_response();
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            limited.headers()[header::RETRY_AFTER],
            "2",
            "rounded up to whole seconds"
        );
    }
}
