//! The overview: memories, agents and sessions, requests, errors and token spend for the last
//! 24 hours and 30 days, the models used, and the health of the workers (queues and dead
//! letters), from the API's overview and usage analytics.

use std::sync::Arc;

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;

use super::{encode, Ui};
use crate::render::{page, Chrome, PageError};

#[derive(Deserialize, Default)]
struct Totals {
    requests: i64,
    errors: i64,
    prompt_tokens: i64,
    completion_tokens: i64,
    total_tokens: i64,
}

#[derive(Deserialize)]
struct ByModel {
    model: String,
    requests: i64,
    total_tokens: i64,
}

#[derive(Deserialize)]
struct Usage {
    totals: Totals,
    #[serde(default)]
    models: Vec<ByModel>,
}

/// One column of the overview.
pub struct Window {
    label: &'static str,
    requests: String,
    errors: String,
    prompt_tokens: String,
    completion_tokens: String,
    total_tokens: String,
}

pub struct ModelRow {
    model: String,
    requests: String,
    total_tokens: String,
}

#[derive(Deserialize, Default)]
struct Counts {
    total: i64,
    last_24h: i64,
    last_30d: i64,
}

#[derive(Deserialize, Default)]
struct Queue {
    pending: i64,
    oldest: Option<DateTime<Utc>>,
}

#[derive(Deserialize, Default)]
struct Workers {
    indexer: Queue,
    extraction: Queue,
    archive: Queue,
    hot_cache: Queue,
    dead_letters: Queue,
    dead_extractions: Queue,
}

#[derive(Deserialize, Default)]
struct Figures {
    memories: Counts,
    agents: i64,
    sessions: Counts,
    workers: Workers,
}

/// One row of the inventory: a count now and what came in the two windows.
pub struct Inventory {
    label: &'static str,
    now_label: &'static str,
    now: String,
    day: String,
    month: String,
}

/// A queue that waits this long behind its oldest item is shown as lagging: every worker
/// polls within seconds, so minutes mean it is stopped or failing.
const LAGGING_AFTER_SECONDS: i64 = 300;

/// One worker's line of the health table.
pub struct Health {
    worker: &'static str,
    what: &'static str,
    pending: String,
    /// "ok", "busy", "lagging" or "failed": the badge's class and text.
    state: &'static str,
    oldest: String,
}

impl Health {
    fn of(worker: &'static str, what: &'static str, queue: &Queue, failures: bool, now: DateTime<Utc>) -> Self {
        let age = queue.oldest.map(|t| (now - t).num_seconds().max(0));
        let state = match (queue.pending, failures, age) {
            (0, _, _) => "ok",
            (_, true, _) => "failed",
            (_, false, Some(a)) if a >= LAGGING_AFTER_SECONDS => "lagging",
            _ => "busy",
        };
        Self {
            worker,
            what,
            pending: grouped(queue.pending),
            state,
            oldest: age.map_or_else(|| "—".to_string(), ago),
        }
    }
}

/// 42 → "42 s", 600 → "10 min", 7200 → "2 h", 172800 → "2 d".
fn ago(seconds: i64) -> String {
    match seconds {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} d", s / 86_400),
    }
}

fn inventory(figures: &Figures) -> Vec<Inventory> {
    let row = |label, now_label, now: i64, c: &Counts| Inventory {
        label,
        now_label,
        now: grouped(now),
        day: grouped(c.last_24h),
        month: grouped(c.last_30d),
    };
    vec![
        row("Memories", "active", figures.memories.total, &figures.memories),
        row("Sessions", "active", figures.sessions.total, &figures.sessions),
    ]
}

fn health(w: &Workers, now: DateTime<Utc>) -> Vec<Health> {
    vec![
        Health::of("Indexer", "memory events to link and count", &w.indexer, false, now),
        Health::of(
            "Extraction",
            "completed sessions to learn from",
            &w.extraction,
            false,
            now,
        ),
        Health::of("Archive", "completed sessions to write to S3", &w.archive, false, now),
        Health::of("Hot cache", "changes to push to Redis", &w.hot_cache, false, now),
        Health::of(
            "Dead letters",
            "events and jobs that failed every attempt",
            &w.dead_letters,
            true,
            now,
        ),
        Health::of(
            "Given-up extractions",
            "sessions extraction gave up on",
            &w.dead_extractions,
            true,
            now,
        ),
    ]
}

