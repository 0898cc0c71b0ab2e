//! What every page shares: the frame around it (title, navigation, the signed-in operator,
//! the logout form), rendering, and the error page in the same look.

use askama::Template;
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};

use crate::api::ApiFailure;
use crate::sessions::Session;

/// Where the sidecar mounts the dashboard; links in the templates start with it.
pub const MOUNT: &str = "/dashboard";

/// The frame of a page.
pub struct Chrome {
    pub title: String,
    /// The navigation entry to highlight.
    pub nav: &'static str,
    pub signed_in: Option<SignedIn>,
}

pub struct SignedIn {
    pub org: String,
    pub token_prefix: String,
    pub csrf: String,
    pub agents: bool,
    pub memories: bool,
    pub sessions: bool,
    pub analytics: bool,
    pub tokens: bool,
}

impl Chrome {
    pub fn new(title: impl Into<String>, nav: &'static str, session: Option<&Session>) -> Self {
        Self {
            title: title.into(),
            nav,
            signed_in: session.map(|s| SignedIn {
                org: s.identity.org.to_string(),
                token_prefix: s.identity.token_prefix.clone(),
                csrf: s.csrf.clone(),
                agents: s.identity.can("agents:read"),
                memories: s.identity.can("memories:read"),
                sessions: s.identity.can("sessions:read"),
                analytics: s.identity.can("analytics:read"),
                tokens: s.identity.can("tokens:manage"),
            }),
        }
    }
}

/// A page rendered, or the error page if its template fails (it should not: templates are
/// checked at build time, only a formatting error can happen).
pub fn page<T: Template>(status: StatusCode, template: &T) -> Response {
    match template.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a dashboard template failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page could not be rendered").into_response()
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    chrome: Chrome,
    status: u16,
    heading: String,
    reason: String,
}

/// Why a page cannot be shown; each is a page in the dashboard's look with the reason, and
/// nothing was changed.
#[derive(Debug)]
pub enum PageError {
    /// Not signed in, or the session is over: back to the login page, saying why.
    SignIn(&'static str),
    /// A form without the session's CSRF token.
    Csrf,
    /// The API refused or failed; its status and message are shown.
    Api(ApiFailure),
    /// Input refused before any call.
    BadInput(String),
    NotFound,
}

impl From<ApiFailure> for PageError {
    fn from(failure: ApiFailure) -> Self {
        if failure.status == StatusCode::UNAUTHORIZED {
            // The token was revoked or expired since login.
            Self::SignIn("revoked")
        } else {
            Self::Api(failure)
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, heading, reason) = match self {
            Self::SignIn(reason) => {
                let mut response = Redirect::to(&format!("{MOUNT}/login?reason={reason}")).into_response();
                response
                    .headers_mut()
                    .insert(header::SET_COOKIE, crate::pages::clear_session_cookie());
                return response;
            }
            Self::Csrf => (
                StatusCode::FORBIDDEN,
                "The form has expired",
                "This form was not sent from a current page of your session (its CSRF token is missing \
                 or wrong), so nothing was changed. Reload the page and send it again."
                    .to_string(),
            ),
            Self::Api(failure) => {
                let heading = match failure.status {
                    StatusCode::FORBIDDEN => "Not allowed",
                    StatusCode::NOT_FOUND => "Not found",
                    StatusCode::CONFLICT => "Conflict",
                    StatusCode::TOO_MANY_REQUESTS => "Too many requests",
                    s if s.is_client_error() => "Request refused",
                    _ => "Something went wrong",
                };
                (
                    failure.status,
                    heading,
                    format!("{} ({})", failure.message, failure.code),
                )
            }
            Self::BadInput(reason) => (StatusCode::UNPROCESSABLE_ENTITY, "Request refused", reason),
            Self::NotFound => (
                StatusCode::NOT_FOUND,
                "Not found",
                "There is no such page in the dashboard.".to_string(),
            ),
        };
        page(
            status,
            &ErrorPage {
                chrome: Chrome::new(heading, "", None),
                status: status.as_u16(),
                heading: heading.to_string(),
                reason,
            },
        )
    }
}
