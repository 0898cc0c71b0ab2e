//! The call to the upstream: posting the request, turning every way it can fail into the error
//! envelope, and reading a non-streamed answer.

use std::time::Duration;

use axum::body::Bytes;
use serde_json::Value;

use crate::config::Config;
use crate::error::ApiError;

/// Upstream error bodies are kept up to this size in the envelope.
const MAX_ERROR_BODY: usize = 16 * 1024;

/// A call that got no answer to pass on: the status recorded for it and the client's error.
pub(super) struct Failure {
    pub status: u16,
    pub error: ApiError,
}

impl Failure {
    fn timeout(timeout: Duration) -> Self {
        Self {
            status: 504,
            error: ApiError::UpstreamTimeout {
                timeout_ms: timeout.as_millis() as u64,
            },
        }
    }

    fn broken(message: String, upstream_status: Option<u16>) -> Self {
        Self {
            status: 502,
            error: ApiError::UpstreamError {
                message,
                upstream_status,
                upstream_body: None,
            },
        }
    }
}

/// Posts the body to `<base>/chat/completions` and waits (at most `upstream_timeout`) for the
/// response headers. A non-2xx answer is a failure carrying the upstream's status and body.
pub(super) async fn post_chat(
    client: &reqwest::Client,
    config: &Config,
    base: &str,
    body: &Value,
) -> Result<reqwest::Response, Failure> {
    let url = format!("{}/chat/completions", base.trim_end_matches('/'));
    let mut request = client.post(&url).json(body);
    if let Some(key) = &config.upstream_api_key {
        request = request.bearer_auth(&key.0);
    }
    let timeout = config.upstream_timeout;
    let response = match tokio::time::timeout(timeout, request.send()).await {
        Err(_) => return Err(Failure::timeout(timeout)),
        Ok(Err(e)) => {
            return Err(Failure::broken(
                format!("cannot reach the upstream: {}", without_url(&e)),
                None,
            ))
        }
        Ok(Ok(response)) => response,
    };
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = match tokio::time::timeout(timeout, response.bytes()).await {
        Ok(Ok(bytes)) => {
            let cut = &bytes[..bytes.len().min(MAX_ERROR_BODY)];
            Some(serde_json::from_slice(cut).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(cut).into())))
        }
        _ => None,
    };
    Err(Failure {
        status: status.as_u16(),
        error: ApiError::UpstreamError {
            message: format!("the upstream answered {status}"),
            upstream_status: Some(status.as_u16()),
            upstream_body: body,
        },
    })
}

/// A non-streamed answer: the body as received (returned to the client unchanged) and what is
/// recorded of it.
pub(super) struct Answer {
    pub status: u16,
    pub body: Bytes,
    pub reply: String,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
}

/// Reads a whole non-streamed answer, waiting at most `timeout` for it.
pub(super) async fn read_answer(response: reqwest::Response, timeout: Duration) -> Result<Answer, Failure> {
    let status = response.status().as_u16();
    let body = match tokio::time::timeout(timeout, response.bytes()).await {
        Err(_) => return Err(Failure::timeout(timeout)),
        Ok(Err(e)) => {
            return Err(Failure::broken(
                format!("the upstream's answer broke off: {}", without_url(&e)),
                Some(status),
            ))
        }
        Ok(Ok(body)) => body,
    };
    let Ok(parsed) = serde_json::from_slice::<Value>(&body) else {
        let text = String::from_utf8_lossy(&body[..body.len().min(MAX_ERROR_BODY)]).into_owned();
        return Err(Failure {
            status: 502,
            error: ApiError::UpstreamError {
                message: "the upstream's answer is not JSON".into(),
                upstream_status: Some(status),
                upstream_body: Some(Value::String(text)),
            },
        });
    };
    Ok(Answer {
        status,
        reply: parsed["choices"][0]["message"]["content"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        prompt_tokens: parsed["usage"]["prompt_tokens"].as_u64(),
        completion_tokens: parsed["usage"]["completion_tokens"].as_u64(),
        body,
    })
}

/// reqwest's errors name the URL; the upstream's URL is configuration, not for clients.
pub(super) fn without_url(error: &reqwest::Error) -> String {
    let kind = if error.is_connect() {
        "connection failed"
    } else if error.is_timeout() {
        "timed out"
    } else if error.is_body() || error.is_decode() {
        "bad response body"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(error);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind} ({detail})")
    }
}
