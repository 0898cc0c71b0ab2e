//! The memory browser: newest first with filters (agent, category, tag, status, date range),
//! or ranked by IBEX search with each hit's score and its components; a memory's detail with
//! its version history and relationships; forget after a confirmation page.

use std::sync::Arc;

use askama::Template;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use ibex_engine::category::Category;
use serde::Deserialize;
use serde_json::Value;

use super::agents::{choices, AgentChoice};
use super::{form, id, optional_id, preview, query, when, DayRange, Link, Ui, PAGE_ROWS};
use crate::render::{page, Chrome, PageError, MOUNT};
use crate::sessions::Session;

/// The longest search text and tag a filter sends (the API bounds them again).
const MAX_QUERY_CHARS: usize = 1000;
const MAX_TAG_CHARS: usize = 100;
const MAX_REASON_CHARS: usize = 500;
/// Characters of a memory shown in a listing row.
const ROW_PREVIEW_CHARS: usize = 280;
const STATUSES: [&str; 3] = ["active", "superseded", "deleted"];

#[derive(Deserialize)]
pub struct Memory {
    id: uuid::Uuid,
    agent_id: uuid::Uuid,
    content: String,
    category: String,
    confidence: f32,
    status: String,
    tags: Vec<String>,
    useful_count: i32,
    not_useful_count: i32,
    access_count: i64,
    last_accessed_at: Option<DateTime<Utc>>,
    superseded_by: Option<uuid::Uuid>,
    source_session_id: Option<uuid::Uuid>,
    #[serde(default)]
    source_turns: Option<Vec<i32>>,
    occurred_at: Option<DateTime<Utc>>,
    version: i32,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl Memory {
    fn short(&self) -> String {
        preview(&self.content, ROW_PREVIEW_CHARS)
    }
    fn created(&self) -> String {
        when(Some(self.created_at))
    }
    fn updated(&self) -> String {
        when(Some(self.updated_at))
    }
    fn last_accessed(&self) -> String {
        when(self.last_accessed_at)
    }
    fn occurred(&self) -> String {
        when(self.occurred_at)
    }
    /// "turns 3, 4" or "turn 7": where in its session it came from.
    fn turn_list(&self) -> String {
        match self.source_turns.as_deref() {
            None | Some([]) => String::new(),
            Some([one]) => format!("turn {one}"),
            Some(many) => format!(
                "turns {}",
                many.iter().map(i32::to_string).collect::<Vec<_>>().join(", ")
            ),
        }
    }
    fn confidence_text(&self) -> String {
        format!("{:.2}", self.confidence)
    }
    fn tag_list(&self) -> String {
        self.tags.join(", ")
    }
}

#[derive(Deserialize)]
struct Version {
    version: i32,
    change: String,
    content: String,
    category: String,
    status: String,
    reason: Option<String>,
    created_at: DateTime<Utc>,
}

impl Version {
    fn created(&self) -> String {
        when(Some(self.created_at))
    }
    fn reason_text(&self) -> &str {
        self.reason.as_deref().unwrap_or("")
    }
}

#[derive(Deserialize)]
struct Relationship {
    kind: String,
    outgoing: bool,
    other_id: uuid::Uuid,
    other_preview: String,
    other_status: String,
    similarity: Option<f32>,
}

impl Relationship {
    /// The relationship read from this memory's side: "supersedes" or "superseded by".
    fn reading(&self) -> &'static str {
        match (self.kind.as_str(), self.outgoing) {
            ("supersedes", true) => "supersedes",
            ("supersedes", false) => "superseded by",
            ("conflicts_with", _) => "conflicts with",
            ("derived_from", true) => "derived from",
            ("derived_from", false) => "source of",
            _ => "related to",
        }
    }
    fn similarity_text(&self) -> String {
        self.similarity.map_or_else(String::new, |s| format!("{s:.3}"))
    }
}

#[derive(Deserialize)]
struct MemoryWithHistory {
    #[serde(flatten)]
    memory: Memory,
    history: Vec<Version>,
    #[serde(default)]
    relationships: Vec<Relationship>,
}

