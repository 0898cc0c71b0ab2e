//! The IBEX operator dashboard: pages rendered on the server (Askama templates, one stylesheet,
//! no JavaScript), mounted by `ibex serve` at `/dashboard`.
//!
//! * **One data path.** Every page reads and writes through the management API, called in
//!   process on its router with the signed-in operator's token ([`api::Api`]): the same auth,
//!   scopes, row-level security, validation and SQL functions as `/v1` over HTTP.
//! * **Login with a token.** The token is checked by the sidecar's auth service
//!   ([`TokenCheck`]), then kept server-side in a session ([`sessions`]); the browser holds only
//!   a random session id in an `HttpOnly`, `SameSite=Strict` cookie (`Secure` over TLS), with an
//!   idle and an absolute expiry, and logout.
//! * **Forms** carry a per-session CSRF token, compared in constant time; the login form a
//!   double-submit one. Bodies are bounded before they are read.
//! * **Headers.** A strict Content-Security-Policy (only this origin's stylesheet; no script, no
//!   frame, forms post to this origin), `no-store`, `nosniff`, no referrer.
//! * **Scopes decide** what a page offers: an action the token lacks is not shown, and the API
//!   refuses it anyway.

mod api;
mod charts;
mod diff;
mod pages;
mod render;
mod security;
pub mod sessions;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use futures_util::future::BoxFuture;
use uuid::Uuid;

/// Who signed in: what the auth service answered for the token.
#[derive(Clone, Debug)]
pub struct Identity {
    pub org: Uuid,
    /// An agent-bound token acts for this agent only.
    pub agent: Option<Uuid>,
    pub scopes: Vec<String>,
    /// The token's display prefix (`ibx_` and 4 more characters).
    pub token_prefix: String,
}

impl Identity {
    /// `admin` implies every scope of its org (the API's rule; it decides again on each call).
    pub fn can(&self, scope: &str) -> bool {
        self.scopes
            .iter()
            .any(|s| s == scope || (s == "admin" && scope != "platform:admin"))
    }
}

/// Checks a token with the sidecar's auth service; `Err` carries the reason shown on the login
/// page (unknown, revoked, expired, too many attempts).
pub type TokenCheck = Arc<dyn Fn(String) -> BoxFuture<'static, Result<Identity, String>> + Send + Sync>;

/// What the dashboard needs from the process that mounts it.
pub struct Dashboard {
    /// The management API's router, state applied.
    pub api: Router,
    pub check: TokenCheck,
    /// Mark cookies `Secure` (the sidecar is served over TLS, directly or behind a proxy).
    pub secure_cookies: bool,
    /// A session unused this long is over.
    pub session_idle: Duration,
    /// A session is over this long after login, used or not.
    pub session_max: Duration,
}

/// Largest form accepted on most pages: their longest field is an agent description (4 KB).
const MAX_FORM_BYTES: usize = 64 * 1024;
/// Largest directive form: 100,000 characters of content (the API's bound), URL-encoded at up
/// to 12 bytes a character, and the other fields.
const MAX_DIRECTIVE_FORM_BYTES: usize = 1_300_000;

/// The dashboard's routes, relative to where they are mounted (`/dashboard`).
pub fn router(dashboard: Dashboard) -> Router {
    let ui = Arc::new(pages::Ui::new(dashboard));
    Router::new()
        .route("/", get(pages::overview::show))
        .route("/login", get(pages::login::form_page).post(pages::login::submit))
        .route("/logout", post(pages::login::logout))
        .route("/agents", get(pages::agents::list).post(pages::agents::create))
        .route("/agents/{id}", get(pages::agents::detail).post(pages::agents::update))
        .route("/agents/{id}/status", post(pages::agents::set_status))
        .route(
            "/agents/{id}/delete",
            get(pages::agents::confirm_delete).post(pages::agents::delete),
        )
        .route(
            "/agents/{id}/directives",
            get(pages::directives::list)
                .post(pages::directives::create)
                .layer(DefaultBodyLimit::max(MAX_DIRECTIVE_FORM_BYTES)),
        )
        .route(
            "/directives/{id}",
            get(pages::directives::detail)
                .post(pages::directives::change)
                .layer(DefaultBodyLimit::max(MAX_DIRECTIVE_FORM_BYTES)),
        )
        .route("/memories", get(pages::memories::list))
        .route("/memories/{id}", get(pages::memories::detail))
        .route(
            "/memories/{id}/delete",
            get(pages::memories::confirm_delete).post(pages::memories::delete),
        )
        .route("/conflicts", get(pages::conflicts::list))
        .route("/conflicts/{id}/resolve", post(pages::conflicts::resolve))
        .route("/sessions", get(pages::sessions::list))
        .route("/sessions/{id}", get(pages::sessions::detail))
        .route("/sessions/{id}/replay", get(pages::sessions::replay))
        .route("/analytics", get(pages::analytics::show))
        .route("/tokens", get(pages::tokens::list).post(pages::tokens::create))
        .route("/tokens/{id}/revoke", post(pages::tokens::revoke))
        .route("/static/app.css", get(pages::stylesheet))
        .fallback(pages::not_found)
        .layer(DefaultBodyLimit::max(MAX_FORM_BYTES))
        .layer(axum::middleware::from_fn(security::headers))
        .with_state(ui)
}
