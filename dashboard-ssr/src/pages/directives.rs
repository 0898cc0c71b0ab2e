//! Directives: an agent's standing instructions, every change a new immutable version. The
//! agent's list (cursor-paginated, by status) with a create form; a directive's page with its
//! current version, an edit form (a new version), archiving, the version history and a line
//! diff of two versions (`?from=&to=`, by default the previous and the current one).
//!
//! The directive page has one POST route for both of its forms; a hidden `action` field says
//! which. Archiving needs no confirmation page: it is itself a version, and saving new content
//! makes the directive active again.

use std::sync::Arc;

use askama::Template;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{encode, form, id, query, Ui};
use crate::diff::{self, Diff};
use crate::render::{page, Chrome, PageError, MOUNT};

/// The API's bounds (sql/api/agents.sql, `set_directive`): checked here first so a refused form
/// says why without a call.
const MAX_NAME_CHARS: usize = 200;
const MAX_CONTENT_CHARS: usize = 100_000;
const STATUSES: [&str; 2] = ["active", "archived"];
/// Characters of a directive's first line shown in the list.
const PREVIEW_CHARS: usize = 80;

/// Rows asked of the API per page. Rows carry their whole content, so the page size is what
/// keeps an answer under the in-process client's limit (8 MiB, `api::MAX_ANSWER_BYTES`) even if
/// every directive is as large as the API allows: see the assertion below.
const API_ROWS: u32 = 12;
/// The JSON of the largest row: content and name at 6 bytes a character at worst (`\u0001`),
/// and the other fields.
const MAX_ROW_JSON_BYTES: usize = (MAX_CONTENT_CHARS + MAX_NAME_CHARS) * 6 + 1024;
const _: () = assert!(API_ROWS as usize * MAX_ROW_JSON_BYTES < 8 << 20);
/// Pages of versions read for a history at most (the newest 24 versions: rows carry their whole
/// content, so this bounds what one view moves); older ones are said
/// to exist, and stay comparable by number (read one by one).
const MAX_VERSION_PAGES: usize = 2;

