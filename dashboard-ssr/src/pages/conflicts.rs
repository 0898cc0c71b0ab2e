//! Conflicts: pairs of memories that contradict each other, oldest first (the queue of what
//! still needs a decision), and the decision: keep one (the other is forgotten), keep both, or
//! dismiss.

use std::sync::Arc;

use askama::Template;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{form, id, optional_id, query, when, Link, Ui, PAGE_ROWS};
use crate::render::{page, Chrome, PageError, MOUNT};

const STATUSES: [&str; 4] = ["open", "resolved", "dismissed", "all"];
const MAX_NOTE_CHARS: usize = 500;

#[derive(Deserialize)]
pub struct Conflict {
    id: uuid::Uuid,
    memory_id: uuid::Uuid,
    memory_content: String,
    conflicting_memory_id: uuid::Uuid,
    conflicting_content: String,
    similarity: f32,
    status: String,
    created_at: DateTime<Utc>,
}

impl Conflict {
    fn created(&self) -> String {
        when(Some(self.created_at))
    }
    fn similarity_text(&self) -> String {
        format!("{:.3}", self.similarity)
    }
    fn is_open(&self) -> bool {
        self.status == "open"
    }
}

#[derive(Deserialize)]
struct ConflictPage {
    data: Vec<Conflict>,
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
pub struct ListQuery {
    status: Option<String>,
    agent: Option<String>,
    cursor: Option<String>,
}

#[derive(Template)]
#[template(path = "conflicts.html")]
struct Conflicts {
    chrome: Chrome,
    conflicts: Vec<Conflict>,
    status: String,
    statuses: [&'static str; 4],
    next: Option<String>,
    can_write: bool,
}

impl Conflicts {
    fn is_status(&self, s: &str) -> bool {
        self.status == s
    }
}

pub async fn list(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    params: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, PageError> {
    let session = ui.session(&headers)?;
    let params = query(params)?;
    let status = params.status.unwrap_or_else(|| "open".to_string());
    if !STATUSES.contains(&status.as_str()) {
        return Err(PageError::BadInput(format!(
            "A status is one of {}.",
            STATUSES.join(", ")
        )));
    }
    let agent = optional_id("agent", params.agent.as_deref())?
        .map(|a| a.to_string())
        .unwrap_or_default();
    let path = Link::new("/v1/conflicts")
        .with("status", &status)
        .with("agent_id", &agent)
        .with("cursor", params.cursor.as_deref().unwrap_or(""))
        .with("limit", &PAGE_ROWS.to_string())
        .build();
    let found: ConflictPage = ui.api.get(&session.token, &path).await?;
    let next = found.next_cursor.map(|cursor| {
        Link::new(&format!("{MOUNT}/conflicts"))
            .with("status", &status)
            .with("agent", &agent)
            .with("cursor", &cursor)
            .build()
    });
    Ok(page(
        StatusCode::OK,
        &Conflicts {
            chrome: Chrome::new("Conflicts", "memories", Some(&session)),
            conflicts: found.data,
            status,
            statuses: STATUSES,
            next,
            can_write: session.identity.can("memories:write"),
        },
    ))
}

#[derive(Deserialize)]
pub struct Decision {
    csrf: Option<String>,
    /// `forget:<memory id>` (keep the other), `keep_both` or `dismiss`: one submit button each.
    #[serde(default)]
    decision: String,
    #[serde(default)]
    note: String,
}

/// What the API is asked for a decision: the conflict's new status and the memory to forget.
/// The API refuses a memory that is not one of the pair's, so a forged id changes nothing.
fn decide(decision: &str) -> Result<(&'static str, Option<uuid::Uuid>), PageError> {
    let refused = || {
        PageError::BadInput(
            "A decision keeps one memory, keeps both or dismisses the conflict; nothing was changed.".into(),
        )
    };
    match decision {
        "keep_both" => Ok(("resolved", None)),
        "dismiss" => Ok(("dismissed", None)),
        other => {
            let loser = other.strip_prefix("forget:").ok_or_else(refused)?;
            Ok(("resolved", Some(loser.parse().map_err(|_| refused())?)))
        }
    }
}

pub async fn resolve(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Path(raw_id): Path<String>,
    fields: Result<Form<Decision>, FormRejection>,
) -> Result<Response, PageError> {
    let fields = form(fields)?;
    let session = ui.session_for_form(&headers, fields.csrf.as_deref())?;
    let conflict = id(&raw_id)?;
    let note = fields.note.trim();
    if note.chars().count() > MAX_NOTE_CHARS {
        return Err(PageError::BadInput(format!(
            "A note has at most {MAX_NOTE_CHARS} characters; nothing was changed."
        )));
    }
    let (status, forget) = decide(&fields.decision)?;
    let body = json!({
        "status": status,
        "resolution": if note.is_empty() { Value::Null } else { Value::String(note.to_string()) },
        "forget_memory_id": forget,
    });
    let _: Value = ui
        .api
        .send(
            &session.token,
            Method::POST,
            &format!("/v1/conflicts/{conflict}/resolve"),
            body,
        )
        .await?;
    Ok(Redirect::to(&format!("{MOUNT}/conflicts")).into_response())
}

#[cfg(test)]
mod tests {
    use super::decide;

    #[test]
    fn decisions_map_to_a_status_and_the_memory_to_forget() {
        let loser = uuid::Uuid::from_u128(7);
        assert_eq!(decide(&format!("forget:{loser}")).unwrap(), ("resolved", Some(loser)));
        assert_eq!(decide("keep_both").unwrap(), ("resolved", None));
        assert_eq!(decide("dismiss").unwrap(), ("dismissed", None));
        for bad in ["", "forget:", "forget:nope", "resolve", "DISMISS"] {
            assert!(decide(bad).is_err(), "{bad:?}");
        }
    }
}
