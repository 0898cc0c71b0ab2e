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
    #[error("{0}")]
    NotReady(String),
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
            Self::Overloaded { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
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
            Self::Overloaded { .. } => "overloaded",
            Self::NotReady(_) => "not_ready",
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
            Self::Overloaded { .. } => tonic::Code::ResourceExhausted,
            Self::NotReady(_) => tonic::Code::Unavailable,
            Self::Internal(_) => tonic::Code::Internal,
        }
    }

    pub fn details(&self) -> Option<Value> {
        match self {
            Self::InvalidRequest { details, .. } | Self::PayloadTooLarge { details, .. } => details.clone(),
            Self::Overloaded { max_inflight } => Some(json!({ "max_inflight": max_inflight })),
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
        if let Self::Internal(detail) = &self {
            tracing::error!(request_id = request_id.as_deref(), error = %detail, "internal error");
        }
        let mut response = (self.status(), axum::Json(self.envelope(request_id.as_deref()))).into_response();
        if matches!(self, Self::Overloaded { .. } | Self::NotReady(_)) {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<ApiError> for tonic::Status {
    fn from(error: ApiError) -> Self {
        let mut status = tonic::Status::new(error.grpc_code(), error.to_string());
        status.metadata_mut().insert(
            "ibex-error-code",
            tonic::metadata::MetadataValue::from_static(error.code()),
        );
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
                ApiError::NotReady("x".into()),
                503,
                "not_ready",
                tonic::Code::Unavailable,
            ),
            (ApiError::Internal("x".into()), 500, "internal", tonic::Code::Internal),
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
    }
}