#[derive(Deserialize)]
struct Directive {
    id: Uuid,
    agent_id: Uuid,
    name: String,
    content: String,
    version: i32,
    status: String,
    priority: i32,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl Directive {
    fn created(&self) -> String {
        when(&self.created_at)
    }
    fn updated(&self) -> String {
        when(&self.updated_at)
    }
    fn archived(&self) -> bool {
        self.status == "archived"
    }
    /// The first line with text, cut short: enough to tell directives apart in the list.
    fn preview(&self) -> String {
        let line = self
            .content
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("");
        let mut cut: String = line.chars().take(PREVIEW_CHARS).collect();
        if line.chars().nth(PREVIEW_CHARS).is_some() {
            cut.push('…');
        }
        cut
    }
}

fn when(at: &DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

#[derive(Deserialize)]
struct DirectivePage {
    data: Vec<Directive>,
    next_cursor: Option<String>,
}

/// A version as the API sends it.
#[derive(Deserialize)]
struct VersionRow {
    version: i32,
    status: String,
    content: String,
    created_at: DateTime<Utc>,
}

#[derive(Deserialize)]
struct VersionPage {
    data: Vec<VersionRow>,
    next_cursor: Option<String>,
}

/// A version in the history. Its content is not kept: only the two compared are.
struct Version {
    number: i32,
    status: String,
    created_at: DateTime<Utc>,
}

impl Version {
    fn created(&self) -> String {
        when(&self.created_at)
    }
    fn previous(&self) -> i32 {
        self.number - 1
    }
}

/// The history as read: the newest versions first, and the content of the compared ones when
/// they were among them.
#[derive(Default)]
struct History {
    versions: Vec<Version>,
    /// Older versions exist than those read.
    truncated: bool,
    contents: Vec<(i32, String)>,
}

/// Two versions compared.
struct Comparison {
    from: i32,
    to: i32,
    diff: Diff,
}

#[derive(Deserialize)]
struct AgentName {
    name: String,
}

#[derive(Deserialize)]
pub struct ListQuery {
    cursor: Option<String>,
    status: Option<String>,
}

#[derive(Deserialize)]
pub struct DetailQuery {
    from: Option<String>,
    to: Option<String>,
}

#[derive(Deserialize)]
pub struct CreateForm {
    csrf: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    content: String,
    #[serde(default)]
    priority: String,
}

/// Either form of a directive's page: `action` is `save` (content and priority) or `archive`.
#[derive(Deserialize)]
pub struct ChangeForm {
    csrf: Option<String>,
    #[serde(default)]
    action: String,
    #[serde(default)]
    content: String,
    #[serde(default)]
    priority: String,
}

#[derive(Template)]
#[template(path = "directives.html")]
struct DirectiveList {
    chrome: Chrome,
    agent_id: Uuid,
    agent: String,
    directives: Vec<Directive>,
    status: &'static str,
    statuses: [&'static str; 2],
    next: Option<String>,
    can_write: bool,
}

impl DirectiveList {
    /// Whether the list is filtered by this status.
    fn filtered_by(&self, status: &str) -> bool {
        self.status == status
    }
}

#[derive(Template)]
#[template(path = "directive.html")]
struct DirectiveDetail {
    chrome: Chrome,
    directive: Directive,
    agent: String,
    versions: Vec<Version>,
    truncated: bool,
    comparison: Option<Comparison>,
    /// The compare form's fields: the versions compared, or empty.
    from: String,
    to: String,
    can_write: bool,
}

pub async fn list(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Path(raw_id): Path<String>,
    params: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, PageError> {
    let session = ui.session(&headers)?;
    let agent = id(&raw_id)?;
    let params = query(params)?;
    let status = status_filter(params.status.as_deref())?;
    let label = agent_label(&ui, &session.token, agent).await?;
    let mut path = format!("/v1/agents/{agent}/directives?limit={API_ROWS}");
    if !status.is_empty() {
        path.push_str(&format!("&status={status}"));
    }
    if let Some(cursor) = params.cursor.as_deref().filter(|c| !c.is_empty()) {
        path.push_str(&format!("&cursor={}", encode(cursor)));
    }
    let directives: DirectivePage = ui.api.get(&session.token, &path).await?;
    let next = directives.next_cursor.map(|cursor| {
        let status = if status.is_empty() {
            String::new()
        } else {
            format!("&status={status}")
        };
        format!("{MOUNT}/agents/{agent}/directives?cursor={}{status}", encode(&cursor))
    });
    Ok(page(
        StatusCode::OK,
        &DirectiveList {
            chrome: Chrome::new(format!("Directives of {label}"), "agents", Some(&session)),
            agent_id: agent,
            agent: label,
            directives: directives.data,
            status,
            statuses: STATUSES,
            next,
            can_write: session.identity.can("directives:write"),
        },
    ))
}

/// The status a list is filtered by: none (empty), or one of [`STATUSES`].
fn status_filter(status: Option<&str>) -> Result<&'static str, PageError> {
    match status.map(str::trim).unwrap_or("") {
        "" => Ok(""),
        s => STATUSES
            .into_iter()
            .find(|known| *known == s)
            .ok_or_else(|| PageError::BadInput(format!("A directive's status is one of {}.", STATUSES.join(", ")))),
    }
}

/// The agent's name for headings, or its id when the token may read directives but not agents.
async fn agent_label(ui: &Ui, token: &str, agent: Uuid) -> Result<String, PageError> {
    match ui.api.get::<AgentName>(token, &format!("/v1/agents/{agent}")).await {
        Ok(found) => Ok(found.name),
        Err(failure) if failure.status == StatusCode::FORBIDDEN => Ok(agent.to_string()),
        Err(failure) => Err(failure.into()),
    }
}

pub async fn create(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Path(raw_id): Path<String>,
    fields: Result<Form<CreateForm>, FormRejection>,
) -> Result<Response, PageError> {
    let fields = form(fields)?;
    let session = ui.session_for_form(&headers, fields.csrf.as_deref())?;
    let agent = id(&raw_id)?;
    let body = create_fields(&fields)?;
    let directive: Directive = ui
        .api
        .send(
            &session.token,
            Method::POST,
            &format!("/v1/agents/{agent}/directives"),
            body,
        )
        .await?;
    Ok(Redirect::to(&format!("{MOUNT}/directives/{}", directive.id)).into_response())
}

/// The fields of a new directive, bounded before anything is sent.
fn create_fields(fields: &CreateForm) -> Result<Value, PageError> {
    let name = fields.name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_CHARS {
        return Err(PageError::BadInput(format!(
            "A directive needs a name of 1 to {MAX_NAME_CHARS} characters; nothing was changed."
        )));
    }
    Ok(json!({
        "name": name,
        "content": content_field(&fields.content)?,
        "priority": priority_field(&fields.priority)?,
    }))
}

/// A directive's content from a textarea, bounded. Browsers send a textarea's line breaks as
/// CRLF (HTML's form encoding); they are stored as LF, so an edit made here does not change
/// every line of a directive written through the API.
fn content_field(text: &str) -> Result<String, PageError> {
    let content = text.replace("\r\n", "\n");
    if content.trim().is_empty() || content.chars().count() > MAX_CONTENT_CHARS {
        return Err(PageError::BadInput(format!(
            "A directive's content has 1 to {MAX_CONTENT_CHARS} characters, not only blanks; nothing was changed."
        )));
    }
    Ok(content)
}

/// A priority: a whole number, or nothing (the API's default on create, the current priority on
/// change).
fn priority_field(text: &str) -> Result<Option<i32>, PageError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| {
        PageError::BadInput(format!(
            "A priority is a whole number from {} to {}; nothing was changed.",
            i32::MIN,
            i32::MAX
        ))
    })
}

pub async fn detail(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Path(raw_id): Path<String>,
    params: Result<Query<DetailQuery>, QueryRejection>,
) -> Result<Response, PageError> {
    let session = ui.session(&headers)?;
    let id = id(&raw_id)?;
    let params = query(params)?;
    let directive: Directive = ui.api.get(&session.token, &format!("/v1/directives/{id}")).await?;
    let compared = compared(&params, directive.version)?;
    let wanted: Vec<i32> = compared.map(|(from, to)| vec![from, to]).unwrap_or_default();
    let history = history(&ui, &session.token, id, &wanted).await?;
    let comparison = match compared {
        Some((from, to)) => {
            let old = version_text(&ui, &session.token, id, from, &history).await?;
            let new = version_text(&ui, &session.token, id, to, &history).await?;
            Some(Comparison {
                from,
                to,
                diff: diff::lines(&old, &new),
            })
        }
        None => None,
    };
    let agent = agent_label(&ui, &session.token, directive.agent_id).await?;
    let (from, to) = compared.map_or((String::new(), String::new()), |(from, to)| {
        (from.to_string(), to.to_string())
    });
    Ok(page(
        StatusCode::OK,
        &DirectiveDetail {
            chrome: Chrome::new(directive.name.clone(), "agents", Some(&session)),
            directive,
            agent,
            versions: history.versions,
            truncated: history.truncated,
            comparison,
            from,
            to,
            can_write: session.identity.can("directives:write"),
        },
    ))
}

/// The versions to compare, `(from, to)`: those asked, by default the previous and the current
/// one; `None` when there is nothing before the version asked (a directive's first version).
fn compared(params: &DetailQuery, current: i32) -> Result<Option<(i32, i32)>, PageError> {
    let to = match asked(params.to.as_deref()) {
        Some(text) => version_number(text, current)?,
        None => current,
    };
    let from = match asked(params.from.as_deref()) {
        Some(text) => version_number(text, current)?,
        None if to > 1 => to - 1,
        None => return Ok(None),
    };
    Ok(Some((from, to)))
}

/// A query parameter given with a value (an empty field of the compare form is none).
fn asked(text: Option<&str>) -> Option<&str> {
    text.map(str::trim).filter(|t| !t.is_empty())
}

/// A version number from the address: one of the directive's, 1 to `current`.
fn version_number(text: &str, current: i32) -> Result<i32, PageError> {
    match text.parse::<i32>() {
        Ok(number) if (1..=current).contains(&number) => Ok(number),
        _ => Err(PageError::BadInput(format!(
            "A version to compare is a whole number from 1 to {current}, this directive's versions."
        ))),
    }
}

/// The directive's versions, newest first, following the API's cursor for at most
/// [`MAX_VERSION_PAGES`] pages; the content of the `wanted` versions is kept.
async fn history(ui: &Ui, token: &str, directive: Uuid, wanted: &[i32]) -> Result<History, PageError> {
    let mut history = History::default();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_VERSION_PAGES {
        let mut path = format!("/v1/directives/{directive}/versions?limit={API_ROWS}");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={}", encode(cursor)));
        }
        let page: VersionPage = ui.api.get(token, &path).await?;
        for row in page.data {
            if wanted.contains(&row.version) {
                history.contents.push((row.version, row.content));
            }
            history.versions.push(Version {
                number: row.version,
                status: row.status,
                created_at: row.created_at,
            });
        }
        cursor = page.next_cursor;
        if cursor.is_none() {
            break;
        }
    }
    history.truncated = cursor.is_some();
    // The API orders by creation; the version number is what the page promises.
    history.versions.sort_by_key(|v| std::cmp::Reverse(v.number));
    Ok(history)
}

