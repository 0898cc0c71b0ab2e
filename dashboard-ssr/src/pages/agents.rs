//! Agents: the list (cursor-paginated, by status), create, detail with edit, status change, and
//! delete after a confirmation page.

use std::sync::Arc;

use askama::Template;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{encode, form, id, query, CsrfForm, Ui, PAGE_ROWS};
use crate::render::{page, Chrome, PageError, MOUNT};

/// The longest name and description a form may send (the API's own bounds).
const MAX_NAME_CHARS: usize = 200;
const MAX_DESCRIPTION_CHARS: usize = 4000;
const STATUSES: [&str; 3] = ["active", "paused", "archived"];

#[derive(Deserialize)]
pub struct Agent {
    id: uuid::Uuid,
    name: String,
    description: Option<String>,
    status: String,
    default_model: Option<String>,
    created_at: chrono::DateTime<chrono::Utc>,
    updated_at: chrono::DateTime<chrono::Utc>,
}

impl Agent {
    fn created(&self) -> String {
        self.created_at.format("%Y-%m-%d %H:%M UTC").to_string()
    }
    fn updated(&self) -> String {
        self.updated_at.format("%Y-%m-%d %H:%M UTC").to_string()
    }
    fn description_text(&self) -> &str {
        self.description.as_deref().unwrap_or("")
    }
    fn model_text(&self) -> &str {
        self.default_model.as_deref().unwrap_or("")
    }
    fn has_status(&self, status: &str) -> bool {
        self.status == status
    }
}

