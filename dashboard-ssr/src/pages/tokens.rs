//! API tokens: the list (cursor-paginated, never a secret), create (the secret shown once, on
//! the answer page only), revoke.

use std::sync::Arc;

use askama::Template;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{encode, form, id, query, when, CsrfForm, Ui, PAGE_ROWS};
use crate::render::{page, Chrome, PageError, MOUNT};

const MAX_NAME_CHARS: usize = 200;
/// Scopes a form may name at most (there are 17).
const MAX_SCOPES: usize = 32;
const MAX_EXPIRY_DAYS: i64 = 3650;

#[derive(Deserialize)]
pub struct Token {
    id: uuid::Uuid,
    name: String,
    prefix: String,
    scopes: Vec<String>,
    agent_id: Option<uuid::Uuid>,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    last_used_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

impl Token {
    fn scope_list(&self) -> String {
        self.scopes.join(" ")
    }
    fn created(&self) -> String {
        when(Some(self.created_at))
    }
    fn expires(&self) -> String {
        when(self.expires_at)
    }
    fn last_used(&self) -> String {
        when(self.last_used_at)
    }
    fn agent(&self) -> String {
        self.agent_id.map_or_else(|| "any".to_string(), |a| a.to_string())
    }
    fn revoked(&self) -> bool {
        self.revoked_at.is_some()
    }
}

#[derive(Deserialize)]
struct TokenPage {
    data: Vec<Token>,
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
pub struct ListQuery {
    cursor: Option<String>,
}

#[derive(Template)]
#[template(path = "tokens.html")]
struct TokenList {
    chrome: Chrome,
    tokens: Vec<Token>,
    next: Option<String>,
}

#[derive(Template)]
#[template(path = "token_created.html")]
struct TokenCreated {
    chrome: Chrome,
    name: String,
    secret: String,
    scopes: String,
}

#[derive(Deserialize)]
pub struct CreateForm {
    csrf: Option<String>,
    #[serde(default)]
    name: String,
    /// Scopes separated by spaces or commas.
    #[serde(default)]
    scopes: String,
    /// Days until the token expires; empty: never.
    #[serde(default)]
    expires_in_days: String,
}

#[derive(Deserialize)]
struct Created {
    token: String,
    #[serde(default)]
    scopes: Vec<String>,
}

pub async fn list(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    params: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, PageError> {
    let session = ui.session(&headers)?;
    let params = query(params)?;
    let mut path = format!("/v1/tokens?limit={PAGE_ROWS}&include_revoked=true");
    if let Some(cursor) = &params.cursor {
        path.push_str(&format!("&cursor={}", encode(cursor)));
    }
    let tokens: TokenPage = ui.api.get(&session.token, &path).await?;
    Ok(page(
        StatusCode::OK,
        &TokenList {
            chrome: Chrome::new("Tokens", "tokens", Some(&session)),
            tokens: tokens.data,
            next: tokens
                .next_cursor
                .map(|c| format!("{MOUNT}/tokens?cursor={}", encode(&c))),
        },
    ))
}

/// The create form's fields as the API's request, bounded before anything is sent.
fn create_request(fields: &CreateForm) -> Result<Value, PageError> {
    let name = fields.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(PageError::BadInput(format!(
            "A token needs a name of 1 to {MAX_NAME_CHARS} characters; nothing was created."
        )));
    }
    let scopes: Vec<&str> = fields
        .scopes
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .collect();
    if scopes.is_empty() || scopes.len() > MAX_SCOPES {
        return Err(PageError::BadInput(
            "Name between 1 and 32 scopes (for example: memories:read agents:read); nothing was created.".into(),
        ));
    }
    let expires_at = match fields.expires_in_days.trim() {
        "" => Value::Null,
        days => match days.parse::<i64>() {
            Ok(d) if (1..=MAX_EXPIRY_DAYS).contains(&d) => json!(Utc::now() + chrono::Duration::days(d)),
            _ => {
                return Err(PageError::BadInput(format!(
                    "Expiry is a number of days from 1 to {MAX_EXPIRY_DAYS}, or empty for none; nothing was created."
                )))
            }
        },
    };
    Ok(json!({ "name": name, "scopes": scopes, "expires_at": expires_at }))
}

pub async fn create(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    fields: Result<Form<CreateForm>, FormRejection>,
) -> Result<Response, PageError> {
    let fields = form(fields)?;
    let session = ui.session_for_form(&headers, fields.csrf.as_deref())?;
    let body = create_request(&fields)?;
    let created: Created = ui.api.send(&session.token, Method::POST, "/v1/tokens", body).await?;
    Ok(page(
        StatusCode::CREATED,
        &TokenCreated {
            chrome: Chrome::new("Token created", "tokens", Some(&session)),
            name: fields.name.trim().to_string(),
            secret: created.token,
            scopes: created.scopes.join(" "),
        },
    ))
}

pub async fn revoke(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Path(raw_id): Path<String>,
    fields: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, PageError> {
    let fields = form(fields)?;
    let session = ui.session_for_form(&headers, fields.csrf.as_deref())?;
    let token = id(&raw_id)?;
    let _: Value = ui
        .api
        .send(
            &session.token,
            Method::DELETE,
            &format!("/v1/tokens/{token}"),
            Value::Null,
        )
        .await?;
    Ok(Redirect::to(&format!("{MOUNT}/tokens")).into_response())
}
