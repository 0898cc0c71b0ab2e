//! `Idempotency-Key` on POST: a client that retries a create (after a timeout, a dropped
//! connection) with the same key gets the first answer again instead of a second resource.
//!
//! The first answer is kept in Redis for `idempotency_ttl` (a day by default) under the key's
//! SHA-256 and the calling token's hash, so keys of different tokens (and orgs) never meet. A key
//! is claimed before the request runs (`SET NX`, with a short lease); a retry that arrives while
//! the first is still running is refused with 409, and a key reused for a different request
//! (another path or body) with 422. Only answers that a retry must see again are kept: successes
//! and the client's own mistakes; a failure that a retry may fix (401, 403, 429, 5xx) releases the
//! key. Without Redis a POST that carries the header is refused (503): replay cannot be promised.

use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ibex_engine::content::sha256_hex;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::state::AppState;

pub static IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
pub static IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");
const MAX_KEY_LEN: usize = 255;
/// How long a claimed key waits for its answer before another request may claim it again (a
/// sidecar that died mid-request must not block the key for a day).
const LEASE: Duration = Duration::from_secs(60);
/// Answers larger than this are not kept (management answers are small; lists are GETs).
const MAX_STORED_BODY: usize = 1 << 20;

#[derive(Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
enum Entry {
    Running {
        fingerprint: String,
    },
    Done {
        fingerprint: String,
        status: u16,
        body: String,
    },
}

pub struct IdempotencyStore {
    connection: ConnectionManager,
    ttl: Duration,
}

impl IdempotencyStore {
    pub fn new(url: &str, timeout: Duration, ttl: Duration) -> Result<Self, redis::RedisError> {
        let client = redis::Client::open(url)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1);
        Ok(Self {
            connection: ConnectionManager::new_lazy_with_config(client, config)?,
            ttl,
        })
    }

    fn unavailable(e: redis::RedisError) -> ApiError {
        ApiError::Unavailable {
            public: "Idempotency-Key needs the idempotency store (Redis), which is unavailable; retry shortly".into(),
            detail: format!("idempotency store: {e}"),
        }
    }

    /// Claims `key` for a request; `Some(entry)` when it was claimed before.
    async fn claim(&self, key: &str, fingerprint: &str) -> Result<Option<Entry>, ApiError> {
        let mut c = self.connection.clone();
        let running = serde_json::to_string(&Entry::Running {
            fingerprint: fingerprint.to_string(),
        })
        .map_err(|e| ApiError::Internal(e.to_string()))?;
        let claimed: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(&running)
            .arg("NX")
            .arg("PX")
            .arg(LEASE.as_millis() as u64)
            .query_async(&mut c)
            .await
            .map_err(Self::unavailable)?;
        if claimed.is_some() {
            return Ok(None);
        }
        let existing: Option<String> = redis::cmd("GET")
            .arg(key)
            .query_async(&mut c)
            .await
            .map_err(Self::unavailable)?;
        // Gone between SET and GET (the lease ran out): the caller may simply retry.
        let existing =
            existing.ok_or_else(|| ApiError::Conflict("this Idempotency-Key is being released; retry".into()))?;
        serde_json::from_str(&existing)
            .map(Some)
            .map_err(|e| ApiError::Internal(format!("idempotency entry unreadable: {e}")))
    }

    async fn finish(&self, key: &str, entry: Option<Entry>) {
        let mut c = self.connection.clone();
        let result: Result<(), redis::RedisError> = match entry {
            Some(entry) => match serde_json::to_string(&entry) {
                Ok(text) => {
                    redis::cmd("SET")
                        .arg(key)
                        .arg(text)
                        .arg("PX")
                        .arg(self.ttl.as_millis() as u64)
                        .query_async(&mut c)
                        .await
                }
                Err(_) => return,
            },
            None => redis::cmd("DEL").arg(key).query_async(&mut c).await,
        };
        if let Err(e) = result {
            // The key then expires with its lease; a retry after that runs again.
            tracing::warn!(error = %e, "idempotency store: could not record an answer");
        }
    }
}

/// Whether a retry must see this answer again.
fn keep(status: StatusCode) -> bool {
    status.is_success()
        || (status.is_client_error()
            && !matches!(
                status,
                StatusCode::UNAUTHORIZED
                    | StatusCode::FORBIDDEN
                    | StatusCode::REQUEST_TIMEOUT
                    | StatusCode::TOO_MANY_REQUESTS
            ))
}

