//! Reading a whole request body under the configured cap, for middleware that needs the bytes
//! before a handler does (idempotency fingerprints, the MCP endpoint).

use axum::body::{to_bytes, Body, Bytes};

use crate::error::ApiError;

/// The body's bytes, or the error envelope: 413 when it is over `max` bytes, 400 when the client
/// broke off sending it.
pub async fn read_limited(body: Body, max: usize) -> Result<Bytes, ApiError> {
    to_bytes(body, max).await.map_err(|error| {
        let over_limit =
            std::error::Error::source(&error).is_some_and(|source| source.is::<http_body_util::LengthLimitError>());
        if over_limit {
            ApiError::PayloadTooLarge {
                message: format!("the request body is over the limit of {max} bytes"),
                details: None,
            }
        } else {
            ApiError::InvalidRequest {
                message: format!("the request body could not be read: {error}"),
                details: None,
            }
        }
    })
}