/// The content of a version: from the history if it was read there, or asked for by number.
async fn version_text(
    ui: &Ui,
    token: &str,
    directive: Uuid,
    number: i32,
    history: &History,
) -> Result<String, PageError> {
    if let Some((_, content)) = history.contents.iter().find(|(n, _)| *n == number) {
        return Ok(content.clone());
    }
    let row: VersionRow = ui
        .api
        .get(token, &format!("/v1/directives/{directive}/versions/{number}"))
        .await?;
    Ok(row.content)
}

pub async fn change(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Path(raw_id): Path<String>,
    fields: Result<Form<ChangeForm>, FormRejection>,
) -> Result<Response, PageError> {
    let fields = form(fields)?;
    let session = ui.session_for_form(&headers, fields.csrf.as_deref())?;
    let directive = id(&raw_id)?;
    let (method, body) = change_request(&fields)?;
    let _: Value = ui
        .api
        .send(&session.token, method, &format!("/v1/directives/{directive}"), body)
        .await?;
    Ok(Redirect::to(&format!("{MOUNT}/directives/{directive}")).into_response())
}

/// The API call a directive's form asks for: PUT (a new version) or DELETE (archive).
fn change_request(fields: &ChangeForm) -> Result<(Method, Value), PageError> {
    match fields.action.as_str() {
        "save" => Ok((
            Method::PUT,
            json!({
                "content": content_field(&fields.content)?,
                "priority": priority_field(&fields.priority)?,
            }),
        )),
        "archive" => Ok((Method::DELETE, Value::Null)),
        _ => Err(PageError::BadInput(
            "The form asks neither to save nor to archive the directive; nothing was changed.".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked(from: Option<&str>, to: Option<&str>) -> DetailQuery {
        DetailQuery {
            from: from.map(String::from),
            to: to.map(String::from),
        }
    }

    fn refused<T>(result: Result<T, PageError>) -> bool {
        matches!(result, Err(PageError::BadInput(_)))
    }

    #[test]
    fn the_previous_and_current_versions_are_compared_by_default() {
        assert_eq!(compared(&asked(None, None), 5).ok().flatten(), Some((4, 5)));
        assert_eq!(compared(&asked(Some(""), Some(" ")), 5).ok().flatten(), Some((4, 5)));
        assert_eq!(compared(&asked(None, Some("3")), 5).ok().flatten(), Some((2, 3)));
        assert_eq!(compared(&asked(Some("1"), None), 5).ok().flatten(), Some((1, 5)));
        assert_eq!(compared(&asked(Some("5"), Some("2")), 5).ok().flatten(), Some((5, 2)));
    }

    #[test]
    fn a_first_version_has_nothing_to_compare() {
        assert!(matches!(compared(&asked(None, None), 1), Ok(None)));
        assert!(matches!(compared(&asked(None, Some("1")), 4), Ok(None)));
        assert_eq!(compared(&asked(Some("1"), Some("1")), 1).ok().flatten(), Some((1, 1)));
    }

    #[test]
    fn version_numbers_outside_the_directive_are_refused() {
        for bad in ["0", "-1", "6", "abc", "1.5", "99999999999"] {
            assert!(refused(compared(&asked(Some(bad), None), 5)), "from={bad}");
            assert!(refused(compared(&asked(None, Some(bad)), 5)), "to={bad}");
        }
    }

    #[test]
    fn content_is_bounded_and_stored_with_lf_line_breaks() {
        assert_eq!(content_field("a\r\nb\r\n").ok().as_deref(), Some("a\nb\n"));
        assert!(refused(content_field("")));
        assert!(refused(content_field(" \r\n\t")));
        assert!(content_field(&"é".repeat(MAX_CONTENT_CHARS)).is_ok());
        assert!(refused(content_field(&"é".repeat(MAX_CONTENT_CHARS + 1))));
    }

    #[test]
    fn priorities_are_whole_numbers_or_nothing() {
        assert_eq!(priority_field(" 7 ").ok(), Some(Some(7)));
        assert_eq!(priority_field("-3").ok(), Some(Some(-3)));
        assert_eq!(priority_field("").ok(), Some(None));
        for bad in ["high", "1.5", "2147483648"] {
            assert!(refused(priority_field(bad)), "{bad}");
        }
    }

    #[test]
    fn a_new_directive_needs_a_bounded_name() {
        let form = |name: &str| CreateForm {
            csrf: None,
            name: name.into(),
            content: "Answer in French.".into(),
            priority: String::new(),
        };
        let body = create_fields(&form("  tone  ")).ok();
        assert_eq!(
            body,
            Some(json!({"name": "tone", "content": "Answer in French.", "priority": null}))
        );
        assert!(refused(create_fields(&form("   "))));
        assert!(refused(create_fields(&form(&"n".repeat(MAX_NAME_CHARS + 1)))));
    }

    #[test]
    fn a_directive_form_saves_or_archives_and_nothing_else() {
        let form = |action: &str| ChangeForm {
            csrf: None,
            action: action.into(),
            content: "Be brief.\r\n".into(),
            priority: "2".into(),
        };
        let (method, body) = change_request(&form("save")).expect("a save form is valid");
        assert_eq!(method, Method::PUT);
        assert_eq!(body, json!({"content": "Be brief.\n", "priority": 2}));
        let (method, body) = change_request(&form("archive")).expect("an archive form is valid");
        assert_eq!((method, body), (Method::DELETE, Value::Null));
        assert!(refused(change_request(&form(""))));
        assert!(refused(change_request(&form("delete"))));
    }

    #[test]
    fn the_status_filter_is_any_or_a_known_status() {
        assert_eq!(status_filter(None).ok(), Some(""));
        assert_eq!(status_filter(Some("")).ok(), Some(""));
        assert_eq!(status_filter(Some("archived")).ok(), Some("archived"));
        assert!(refused(status_filter(Some("paused"))));
    }

    fn sample(content: &str, version: i32, status: &str) -> Directive {
        Directive {
            id: Uuid::nil(),
            agent_id: Uuid::nil(),
            name: "tone".into(),
            content: content.into(),
            version,
            status: status.into(),
            priority: 3,
            created_at: DateTime::UNIX_EPOCH,
            updated_at: DateTime::UNIX_EPOCH,
        }
    }

    /// The frame of a signed-in operator, so the forms are rendered too.
    fn signed_in() -> Chrome {
        Chrome {
            title: "t".into(),
            nav: "agents",
            signed_in: Some(crate::render::SignedIn {
                org: "org".into(),
                token_prefix: "ibx_abcd".into(),
                csrf: "the-csrf".into(),
                agents: true,
                memories: true,
                sessions: true,
                analytics: true,
                tokens: true,
            }),
        }
    }

    #[test]
    fn the_directive_page_shows_the_diff_history_and_forms() {
        let version = |number, status: &str| Version {
            number,
            status: status.into(),
            created_at: DateTime::UNIX_EPOCH,
        };
        let html = DirectiveDetail {
            chrome: signed_in(),
            directive: sample("\nBe <brief>.\nAlways.\n", 2, "active"),
            agent: "support-bot".into(),
            versions: vec![version(2, "active"), version(1, "active")],
            truncated: false,
            comparison: Some(Comparison {
                from: 1,
                to: 2,
                diff: diff::lines("Be long.\nAlways.\n", "\nBe <brief>.\nAlways.\n"),
            }),
            from: "1".into(),
            to: "2".into(),
            can_write: true,
        }
        .render()
        .expect("the page renders");
        assert!(html.contains(r#"<tr class="del">"#) && html.contains(r#"<tr class="add">"#));
        assert!(html.contains(r#"<tr class="same">"#));
        assert!(html.contains("Be &#60;brief&#62;.") || html.contains("Be &lt;brief&gt;."));
        // Parsers drop the first line break after <textarea> and <pre>: the content's own survives.
        assert!(html.contains("required>\n\nBe "), "{html}");
        assert!(html.contains("<pre class=\"directive\">\n\nBe "), "{html}");
        assert!(html.contains(r#"name="action" value="save""#));
        assert!(html.contains(r#"name="action" value="archive""#));
        assert!(html.contains(r#"value="the-csrf""#));
        assert!(html.contains("?from=1&amp;to=2#compare"));
        assert!(!html.contains("style="), "the CSP allows no inline style");
    }

    #[test]
    fn an_archived_directive_has_no_archive_button_and_a_first_version_no_diff() {
        let html = DirectiveDetail {
            chrome: signed_in(),
            directive: sample("Be brief.", 1, "archived"),
            agent: "support-bot".into(),
            versions: Vec::new(),
            truncated: false,
            comparison: None,
            from: String::new(),
            to: String::new(),
            can_write: true,
        }
        .render()
        .expect("the page renders");
        assert!(!html.contains(r#"value="archive""#));
        assert!(html.contains("nothing before it to compare"));
    }

    #[test]
    fn the_list_has_an_empty_state_and_a_create_form_for_writers() {
        let list = |can_write| DirectiveList {
            chrome: signed_in(),
            agent_id: Uuid::nil(),
            agent: "support-bot".into(),
            directives: Vec::new(),
            status: "",
            statuses: STATUSES,
            next: None,
            can_write,
        };
        let html = list(true).render().expect("the page renders");
        assert!(html.contains("No directives yet."));
        assert!(html.contains("Directives of support-bot"));
        assert!(html.contains(r#"action="/dashboard/agents/00000000-0000-0000-0000-000000000000/directives""#));
        assert!(html.contains(r#"<textarea id="content""#));
        let html = list(false).render().expect("the page renders");
        assert!(!html.contains(r#"<textarea id="content""#));
    }

    #[test]
    fn the_preview_is_the_first_line_with_text_cut_short() {
        let directive = |content: &str| sample(content, 1, "active");
        assert_eq!(directive("\n  \n  Be brief.\nMore.").preview(), "Be brief.");
        let long = "x".repeat(PREVIEW_CHARS + 5);
        assert_eq!(directive(&long).preview(), format!("{}…", "x".repeat(PREVIEW_CHARS)));
        assert_eq!(
            directive(&"y".repeat(PREVIEW_CHARS)).preview(),
            "y".repeat(PREVIEW_CHARS)
        );
    }
}