#[derive(Template)]
#[template(path = "overview.html")]
struct Overview {
    chrome: Chrome,
    /// None when the token may not read analytics.
    windows: Option<Vec<Window>>,
    models: Vec<ModelRow>,
    agents: String,
    inventory: Vec<Inventory>,
    health: Vec<Health>,
    agent_bound: bool,
}

/// 1234567 → "1,234,567".
pub fn grouped(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

async fn usage(ui: &Ui, token: &str, days: i64) -> Result<Usage, PageError> {
    let to = Utc::now();
    let from = to - Duration::days(days);
    let bucket = if days <= 1 { "hour" } else { "day" };
    let path = format!(
        "/v1/analytics/usage?from={}&to={}&bucket={bucket}",
        encode(&from.to_rfc3339()),
        encode(&to.to_rfc3339())
    );
    Ok(ui.api.get(token, &path).await?)
}

pub async fn show(State(ui): State<Arc<Ui>>, headers: HeaderMap) -> Result<Response, PageError> {
    let session = ui.session(&headers)?;
    let identity = &session.identity;
    let mut figures = Figures::default();
    let (windows, models) = if identity.can("analytics:read") {
        let (day, month, overview) = tokio::join!(
            usage(&ui, &session.token, 1),
            usage(&ui, &session.token, 30),
            ui.api.get::<Figures>(&session.token, "/v1/overview")
        );
        let (day, month) = (day?, month?);
        figures = overview?;
        let window = |label, t: &Totals| Window {
            label,
            requests: grouped(t.requests),
            errors: grouped(t.errors),
            prompt_tokens: grouped(t.prompt_tokens),
            completion_tokens: grouped(t.completion_tokens),
            total_tokens: grouped(t.total_tokens),
        };
        let models = month
            .models
            .iter()
            .map(|m| ModelRow {
                model: m.model.clone(),
                requests: grouped(m.requests),
                total_tokens: grouped(m.total_tokens),
            })
            .collect();
        (
            Some(vec![
                window("Last 24 hours", &day.totals),
                window("Last 30 days", &month.totals),
            ]),
            models,
        )
    } else {
        (None, Vec::new())
    };
    Ok(page(
        StatusCode::OK,
        &Overview {
            chrome: Chrome::new("Overview", "overview", Some(&session)),
            windows,
            models,
            agents: grouped(figures.agents),
            inventory: inventory(&figures),
            health: health(&figures.workers, Utc::now()),
            agent_bound: identity.agent.is_some(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_is_ok_empty_busy_young_lagging_old_and_failed_with_dead_letters() {
        let now = Utc::now();
        let queue = |pending, seconds: Option<i64>| Queue {
            pending,
            oldest: seconds.map(|s| now - Duration::seconds(s)),
        };
        assert_eq!(Health::of("w", "", &queue(0, None), false, now).state, "ok");
        assert_eq!(Health::of("w", "", &queue(3, Some(5)), false, now).state, "busy");
        let old = Health::of("w", "", &queue(3, Some(900)), false, now);
        assert_eq!((old.state, old.oldest.as_str()), ("lagging", "15 min"));
        assert_eq!(Health::of("w", "", &queue(1, Some(5)), true, now).state, "failed");
        assert_eq!(Health::of("w", "", &queue(0, None), true, now).state, "ok");
    }

    #[test]
    fn ages_are_short() {
        assert_eq!(ago(42), "42 s");
        assert_eq!(ago(600), "10 min");
        assert_eq!(ago(7200), "2 h");
        assert_eq!(ago(3 * 86_400), "3 d");
    }

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(1234567), "1,234,567");
        assert_eq!(grouped(-45000), "-45,000");
    }
}
