//! The pages: one module per area. Handlers stay thin: open the session, check the CSRF token
//! of a form, call the API, render.

pub mod agents;
pub mod analytics;
pub mod conflicts;
pub mod directives;
pub mod login;
pub mod memories;
pub mod overview;
pub mod sessions;
pub mod tokens;

use std::sync::Arc;

use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Query};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, Utc};
use serde::de::DeserializeOwned;

use crate::api::Api;
use crate::render::{PageError, MOUNT};
use crate::security::same_token;
use crate::sessions::{Refused, Session, Sessions};
use crate::{Dashboard, TokenCheck};

/// The session cookie: a random id, nothing else.
const SESSION_COOKIE: &str = "ibex_dashboard";
/// Rows on a listing page.
const PAGE_ROWS: u32 = 50;

/// A form with no field but its CSRF token (logout, delete, revoke).
#[derive(serde::Deserialize)]
pub struct CsrfForm {
    pub csrf: Option<String>,
}

pub struct Ui {
    pub api: Api,
    pub check: TokenCheck,
    pub sessions: Sessions,
    pub secure_cookies: bool,
}

impl Ui {
    pub fn new(dashboard: Dashboard) -> Self {
        Self {
            api: Api::new(dashboard.api),
            check: dashboard.check,
            sessions: Sessions::new(dashboard.session_idle, dashboard.session_max),
            secure_cookies: dashboard.secure_cookies,
        }
    }

    /// The signed-in session of a request, or back to the login page.
    pub fn session(&self, headers: &HeaderMap) -> Result<Arc<Session>, PageError> {
        self.sessions
            .open(cookie(headers, SESSION_COOKIE))
            .map_err(|refused| match refused {
                Refused::Unknown => PageError::SignIn("signed_out"),
                Refused::Expired => PageError::SignIn("expired"),
            })
    }

    /// The session of a form's request, its CSRF token checked.
    pub fn session_for_form(&self, headers: &HeaderMap, csrf: Option<&str>) -> Result<Arc<Session>, PageError> {
        let session = self.session(headers)?;
        if !same_token(&session.csrf, csrf) {
            return Err(PageError::Csrf);
        }
        Ok(session)
    }

    fn session_cookie(&self, id: &str) -> HeaderValue {
        let secure = if self.secure_cookies { "; Secure" } else { "" };
        let value = format!(
            "{SESSION_COOKIE}={id}; Path={MOUNT}; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            self.sessions.max_age().as_secs()
        );
        HeaderValue::from_str(&value).expect("a hex id and fixed attributes make a valid header")
    }
}

pub fn clear_session_cookie() -> HeaderValue {
    HeaderValue::from_static("ibex_dashboard=; Path=/dashboard; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A form's fields, or a page saying what is wrong with it (too large, a field missing).
pub fn form<T: DeserializeOwned>(form: Result<Form<T>, FormRejection>) -> Result<T, PageError> {
    form.map(|Form(t)| t).map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            PageError::BadInput(format!(
                "The form is larger than {} KiB; nothing was changed.",
                crate::MAX_FORM_BYTES / 1024
            ))
        } else {
            PageError::BadInput(format!("The form could not be read: {}", rejection.body_text()))
        }
    })
}

/// A page's query parameters, or a page saying what is wrong with them.
pub fn query<T: DeserializeOwned>(query: Result<Query<T>, QueryRejection>) -> Result<T, PageError> {
    query
        .map(|Query(t)| t)
        .map_err(|rejection| PageError::BadInput(format!("The address could not be read: {}", rejection.body_text())))
}

/// An id from the address: anything but a UUID names no page.
pub fn id(text: &str) -> Result<uuid::Uuid, PageError> {
    text.parse().map_err(|_| PageError::NotFound)
}

/// A query-string value, percent-encoded.
pub fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A listing's address: the path and its query parameters, each percent-encoded; empty values
/// are left out so that links stay short.
pub struct Link(String);

impl Link {
    pub fn new(path: &str) -> Self {
        Self(path.to_string())
    }

    pub fn with(mut self, key: &str, value: &str) -> Self {
        if !value.is_empty() {
            let sep = if self.0.contains('?') { '&' } else { '?' };
            self.0.push(sep);
            self.0.push_str(key);
            self.0.push('=');
            self.0.push_str(&encode(value));
        }
        self
    }

    pub fn build(self) -> String {
        self.0
    }
}

/// Days a filter's date range may span (the API bounds analytics by buckets, lists by pages;
/// this only keeps addresses sane).
const MAX_RANGE_DAYS: i64 = 3660;