fn valid_key(value: &HeaderValue) -> Option<&str> {
    let text = value.to_str().ok()?;
    (!text.is_empty() && text.len() <= MAX_KEY_LEN && text.bytes().all(|b| b.is_ascii_graphic())).then_some(text)
}

/// The middleware: POSTs with the header are claimed, answered once, and replayed after.
pub async fn honour(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let Some(value) = request.headers().get(&IDEMPOTENCY_KEY).cloned() else {
        return next.run(request).await;
    };
    match run_once(&state, &value, request, next).await {
        Ok(response) | Err(response) => response,
    }
}

async fn run_once(state: &AppState, value: &HeaderValue, request: Request, next: Next) -> Result<Response, Response> {
    let reject = |e: ApiError| e.into_response();
    let key = valid_key(value).ok_or_else(|| {
        reject(ApiError::invalid(format!(
            "Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters"
        )))
    })?;
    let store = state.idempotency.as_ref().ok_or_else(|| {
        reject(ApiError::Unavailable {
            public: "Idempotency-Key is not available: this sidecar has no redis_url".into(),
            detail: "no redis_url".into(),
        })
    })?;
    // Keys live per token: another token (of this org or another) never sees them.
    let caller = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .map(|v| sha256_hex(v.as_bytes()))
        .unwrap_or_default();
    let (parts, body) = request.into_parts();
    let bytes = crate::http::body::read_limited(body, state.config.max_body_bytes)
        .await
        .map_err(reject)?;
    let fingerprint = sha256_hex(format!("{} {}\n", parts.method, parts.uri.path()).as_bytes()) + &sha256_hex(&bytes);
    let redis_key = format!(
        "ibex:idem:v1:{}:{}",
        sha256_hex(caller.as_bytes()),
        sha256_hex(key.as_bytes())
    );
    match store.claim(&redis_key, &fingerprint).await.map_err(reject)? {
        None => {}
        Some(Entry::Running { fingerprint: f }) | Some(Entry::Done { fingerprint: f, .. }) if f != fingerprint => {
            return Err(reject(ApiError::IdempotencyKeyReused));
        }
        Some(Entry::Running { .. }) => {
            return Err(reject(ApiError::Conflict(
                "a request with this Idempotency-Key is still running; retry when it has finished".into(),
            )));
        }
        Some(Entry::Done { status, body, .. }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let mut response = (status, [(axum::http::header::CONTENT_TYPE, "application/json")], body).into_response();
            response
                .headers_mut()
                .insert(IDEMPOTENT_REPLAYED.clone(), HeaderValue::from_static("true"));
            return Ok(response);
        }
    }
    let response = next.run(Request::from_parts(parts, Body::from(bytes))).await;
    let status = response.status();
    if !keep(status) {
        store.finish(&redis_key, None).await;
        return Ok(response);
    }
    let (parts, body) = response.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_STORED_BODY).await else {
        store.finish(&redis_key, None).await;
        return Ok(ApiError::Internal("an answer too large to keep for Idempotency-Key".into()).into_response());
    };
    let text = String::from_utf8_lossy(&bytes).into_owned();
    store
        .finish(
            &redis_key,
            Some(Entry::Done {
                fingerprint,
                status: status.as_u16(),
                body: text,
            }),
        )
        .await;
    Ok(Response::from_parts(parts, Body::from(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_answers_are_kept() {
        assert!(keep(StatusCode::CREATED));
        assert!(keep(StatusCode::BAD_REQUEST));
        assert!(keep(StatusCode::CONFLICT));
        assert!(!keep(StatusCode::UNAUTHORIZED));
        assert!(!keep(StatusCode::TOO_MANY_REQUESTS));
        assert!(!keep(StatusCode::SERVICE_UNAVAILABLE));
    }

    #[test]
    fn keys_are_checked() {
        assert_eq!(valid_key(&HeaderValue::from_static("abc-1")), Some("abc-1"));
        assert_eq!(valid_key(&HeaderValue::from_static("has space")), None);
        assert_eq!(valid_key(&HeaderValue::from_str(&"k".repeat(256)).unwrap()), None);
    }
}
