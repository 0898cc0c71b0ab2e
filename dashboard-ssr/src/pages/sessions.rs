//! Sessions: the list (agent, status, date range; cursor-paginated), one session with its turns
//! from Postgres (paged), and the replay viewer that reads the session's archive from S3
//! through the API, checkpoint by checkpoint with the model and tokens of each.

use std::sync::Arc;

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::{DateTime, Utc};
use ibex_engine::archive::CheckpointLine;
use serde::Deserialize;

use super::agents::{choices, AgentChoice};
use super::overview::grouped;
use super::{id, optional_id, query, when, DayRange, Link, Ui, PAGE_ROWS};
use crate::api::MAX_REPLAY_BYTES;
use crate::render::{page, Chrome, PageError, MOUNT};

const STATUSES: [&str; 4] = ["active", "completed", "failed", "abandoned"];
/// Checkpoints shown on one page of a replay.
const CHECKPOINTS_PER_PAGE: usize = 50;
/// Archives larger than this are offered as a download, not shown: their JSON answer must fit
/// in what a page reads.
const MAX_VIEWED_ARCHIVE_BYTES: i64 = (MAX_REPLAY_BYTES as i64) * 3 / 4;

#[derive(Deserialize)]
pub struct Session {
    id: uuid::Uuid,
    agent_id: uuid::Uuid,
    external_id: Option<String>,
    status: String,
    turn_count: i32,
    last_extracted_turn: i32,
    started_at: DateTime<Utc>,
    completed_at: Option<DateTime<Utc>>,
    archived_at: Option<DateTime<Utc>>,
    archive_bytes: Option<i64>,
    archive_lines: Option<i32>,
    archive_sha256: Option<String>,
    turns_cleared_at: Option<DateTime<Utc>>,
    #[serde(default)]
    replay_url: Option<String>,
}

impl Session {
    fn started(&self) -> String {
        when(Some(self.started_at))
    }
    fn completed(&self) -> String {
        when(self.completed_at)
    }
    fn archived(&self) -> String {
        when(self.archived_at)
    }
    fn is_archived(&self) -> bool {
        self.archived_at.is_some()
    }
    fn external(&self) -> &str {
        self.external_id.as_deref().unwrap_or("—")
    }
    fn archive_size(&self) -> String {
        self.archive_bytes
            .map_or_else(String::new, |b| format!("{} bytes", grouped(b)))
    }
    fn archive_line_count(&self) -> i32 {
        self.archive_lines.unwrap_or(0)
    }
    fn sha256(&self) -> &str {
        self.archive_sha256.as_deref().unwrap_or("")
    }
    fn turns_cleared(&self) -> bool {
        self.turns_cleared_at.is_some()
    }
}