/// A search hit with its ranking: the composite score and what it is made of.
#[derive(Deserialize)]
pub struct Hit {
    memory_id: uuid::Uuid,
    content: String,
    category: String,
    tags: Vec<String>,
    created_at: DateTime<Utc>,
    score: f64,
    semantic: f64,
    lexical: f64,
    recency: f64,
    usefulness: f64,
}

impl Hit {
    fn short(&self) -> String {
        preview(&self.content, ROW_PREVIEW_CHARS)
    }
    fn created(&self) -> String {
        when(Some(self.created_at))
    }
    fn tag_list(&self) -> String {
        self.tags.join(", ")
    }
    fn figure(value: f64) -> String {
        format!("{value:.3}")
    }
    fn score_text(&self) -> String {
        Self::figure(self.score)
    }
    fn semantic_text(&self) -> String {
        Self::figure(self.semantic)
    }
    fn lexical_text(&self) -> String {
        Self::figure(self.lexical)
    }
    fn recency_text(&self) -> String {
        Self::figure(self.recency)
    }
    fn usefulness_text(&self) -> String {
        Self::figure(self.usefulness)
    }
}

/// `GET /v1/memories` answers a page of memories, or with `q` one ranked page of hits.
#[derive(Deserialize)]
#[serde(untagged)]
enum Listing {
    Ranked {
        data: Vec<Hit>,
    },
    Page {
        data: Vec<Memory>,
        next_cursor: Option<String>,
    },
}

#[derive(Deserialize, Default)]
pub struct Filters {
    q: Option<String>,
    agent: Option<String>,
    category: Option<String>,
    tag: Option<String>,
    status: Option<String>,
    from: Option<String>,
    to: Option<String>,
    cursor: Option<String>,
}

/// The filters as checked: what the form shows again and what the API is asked.
struct Checked {
    q: String,
    agent: Option<uuid::Uuid>,
    category: String,
    tag: String,
    status: String,
    range: DayRange,
}

impl Checked {
    fn from(filters: &Filters) -> Result<Self, PageError> {
        let text = |value: &Option<String>| value.as_deref().map(str::trim).unwrap_or("").to_string();
        let q = text(&filters.q);
        if q.chars().count() > MAX_QUERY_CHARS {
            return Err(PageError::BadInput(format!(
                "A search has at most {MAX_QUERY_CHARS} characters."
            )));
        }
        let tag = text(&filters.tag);
        if tag.chars().count() > MAX_TAG_CHARS {
            return Err(PageError::BadInput(format!(
                "A tag has at most {MAX_TAG_CHARS} characters."
            )));
        }
        let category = text(&filters.category);
        if !category.is_empty() && Category::parse(&category).is_none() {
            return Err(PageError::BadInput(format!(
                "A category is one of {}.",
                Category::names().join(", ")
            )));
        }
        let status = text(&filters.status);
        if !status.is_empty() && !STATUSES.contains(&status.as_str()) {
            return Err(PageError::BadInput(format!(
                "A status is one of {}.",
                STATUSES.join(", ")
            )));
        }
        Ok(Self {
            q,
            agent: optional_id("agent", filters.agent.as_deref())?,
            category: category.to_lowercase(),
            tag,
            status,
            range: DayRange::parse(filters.from.as_deref(), filters.to.as_deref())?,
        })
    }

    fn agent_text(&self) -> String {
        self.agent.map(|a| a.to_string()).unwrap_or_default()
    }

    /// This listing's address in the dashboard (for the next page).
    fn page_link(&self) -> Link {
        Link::new(&format!("{MOUNT}/memories"))
            .with("agent", &self.agent_text())
            .with("category", &self.category)
            .with("tag", &self.tag)
            .with("from", &self.range.from)
            .with("to", &self.range.to)
            .with("status", &self.status)
    }

    /// The API's address for these filters, for `agent` (the chosen one or, for a search,
    /// the token's own).
    fn api_link(&self, agent: Option<uuid::Uuid>) -> Link {
        let instant = |t: Option<DateTime<Utc>>| t.map(|t| t.to_rfc3339()).unwrap_or_default();
        Link::new("/v1/memories")
            .with("agent_id", &agent.map(|a| a.to_string()).unwrap_or_default())
            .with("category", &self.category)
            .with("tag", &self.tag)
            .with("created_after", &instant(self.range.after))
            .with("created_before", &instant(self.range.before))
            .with("limit", &PAGE_ROWS.to_string())
    }
}