#[derive(Deserialize)]
struct AgentPage {
    data: Vec<Agent>,
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
pub struct ListQuery {
    cursor: Option<String>,
    status: Option<String>,
}

#[derive(Template)]
#[template(path = "agents.html")]
struct AgentList {
    chrome: Chrome,
    agents: Vec<Agent>,
    status: String,
    statuses: [&'static str; 3],
    next: Option<String>,
    can_write: bool,
}

impl AgentList {
    /// Whether the list is filtered by this status.
    fn filtered_by(&self, status: &str) -> bool {
        self.status == status
    }
}

#[derive(Template)]
#[template(path = "agent.html")]
struct AgentDetail {
    chrome: Chrome,
    agent: Agent,
    statuses: [&'static str; 3],
    can_write: bool,
}

#[derive(Template)]
#[template(path = "agent_delete.html")]
struct ConfirmDelete {
    chrome: Chrome,
    agent: Agent,
}

#[derive(Template)]
#[template(path = "agent_deleted.html")]
struct Deleted {
    chrome: Chrome,
    name: String,
    memories: i64,
    directives: i64,
    sessions: i64,
    tokens: i64,
}

#[derive(Deserialize)]
pub struct AgentForm {
    csrf: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    default_model: String,
}

#[derive(Deserialize)]
pub struct StatusForm {
    csrf: Option<String>,
    #[serde(default)]
    status: String,
}

#[derive(Deserialize)]
struct DeletedCounts {
    memories: i64,
    directives: i64,
    sessions: i64,
    tokens: i64,
}

pub async fn list(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    params: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, PageError> {
    let session = ui.session(&headers)?;
    let params = query(params)?;
    let status = params
        .status
        .filter(|s| STATUSES.contains(&s.as_str()))
        .unwrap_or_default();
    let mut path = format!("/v1/agents?limit={PAGE_ROWS}");
    if !status.is_empty() {
        path.push_str(&format!("&status={status}"));
    }
    if let Some(cursor) = &params.cursor {
        path.push_str(&format!("&cursor={}", encode(cursor)));
    }
    let agents: AgentPage = ui.api.get(&session.token, &path).await?;
    let next = agents.next_cursor.map(|cursor| {
        let status = if status.is_empty() {
            String::new()
        } else {
            format!("&status={status}")
        };
        format!("{MOUNT}/agents?cursor={}{status}", encode(&cursor))
    });
    Ok(page(
        StatusCode::OK,
        &AgentList {
            chrome: Chrome::new("Agents", "agents", Some(&session)),
            agents: agents.data,
            status,
            statuses: STATUSES,
            next,
            can_write: session.identity.can("agents:write"),
        },
    ))
}

/// The fields of an agent form, bounded before anything is sent.
fn agent_fields(fields: &AgentForm) -> Result<Value, PageError> {
    let name = fields.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(PageError::BadInput(format!(
            "An agent needs a name of 1 to {MAX_NAME_CHARS} characters; nothing was changed."
        )));
    }
    if fields.description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(PageError::BadInput(format!(
            "A description has at most {MAX_DESCRIPTION_CHARS} characters; nothing was changed."
        )));
    }
    let optional = |s: &str| {
        let s = s.trim();
        if s.is_empty() {
            Value::Null
        } else {
            Value::String(s.to_string())
        }
    };
    Ok(json!({
        "name": name,
        "description": optional(&fields.description),
        "default_model": optional(&fields.default_model),
    }))
}

pub async fn create(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    fields: Result<Form<AgentForm>, FormRejection>,
) -> Result<Response, PageError> {
    let fields = form(fields)?;
    let session = ui.session_for_form(&headers, fields.csrf.as_deref())?;
    let body = agent_fields(&fields)?;
    let agent: Agent = ui.api.send(&session.token, Method::POST, "/v1/agents", body).await?;
    Ok(Redirect::to(&format!("{MOUNT}/agents/{}", agent.id)).into_response())
}

async fn fetch(ui: &Ui, token: &str, raw_id: &str) -> Result<Agent, PageError> {
    let agent = id(raw_id)?;
    Ok(ui.api.get(token, &format!("/v1/agents/{agent}")).await?)
}

pub async fn detail(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Path(raw_id): Path<String>,
) -> Result<Response, PageError> {
    let session = ui.session(&headers)?;
    let agent = fetch(&ui, &session.token, &raw_id).await?;
    Ok(page(
        StatusCode::OK,
        &AgentDetail {
            chrome: Chrome::new(agent.name.clone(), "agents", Some(&session)),
            agent,
            statuses: STATUSES,
            can_write: session.identity.can("agents:write"),
        },
    ))
}

pub async fn update(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Path(raw_id): Path<String>,
    fields: Result<Form<AgentForm>, FormRejection>,
) -> Result<Response, PageError> {
    let fields = form(fields)?;
    let session = ui.session_for_form(&headers, fields.csrf.as_deref())?;
    let agent = id(&raw_id)?;
    let body = agent_fields(&fields)?;
    let _: Value = ui
        .api
        .send(&session.token, Method::PATCH, &format!("/v1/agents/{agent}"), body)
        .await?;
    Ok(Redirect::to(&format!("{MOUNT}/agents/{agent}")).into_response())
}

pub async fn set_status(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Path(raw_id): Path<String>,
    fields: Result<Form<StatusForm>, FormRejection>,
) -> Result<Response, PageError> {
    let fields = form(fields)?;
    let session = ui.session_for_form(&headers, fields.csrf.as_deref())?;
    let agent = id(&raw_id)?;
    if !STATUSES.contains(&fields.status.as_str()) {
        return Err(PageError::BadInput(format!(
            "An agent's status is one of {}; nothing was changed.",
            STATUSES.join(", ")
        )));
    }
    let _: Value = ui
        .api
        .send(
            &session.token,
            Method::POST,
            &format!("/v1/agents/{agent}/status"),
            json!({ "status": fields.status }),
        )
        .await?;
    Ok(Redirect::to(&format!("{MOUNT}/agents/{agent}")).into_response())
}

pub async fn confirm_delete(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Path(raw_id): Path<String>,
) -> Result<Response, PageError> {
    let session = ui.session(&headers)?;
    let agent = fetch(&ui, &session.token, &raw_id).await?;
    Ok(page(
        StatusCode::OK,
        &ConfirmDelete {
            chrome: Chrome::new(format!("Delete {}", agent.name), "agents", Some(&session)),
            agent,
        },
    ))
}

pub async fn delete(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Path(raw_id): Path<String>,
    fields: Result<Form<CsrfForm>, FormRejection>,
) -> Result<Response, PageError> {
    let fields = form(fields)?;
    let session = ui.session_for_form(&headers, fields.csrf.as_deref())?;
    let agent = fetch(&ui, &session.token, &raw_id).await?;
    let counts: DeletedCounts = ui
        .api
        .send(
            &session.token,
            Method::DELETE,
            &format!("/v1/agents/{}", agent.id),
            Value::Null,
        )
        .await?;
    Ok(page(
        StatusCode::OK,
        &Deleted {
            chrome: Chrome::new("Agent deleted", "agents", Some(&session)),
            name: agent.name,
            memories: counts.memories,
            directives: counts.directives,
            sessions: counts.sessions,
            tokens: counts.tokens,
        },
    ))
}

/// An agent offered by a filter's select box.
pub struct AgentChoice {
    pub id: String,
    pub name: String,
}

/// Agents a filter offers: the org's first 200 by creation, or none when the token may not
/// list agents (the filter then takes no agent, or the token's own).
pub async fn choices(ui: &Ui, session: &crate::sessions::Session) -> Result<Vec<AgentChoice>, PageError> {
    if !session.identity.can("agents:read") {
        return Ok(Vec::new());
    }
    let agents: AgentPage = ui.api.get(&session.token, "/v1/agents?limit=200").await?;
    Ok(agents
        .data
        .into_iter()
        .map(|a| AgentChoice {
            id: a.id.to_string(),
            name: a.name,
        })
        .collect())
}