#[derive(Deserialize)]
struct SessionPage {
    data: Vec<Session>,
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
pub struct Turn {
    turn_index: i32,
    role: String,
    content: String,
    tokens: Option<i32>,
    model: Option<String>,
    created_at: DateTime<Utc>,
}

impl Turn {
    fn created(&self) -> String {
        when(Some(self.created_at))
    }
    fn tokens_text(&self) -> String {
        self.tokens.map_or_else(String::new, |t| grouped(i64::from(t)))
    }
    fn model_text(&self) -> &str {
        self.model.as_deref().unwrap_or("")
    }
}

#[derive(Deserialize)]
struct SessionWithTurns {
    #[serde(flatten)]
    session: Session,
    turns: Vec<Turn>,
    more_turns: bool,
}

#[derive(Deserialize)]
struct TurnPage {
    data: Vec<Turn>,
    next_after: Option<i32>,
}

#[derive(Deserialize)]
pub struct ListQuery {
    agent: Option<String>,
    status: Option<String>,
    from: Option<String>,
    to: Option<String>,
    cursor: Option<String>,
}

#[derive(Template)]
#[template(path = "sessions.html")]
struct Sessions {
    chrome: Chrome,
    sessions: Vec<Session>,
    agents: Vec<AgentChoice>,
    agent: String,
    status: String,
    statuses: [&'static str; 4],
    from: String,
    to: String,
    next: Option<String>,
}

impl Sessions {
    fn is_agent(&self, id: &str) -> bool {
        self.agent == id
    }
    fn is_status(&self, s: &str) -> bool {
        self.status == s
    }
    fn agent_name(&self, id: &uuid::Uuid) -> String {
        let id = id.to_string();
        self.agents
            .iter()
            .find(|a| a.id == id)
            .map_or_else(|| id[..8].to_string(), |a| a.name.clone())
    }
}

pub async fn list(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    params: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, PageError> {
    let session = ui.session(&headers)?;
    let params = query(params)?;
    let agent = optional_id("agent", params.agent.as_deref())?
        .map(|a| a.to_string())
        .unwrap_or_default();
    let status = params.status.unwrap_or_default();
    if !status.is_empty() && !STATUSES.contains(&status.as_str()) {
        return Err(PageError::BadInput(format!(
            "A status is one of {}.",
            STATUSES.join(", ")
        )));
    }
    let range = DayRange::parse(params.from.as_deref(), params.to.as_deref())?;
    let instant = |t: Option<DateTime<Utc>>| t.map(|t| t.to_rfc3339()).unwrap_or_default();
    let path = Link::new("/v1/sessions")
        .with("agent_id", &agent)
        .with("status", &status)
        .with("created_after", &instant(range.after))
        .with("created_before", &instant(range.before))
        .with("cursor", params.cursor.as_deref().unwrap_or(""))
        .with("limit", &PAGE_ROWS.to_string())
        .build();
    let (found, agents) = tokio::join!(ui.api.get::<SessionPage>(&session.token, &path), choices(&ui, &session));
    let (found, agents) = (found?, agents?);
    let next = found.next_cursor.map(|cursor| {
        Link::new(&format!("{MOUNT}/sessions"))
            .with("agent", &agent)
            .with("status", &status)
            .with("from", &range.from)
            .with("to", &range.to)
            .with("cursor", &cursor)
            .build()
    });
    Ok(page(
        StatusCode::OK,
        &Sessions {
            chrome: Chrome::new("Sessions", "sessions", Some(&session)),
            sessions: found.data,
            agents,
            agent,
            status,
            statuses: STATUSES,
            from: range.from,
            to: range.to,
            next,
        },
    ))
}

#[derive(Deserialize)]
pub struct TurnsQuery {
    after: Option<i32>,
}

#[derive(Template)]
#[template(path = "session.html")]
struct Detail {
    chrome: Chrome,
    session: Session,
    turns: Vec<Turn>,
    /// The next page of turns, when more follow.
    next: Option<String>,
}

pub async fn detail(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Path(raw_id): Path<String>,
    params: Result<Query<TurnsQuery>, QueryRejection>,
) -> Result<Response, PageError> {
    let session = ui.session(&headers)?;
    let params = query(params)?;
    let id = id(&raw_id)?;
    let found: SessionWithTurns = ui.api.get(&session.token, &format!("/v1/sessions/{id}")).await?;
    let (turns, next_after) = match params.after {
        None | Some(0) => {
            let last = found.turns.last().map(|t| t.turn_index);
            (found.turns, if found.more_turns { last } else { None })
        }
        Some(after) if after > 0 => {
            let turns: TurnPage = ui
                .api
                .get(
                    &session.token,
                    &format!("/v1/sessions/{id}/turns?after={after}&limit=100"),
                )
                .await?;
            (turns.data, turns.next_after)
        }
        Some(_) => return Err(PageError::BadInput("A turn index is 0 or more.".into())),
    };
    Ok(page(
        StatusCode::OK,
        &Detail {
            chrome: Chrome::new("Session", "sessions", Some(&session)),
            session: found.session,
            turns,
            next: next_after.map(|after| format!("{MOUNT}/sessions/{id}?after={after}")),
        },
    ))
}

#[derive(Deserialize)]
struct Replay {
    sha256: String,
    checkpoints: Vec<CheckpointLine>,
}

/// One checkpoint as the viewer shows it.
pub struct Checkpoint {
    number: i32,
    model: String,
    tokens: String,
    started: String,
    turns: Vec<ReplayedTurn>,
}

pub struct ReplayedTurn {
    role: String,
    content: String,
    tokens: String,
}

impl From<CheckpointLine> for Checkpoint {
    fn from(line: CheckpointLine) -> Self {
        Self {
            number: line.checkpoint,
            model: line.model.unwrap_or_default(),
            tokens: line.tokens.map(grouped).unwrap_or_default(),
            started: line.started_at.replace('T', " ").chars().take(19).collect(),
            turns: line
                .turns
                .into_iter()
                .map(|t| ReplayedTurn {
                    role: t.role,
                    content: t.content,
                    tokens: t.tokens.map(|n| grouped(i64::from(n))).unwrap_or_default(),
                })
                .collect(),
        }
    }
}

/// A model's share of a replayed session.
pub struct ModelTotal {
    model: String,
    checkpoints: usize,
    tokens: String,
}

/// Checkpoints and tokens per model, most tokens first.
fn model_totals(checkpoints: &[CheckpointLine]) -> Vec<ModelTotal> {
    let mut totals: Vec<(String, usize, i64)> = Vec::new();
    for line in checkpoints {
        let model = line.model.clone().unwrap_or_else(|| "unknown".to_string());
        match totals.iter_mut().find(|(m, _, _)| *m == model) {
            Some(entry) => {
                entry.1 += 1;
                entry.2 += line.tokens.unwrap_or(0);
            }
            None => totals.push((model, 1, line.tokens.unwrap_or(0))),
        }
    }
    totals.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
    totals
        .into_iter()
        .map(|(model, checkpoints, tokens)| ModelTotal {
            model,
            checkpoints,
            tokens: grouped(tokens),
        })
        .collect()
}

#[derive(Deserialize)]
pub struct ReplayQuery {
    /// The first checkpoint shown (0-based position in the archive).
    from: Option<usize>,
}

#[derive(Template)]
#[template(path = "replay.html")]
struct ReplayPage {
    chrome: Chrome,
    session: Session,
    /// None when the archive is too large to show here (the download link remains).
    checkpoints: Option<Vec<Checkpoint>>,
    models: Vec<ModelTotal>,
    total_checkpoints: usize,
    total_tokens: String,
    first_shown: usize,
    sha256: String,
    previous: Option<String>,
    next: Option<String>,
}

pub async fn replay(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Path(raw_id): Path<String>,
    params: Result<Query<ReplayQuery>, QueryRejection>,
) -> Result<Response, PageError> {
    let session = ui.session(&headers)?;
    let params = query(params)?;
    let id = id(&raw_id)?;
    let found: SessionWithTurns = ui.api.get(&session.token, &format!("/v1/sessions/{id}")).await?;
    let found = found.session;
    if !found.is_archived() {
        return Err(PageError::BadInput(
            "This session is not archived yet: a session is archived once it is over, and its replay reads the archive."
                .into(),
        ));
    }
    let chrome = Chrome::new("Session replay", "sessions", Some(&session));
    if found.archive_bytes.unwrap_or(0) > MAX_VIEWED_ARCHIVE_BYTES {
        return Ok(page(
            StatusCode::OK,
            &ReplayPage {
                chrome,
                sha256: found.sha256().to_string(),
                session: found,
                checkpoints: None,
                models: Vec::new(),
                total_checkpoints: 0,
                total_tokens: String::new(),
                first_shown: 0,
                previous: None,
                next: None,
            },
        ));
    }
    let replay: Replay = ui
        .api
        .get_large(&session.token, &format!("/v1/sessions/{id}/archive"), MAX_REPLAY_BYTES)
        .await?;
    let total = replay.checkpoints.len();
    let first = params.from.unwrap_or(0).min(total.saturating_sub(1));
    let models = model_totals(&replay.checkpoints);
    let total_tokens = grouped(replay.checkpoints.iter().filter_map(|c| c.tokens).sum());
    let link = |from: usize| format!("{MOUNT}/sessions/{id}/replay?from={from}");
    let previous = (first > 0).then(|| link(first.saturating_sub(CHECKPOINTS_PER_PAGE)));
    let next = (first + CHECKPOINTS_PER_PAGE < total).then(|| link(first + CHECKPOINTS_PER_PAGE));
    let shown = replay
        .checkpoints
        .into_iter()
        .skip(first)
        .take(CHECKPOINTS_PER_PAGE)
        .map(Checkpoint::from)
        .collect();
    Ok(page(
        StatusCode::OK,
        &ReplayPage {
            chrome,
            session: found,
            checkpoints: Some(shown),
            models,
            total_checkpoints: total,
            total_tokens,
            first_shown: first + 1,
            sha256: replay.sha256,
            previous,
            next,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(checkpoint: i32, model: Option<&str>, tokens: Option<i64>) -> CheckpointLine {
        CheckpointLine {
            session_id: "s".into(),
            checkpoint,
            model: model.map(str::to_string),
            tokens,
            started_at: "2026-11-30T10:00:00Z".into(),
            ended_at: "2026-11-30T10:00:01Z".into(),
            turns: Vec::new(),
        }
    }

    #[test]
    fn models_are_totalled_most_tokens_first() {
        let totals = model_totals(&[
            line(1, Some("small"), Some(100)),
            line(2, Some("large"), Some(5000)),
            line(3, Some("small"), Some(250)),
            line(4, None, None),
        ]);
        let rows: Vec<(&str, usize, &str)> = totals
            .iter()
            .map(|t| (t.model.as_str(), t.checkpoints, t.tokens.as_str()))
            .collect();
        assert_eq!(
            rows,
            vec![("large", 1, "5,000"), ("small", 2, "350"), ("unknown", 1, "0")]
        );
    }

    #[test]
    fn a_checkpoint_shows_its_start_to_the_second() {
        let shown = Checkpoint::from(line(3, Some("m"), Some(1234)));
        assert_eq!(shown.started, "2026-11-30 10:00:00");
        assert_eq!(shown.tokens, "1,234");
        assert_eq!(shown.number, 3);
    }
}