#[derive(Template)]
#[template(path = "memories.html")]
struct Browser {
    chrome: Chrome,
    q: String,
    agent: String,
    category: String,
    tag: String,
    status: String,
    from: String,
    to: String,
    agents: Vec<AgentChoice>,
    categories: [&'static str; 3],
    statuses: [&'static str; 3],
    memories: Vec<Memory>,
    hits: Option<Vec<Hit>>,
    /// Why there is no answer (a search without an agent), shown instead of rows.
    notice: Option<String>,
    next: Option<String>,
}

impl Browser {
    fn agent_name(&self, id: &uuid::Uuid) -> String {
        let id = id.to_string();
        self.agents
            .iter()
            .find(|a| a.id == id)
            .map_or_else(|| preview(&id, 8), |a| a.name.clone())
    }
    fn is_agent(&self, id: &str) -> bool {
        self.agent == id
    }
    fn is_category(&self, c: &str) -> bool {
        self.category == c
    }
    fn is_status(&self, s: &str) -> bool {
        self.status == s
    }
}

pub async fn list(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    params: Result<Query<Filters>, QueryRejection>,
) -> Result<Response, PageError> {
    let session = ui.session(&headers)?;
    let filters = query(params)?;
    let checked = Checked::from(&filters)?;
    let agents = choices(&ui, &session).await?;
    // A search ranks one agent's memories: the one chosen, or the token's own.
    let search_agent = checked.agent.or(session.identity.agent);
    let (mut memories, mut hits, mut notice, mut next) = (Vec::new(), None, None, None);
    if !checked.q.is_empty() && search_agent.is_none() {
        notice = Some("Choose an agent to search its memories: search ranks one agent's memories.".to_string());
    } else if !checked.q.is_empty() {
        let path = checked.api_link(search_agent).with("q", &checked.q).build();
        if let Listing::Ranked { data } = ui.api.get(&session.token, &path).await? {
            hits = Some(data);
        }
    } else {
        let path = checked
            .api_link(checked.agent)
            .with("status", &checked.status)
            .with("cursor", filters.cursor.as_deref().unwrap_or(""))
            .build();
        if let Listing::Page { data, next_cursor } = ui.api.get(&session.token, &path).await? {
            memories = data;
            next = next_cursor.map(|cursor| checked.page_link().with("cursor", &cursor).build());
        }
    }
    Ok(page(
        StatusCode::OK,
        &Browser {
            chrome: Chrome::new("Memories", "memories", Some(&session)),
            agent: checked.agent_text(),
            q: checked.q,
            category: checked.category,
            tag: checked.tag,
            status: checked.status,
            from: checked.range.from,
            to: checked.range.to,
            agents,
            categories: Category::names(),
            statuses: STATUSES,
            memories,
            hits,
            notice,
            next,
        },
    ))
}

#[derive(Template)]
#[template(path = "memory.html")]
struct Detail {
    chrome: Chrome,
    memory: Memory,
    history: Vec<Version>,
    relationships: Vec<Relationship>,
    agent_name: String,
    can_write: bool,
}

async fn fetch(ui: &Ui, session: &Session, raw_id: &str) -> Result<MemoryWithHistory, PageError> {
    let memory = id(raw_id)?;
    Ok(ui.api.get(&session.token, &format!("/v1/memories/{memory}")).await?)
}

async fn agent_name(ui: &Ui, session: &Session, agent: uuid::Uuid) -> String {
    #[derive(Deserialize)]
    struct Named {
        name: String,
    }
    if !session.identity.can("agents:read") {
        return agent.to_string();
    }
    match ui
        .api
        .get::<Named>(&session.token, &format!("/v1/agents/{agent}"))
        .await
    {
        Ok(named) => named.name,
        Err(_) => agent.to_string(),
    }
}

pub async fn detail(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Path(raw_id): Path<String>,
) -> Result<Response, PageError> {
    let session = ui.session(&headers)?;
    let found = fetch(&ui, &session, &raw_id).await?;
    let agent_name = agent_name(&ui, &session, found.memory.agent_id).await;
    let mut history = found.history;
    history.reverse();
    Ok(page(
        StatusCode::OK,
        &Detail {
            chrome: Chrome::new("Memory", "memories", Some(&session)),
            memory: found.memory,
            history,
            relationships: found.relationships,
            agent_name,
            can_write: session.identity.can("memories:write"),
        },
    ))
}

#[derive(Template)]
#[template(path = "memory_delete.html")]
struct ConfirmDelete {
    chrome: Chrome,
    memory: Memory,
}

pub async fn confirm_delete(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Path(raw_id): Path<String>,
) -> Result<Response, PageError> {
    let session = ui.session(&headers)?;
    let found = fetch(&ui, &session, &raw_id).await?;
    Ok(page(
        StatusCode::OK,
        &ConfirmDelete {
            chrome: Chrome::new("Forget a memory", "memories", Some(&session)),
            memory: found.memory,
        },
    ))
}

#[derive(Deserialize)]
pub struct ForgetForm {
    csrf: Option<String>,
    #[serde(default)]
    reason: String,
}

pub async fn delete(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Path(raw_id): Path<String>,
    fields: Result<Form<ForgetForm>, FormRejection>,
) -> Result<Response, PageError> {
    let fields = form(fields)?;
    let session = ui.session_for_form(&headers, fields.csrf.as_deref())?;
    let memory = id(&raw_id)?;
    let reason = fields.reason.trim();
    if reason.chars().count() > MAX_REASON_CHARS {
        return Err(PageError::BadInput(format!(
            "A reason has at most {MAX_REASON_CHARS} characters; nothing was changed."
        )));
    }
    let path = Link::new(&format!("/v1/memories/{memory}"))
        .with("reason", reason)
        .build();
    let _: Value = ui.api.send(&session.token, Method::DELETE, &path, Value::Null).await?;
    Ok(Redirect::to(&format!("{MOUNT}/memories/{memory}")).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_checked_before_any_call() {
        let ok = Filters {
            category: Some("Episodic".into()),
            from: Some("2026-11-01".into()),
            ..Filters::default()
        };
        let checked = Checked::from(&ok).unwrap();
        assert_eq!(checked.category, "episodic");
        assert_eq!(
            checked.api_link(None).build(),
            "/v1/memories?category=episodic&created_after=2026-11-01T00%3A00%3A00%2B00%3A00&limit=50"
        );
        for bad in [
            Filters {
                category: Some("gossip".into()),
                ..Filters::default()
            },
            Filters {
                status: Some("gone".into()),
                ..Filters::default()
            },
            Filters {
                agent: Some("not-an-id".into()),
                ..Filters::default()
            },
            Filters {
                q: Some("x".repeat(MAX_QUERY_CHARS + 1)),
                ..Filters::default()
            },
            Filters {
                tag: Some("t".repeat(MAX_TAG_CHARS + 1)),
                ..Filters::default()
            },
        ] {
            assert!(matches!(Checked::from(&bad), Err(PageError::BadInput(_))));
        }
    }

    #[test]
    fn the_agent_filter_becomes_the_apis_agent_id() {
        let agent = uuid::Uuid::nil();
        let checked = Checked::from(&Filters {
            agent: Some(agent.to_string()),
            ..Filters::default()
        })
        .unwrap();
        assert_eq!(
            checked.api_link(checked.agent).build(),
            format!("/v1/memories?agent_id={agent}&limit=50")
        );
        assert_eq!(
            checked.page_link().build(),
            format!("/dashboard/memories?agent={agent}")
        );
    }

    #[test]
    fn relationships_read_from_this_memorys_side() {
        let link = |kind: &str, outgoing| Relationship {
            kind: kind.into(),
            outgoing,
            other_id: uuid::Uuid::nil(),
            other_preview: String::new(),
            other_status: "active".into(),
            similarity: None,
        };
        assert_eq!(link("supersedes", true).reading(), "supersedes");
        assert_eq!(link("supersedes", false).reading(), "superseded by");
        assert_eq!(link("conflicts_with", false).reading(), "conflicts with");
        assert_eq!(link("derived_from", false).reading(), "source of");
    }
}