/// A filter's date range from `YYYY-MM-DD` fields, both ends included: `after` is the first
/// instant of `from`, `before` the first instant after `to`.
#[derive(Default)]
pub struct DayRange {
    pub from: String,
    pub to: String,
    pub after: Option<DateTime<Utc>>,
    pub before: Option<DateTime<Utc>>,
}

impl DayRange {
    pub fn parse(from: Option<&str>, to: Option<&str>) -> Result<Self, PageError> {
        let day = |field: &str, text: Option<&str>| -> Result<Option<NaiveDate>, PageError> {
            match text.map(str::trim).filter(|t| !t.is_empty()) {
                None => Ok(None),
                Some(t) if t.len() > 10 => Err(PageError::BadInput(format!(
                    "The {field} date is not a date (YYYY-MM-DD)."
                ))),
                Some(t) => NaiveDate::parse_from_str(t, "%Y-%m-%d")
                    .map(Some)
                    .map_err(|_| PageError::BadInput(format!("The {field} date {t:?} is not a date (YYYY-MM-DD)."))),
            }
        };
        let (from, to) = (day("from", from)?, day("to", to)?);
        if let (Some(f), Some(t)) = (from, to) {
            if f > t {
                return Err(PageError::BadInput(format!(
                    "The range starts ({f}) after it ends ({t})."
                )));
            }
            if (t - f).num_days() > MAX_RANGE_DAYS {
                return Err(PageError::BadInput(format!(
                    "A range spans at most {MAX_RANGE_DAYS} days."
                )));
            }
        }
        let start = |d: NaiveDate| d.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
        Ok(Self {
            from: from.map(|d| d.to_string()).unwrap_or_default(),
            to: to.map(|d| d.to_string()).unwrap_or_default(),
            after: from.and_then(start),
            before: to.and_then(|d| d.succ_opt()).and_then(start),
        })
    }
}

/// An optional id from a filter field: empty is none, anything but a UUID is refused.
pub fn optional_id(field: &str, text: Option<&str>) -> Result<Option<uuid::Uuid>, PageError> {
    match text.map(str::trim).filter(|t| !t.is_empty()) {
        None => Ok(None),
        Some(t) => t
            .parse()
            .map(Some)
            .map_err(|_| PageError::BadInput(format!("The {field} is not an id (a UUID)."))),
    }
}

/// `2026-11-30 14:05 UTC`, or a dash.
pub fn when(at: Option<DateTime<Utc>>) -> String {
    at.map_or_else(|| "—".to_string(), |t| t.format("%Y-%m-%d %H:%M UTC").to_string())
}

/// The first `max` characters of a text, with an ellipsis when cut.
pub fn preview(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((at, _)) => format!("{}…", &text[..at]),
    }
}

pub async fn stylesheet() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("../../static/app.css"),
    )
        .into_response()
}

pub async fn not_found() -> PageError {
    PageError::NotFound
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(header::COOKIE, HeaderValue::from_static("a=1; ibex_dashboard=abc"));
        headers.append(header::COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "b"), Some("2"));
        assert_eq!(cookie(&headers, "ibex"), None);
    }

    #[test]
    fn links_leave_out_empty_values_and_encode_the_rest() {
        let link = Link::new("/dashboard/memories")
            .with("q", "a&b")
            .with("tag", "")
            .with("category", "episodic");
        assert_eq!(link.build(), "/dashboard/memories?q=a%26b&category=episodic");
    }

    #[test]
    fn day_ranges_include_both_days_and_refuse_nonsense() {
        let range = DayRange::parse(Some("2026-11-01"), Some("2026-11-30")).unwrap();
        assert_eq!(range.after.unwrap().to_rfc3339(), "2026-11-01T00:00:00+00:00");
        assert_eq!(range.before.unwrap().to_rfc3339(), "2026-12-01T00:00:00+00:00");
        let open = DayRange::parse(Some(""), None).unwrap();
        assert!(open.after.is_none() && open.before.is_none());
        assert!(DayRange::parse(Some("2026-11-30"), Some("2026-11-01")).is_err());
        assert!(DayRange::parse(Some("yesterday"), None).is_err());
        assert!(DayRange::parse(Some(&"9".repeat(5000)), None).is_err());
        assert!(DayRange::parse(Some("1900-01-01"), Some("2026-01-01")).is_err());
    }

    #[test]
    fn previews_cut_on_characters() {
        assert_eq!(preview("héllo", 10), "héllo");
        assert_eq!(preview("héllo", 2), "hé…");
    }

    #[test]
    fn query_values_are_percent_encoded() {
        assert_eq!(encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
        assert_eq!(encode("plain-1_2.3~"), "plain-1_2.3~");
    }
}
