//! Middleware of every HTTP request: the request id and client address, and one span + log line
//! + metrics sample.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use crate::metrics::Metrics;

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Client-supplied ids longer than this, or with characters outside visible ASCII, are replaced:
/// they end up in logs and headers.
const MAX_REQUEST_ID_LEN: usize = 128;

tokio::task_local! {
    static REQUEST_ID: String;
    /// The client's IP address, for limits keyed by source (failed authentications).
    static CLIENT_ADDR: String;
}

/// The address of the client being served, when the server knows it.
pub fn current_client_addr() -> Option<String> {
    CLIENT_ADDR.try_with(Clone::clone).ok()
}

/// The id of the request being served, for error envelopes built deep inside handlers.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// Runs `future` as part of the request `id`.
pub async fn with_request_id<F: Future>(id: String, future: F) -> F::Output {
    REQUEST_ID.scope(id, future).await
}

/// The request id, also available to handlers as an extension.
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

fn acceptable(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?;
    let ok = !text.is_empty() && text.len() <= MAX_REQUEST_ID_LEN && text.bytes().all(|b| b.is_ascii_graphic());
    ok.then(|| text.to_string())
}

/// Echoes the client's `x-request-id` or assigns a new one, and puts it on the response.
pub async fn request_id(mut request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(acceptable)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    request.extensions_mut().insert(RequestId(id.clone()));
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or_else(|| "unknown".to_string(), |c| c.0.ip().to_string());
    let mut response = with_request_id(id.clone(), CLIENT_ADDR.scope(client, next.run(request))).await;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(X_REQUEST_ID.clone(), value);
    }
    response
}

/// The metrics label of a method: the standard ones by name, any other `other`. HTTP lets a
/// client invent methods, and each new label value would be a new series kept until restart.
pub fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// The metrics label of a route: its template, or `unmatched` for any path no route has (404s
/// must not create a series per path tried).
pub fn route_label(request: &Request) -> String {
    request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string())
}

/// A span per request (method, path, request id, then status and latency), a log line when it
/// ends, and the request counter and latency histogram by route template and status, every
/// label from a bounded set.
pub async fn observe(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let route = route_label(&request);
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_default();
    let span = tracing::info_span!(
        "http_request",
        method = %method,
        path = %request.uri().path(),
        request_id = %request_id,
        status = tracing::field::Empty,
        latency_ms = tracing::field::Empty,
    );
    let started = Instant::now();
    let response = next.run(request).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let status = response.status();
    let labels = [method_label(&method), route.as_str(), status.as_str()];
    metrics.http_requests.with_label_values(&labels).inc();
    metrics
        .http_duration
        .with_label_values(&labels)
        .observe(elapsed.as_secs_f64());
    span.record("status", status.as_u16());
    span.record("latency_ms", elapsed.as_micros() as f64 / 1000.0);
    // Probes and scrapes arrive every few seconds; at info they would drown the request log.
    let probe = matches!(route.as_str(), "/livez" | "/readyz" | "/metrics");
    span.in_scope(|| {
        if probe {
            tracing::debug!("request finished");
        } else if status.is_server_error() {
            tracing::warn!("request finished");
        } else {
            tracing::info!("request finished");
        }
    });
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_request_ids_are_checked() {
        assert_eq!(acceptable(&HeaderValue::from_static("abc-123")), Some("abc-123".into()));
        assert_eq!(acceptable(&HeaderValue::from_static("has space")), None);
        assert_eq!(acceptable(&HeaderValue::from_static("")), None);
        let long = "x".repeat(MAX_REQUEST_ID_LEN + 1);
        assert_eq!(acceptable(&HeaderValue::from_str(&long).unwrap()), None);
    }

    #[test]
    fn invented_methods_share_one_label() {
        assert_eq!(method_label(&Method::POST), "POST");
        assert_eq!(method_label(&Method::from_bytes(b"BREW").unwrap()), "other");
        assert_eq!(method_label(&Method::from_bytes(b"FOO123").unwrap()), "other");
    }

    #[tokio::test]
    async fn request_id_is_visible_inside_its_scope_only() {
        assert_eq!(current_request_id(), None);
        let seen = with_request_id("r1".into(), async { current_request_id() }).await;
        assert_eq!(seen.as_deref(), Some("r1"));
    }
}
