//! Login with a token, logout. The login form is protected by a double-submit token (a cookie
//! and a hidden field that must match), since there is no session yet.

use askama::Template;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use std::sync::Arc;

use super::{clear_session_cookie, cookie, form, query, CsrfForm, Ui};
use crate::render::{page, Chrome, PageError, MOUNT};
use crate::security::same_token;
use crate::sessions::random_token;

const LOGIN_COOKIE: &str = "ibex_login";
/// Longer than any token IBEX issues; a longer one is refused without asking the auth service.
const MAX_TOKEN_CHARS: usize = 200;

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    chrome: Chrome,
    csrf: String,
    notice: Option<&'static str>,
    error: Option<String>,
}

#[derive(Deserialize)]
pub struct LoginQuery {
    reason: Option<String>,
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    token: String,
    csrf: Option<String>,
}

fn notice(reason: Option<&str>) -> Option<&'static str> {
    match reason? {
        "expired" => Some("Your session has expired. Sign in again."),
        "revoked" => Some("Your token no longer works (revoked or expired). Sign in with another one."),
        "signed_out" => Some("Sign in to continue."),
        "logged_out" => Some("You are signed out."),
        _ => None,
    }
}

/// The login page with a fresh double-submit token (cookie + hidden field).
fn login_page(status: StatusCode, notice: Option<&'static str>, error: Option<String>) -> Response {
    let csrf = random_token();
    let mut response = page(
        status,
        &LoginPage {
            chrome: Chrome::new("Sign in", "", None),
            csrf: csrf.clone(),
            notice,
            error,
        },
    );
    let value = format!("{LOGIN_COOKIE}={csrf}; Path={MOUNT}/login; HttpOnly; SameSite=Strict; Max-Age=3600");
    if let Ok(value) = HeaderValue::from_str(&value) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

pub async fn form_page(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    params: Result<Query<LoginQuery>, QueryRejection>,
) -> Response {
    if ui.session(&headers).is_ok() {
        return Redirect::to(&format!("{MOUNT}/")).into_response();
    }
    let reason = query(params).ok().and_then(|q| q.reason);
    login_page(StatusCode::OK, notice(reason.as_deref()), None)
}

pub async fn submit(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    fields: Result<Form<LoginForm>, FormRejection>,
) -> Response {
    let fields = match form(fields) {
        Ok(fields) => fields,
        Err(e) => return e.into_response(),
    };
    if !same_token(cookie(&headers, LOGIN_COOKIE).unwrap_or(""), fields.csrf.as_deref()) {
        return login_page(
            StatusCode::FORBIDDEN,
            None,
            Some("The login form had expired (its CSRF token did not match). Nothing was sent; try again.".into()),
        );
    }
    let token = fields.token.trim().to_string();
    if token.is_empty() || token.chars().count() > MAX_TOKEN_CHARS {
        return login_page(
            StatusCode::UNPROCESSABLE_ENTITY,
            None,
            Some(format!(
                "Paste an IBEX API token (ibx_…, at most {MAX_TOKEN_CHARS} characters)."
            )),
        );
    }
    match (ui.check)(token.clone()).await {
        Ok(identity) => {
            tracing::info!(org = %identity.org, token = %identity.token_prefix, "dashboard sign-in");
            let id = ui.sessions.start(token, identity);
            let mut response = Redirect::to(&format!("{MOUNT}/")).into_response();
            let headers = response.headers_mut();
            headers.append(header::SET_COOKIE, ui.session_cookie(&id));
            headers.append(
                header::SET_COOKIE,
                HeaderValue::from_static("ibex_login=; Path=/dashboard/login; HttpOnly; SameSite=Strict; Max-Age=0"),
            );
            response
        }
        Err(reason) => login_page(StatusCode::UNAUTHORIZED, None, Some(reason)),
    }
}

pub async fn logout(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    fields: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, PageError> {
    let fields = form(fields)?;
    ui.session_for_form(&headers, fields.csrf.as_deref())?;
    ui.sessions.end(cookie(&headers, super::SESSION_COOKIE));
    let mut response = Redirect::to(&format!("{MOUNT}/login?reason=logged_out")).into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, clear_session_cookie());
    Ok(response)
}
