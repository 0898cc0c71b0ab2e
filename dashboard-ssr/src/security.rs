//! Response headers of every page, and the CSRF comparison.

use axum::extract::Request;
use axum::http::header::{self, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq;

/// Only this origin's stylesheet and images; no script, no plugin, no frame; forms post here.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; \
     form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

pub async fn headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_FRAME_OPTIONS, "DENY"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    // Pages show tenant data: never kept by a shared cache or the browser's history cache.
    headers
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// Whether a submitted CSRF token is the expected one (constant time: no timing oracle).
pub fn same_token(expected: &str, submitted: Option<&str>) -> bool {
    match submitted {
        Some(submitted) if !expected.is_empty() => expected.as_bytes().ct_eq(submitted.as_bytes()).into(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_csrf_token_matches_only_itself() {
        assert!(same_token("abc", Some("abc")));
        assert!(!same_token("abc", Some("abd")));
        assert!(!same_token("abc", Some("ab")));
        assert!(!same_token("abc", None));
        assert!(!same_token("", Some("")), "an empty expectation matches nothing");
    }
}
