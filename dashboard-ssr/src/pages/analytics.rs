//! Analytics: the usage of a chosen range, for the org or one agent, from one call to the API's
//! usage analytics: the totals, token spend and requests over time, the latency histogram and
//! the models used, drawn as SVG on the server ([`crate::charts`]).
//!
//! A range is a preset (the last hour to the last 90 days, each with a bucket that gives a
//! readable number of bars) or two dates. Presets end at the end of the current bucket, so every
//! bar is a whole minute, hour or day. Times are UTC.

use std::sync::Arc;

use askama::Template;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::{DateTime, Duration, NaiveDate, NaiveTime, SecondsFormat, Utc};
use serde::Deserialize;
use uuid::Uuid;

use super::overview::grouped;
use super::{encode, optional_id, query, Ui};
use crate::charts;
use crate::render::{page, Chrome, PageError, MOUNT};

/// The longest custom range, in days, both dates counted.
const MAX_DAYS: i64 = 366;
/// Custom ranges up to this many days are drawn by the hour (168 bars at most), longer ones by day
/// (366 at most): both far below the API's 2000 buckets.
const HOURLY_UP_TO_DAYS: i64 = 7;
/// Models drawn one bar each; the rest share one bar (the table lists them all).
const CHARTED_MODELS: usize = 10;
/// Agents listed in the breakdown, busiest first.
const LISTED_AGENTS: usize = 20;
/// Buckets filled in at most: the API's own bound, should an answer ever disagree with the ask.
const MAX_BUCKETS: i64 = 2000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Bucket {
    Minute,
    Hour,
    Day,
}

impl Bucket {
    /// The API's name of the bucket.
    fn name(self) -> &'static str {
        match self {
            Self::Minute => "minute",
            Self::Hour => "hour",
            Self::Day => "day",
        }
    }

    fn step(self) -> Duration {
        match self {
            Self::Minute => Duration::minutes(1),
            Self::Hour => Duration::hours(1),
            Self::Day => Duration::days(1),
        }
    }
}

struct Preset {
    key: &'static str,
    label: &'static str,
    hours: i64,
    bucket: Bucket,
}

const PRESETS: [Preset; 5] = [
    Preset {
        key: "1h",
        label: "Last hour",
        hours: 1,
        bucket: Bucket::Minute,
    },
    Preset {
        key: "24h",
        label: "Last 24 hours",
        hours: 24,
        bucket: Bucket::Hour,
    },
    Preset {
        key: "7d",
        label: "Last 7 days",
        hours: 7 * 24,
        bucket: Bucket::Hour,
    },
    Preset {
        key: "30d",
        label: "Last 30 days",
        hours: 30 * 24,
        bucket: Bucket::Day,
    },
    Preset {
        key: "90d",
        label: "Last 90 days",
        hours: 90 * 24,
        bucket: Bucket::Day,
    },
];
/// The range shown when none is asked.
const DEFAULT_PRESET: &str = "24h";

/// The address' parameters: a preset `range`, or `from` and `to` dates (which win), and an
/// optional `agent`. Empty values (a form's blank fields) count as absent.
#[derive(Deserialize, Default)]
pub struct RangeQuery {
    range: Option<String>,
    from: Option<String>,
    to: Option<String>,
    agent: Option<String>,
}

/// The range and filter asked, checked.
#[derive(Debug, PartialEq)]
struct Selection {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    bucket: Bucket,
    /// The preset's key, or None for custom dates.
    preset: Option<&'static str>,
    /// The custom dates as given (the last one included).
    dates: Option<(NaiveDate, NaiveDate)>,
    agent: Option<Uuid>,
}

impl Selection {
    /// What the page says it shows.
    fn label(&self) -> String {
        let range = match (self.preset, self.dates) {
            (_, Some((from, to))) if from == to => format!("{from}"),
            (_, Some((from, to))) => format!("{from} to {to}"),
            (Some(key), None) => PRESETS
                .iter()
                .find(|p| p.key == key)
                .map_or(key, |p| p.label)
                .to_string(),
            (None, None) => String::new(),
        };
        format!("{range} (UTC), by {}", self.bucket.name())
    }

    /// The range part of a link to this page: the preset, or the dates.
    fn range_query(&self) -> String {
        match (self.preset, self.dates) {
            (_, Some((from, to))) => format!("from={from}&to={to}"),
            (Some(key), None) => format!("range={key}"),
            (None, None) => String::new(),
        }
    }

    /// The agent part of a link, with its `&`, or nothing.
    fn agent_query(&self) -> String {
        self.agent.map(|a| format!("&agent={a}")).unwrap_or_default()
    }

    /// The API call this selection makes.
    fn api_path(&self) -> String {
        let mut path = format!(
            "/v1/analytics/usage?from={}&to={}&bucket={}",
            encode(&self.from.to_rfc3339_opts(SecondsFormat::Secs, true)),
            encode(&self.to.to_rfc3339_opts(SecondsFormat::Secs, true)),
            self.bucket.name()
        );
        if let Some(agent) = self.agent {
            path.push_str(&format!("&agent_id={agent}"));
        }
        path
    }
}

/// A parameter's value, trimmed; blank is absent.
fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// Every input checked and bounded before anything is asked of the API.
fn select(params: &RangeQuery, now: DateTime<Utc>) -> Result<Selection, PageError> {
    let agent = optional_id("agent filter", params.agent.as_deref())?;
    match (given(&params.from), given(&params.to)) {
        (None, None) => preset(given(&params.range).unwrap_or(DEFAULT_PRESET), now, agent),
        (Some(from), Some(to)) => custom(date("from", from)?, date("to", to)?, agent),
        _ => Err(PageError::BadInput(
            "A custom range needs both a from and a to date (or neither, for a preset range).".into(),
        )),
    }
}

/// The end of the bucket `now` is in: a preset ends there so its bars are whole buckets.
fn bucket_end(now: DateTime<Utc>, bucket: Bucket) -> DateTime<Utc> {
    let step = bucket.step().num_seconds();
    let secs = now.timestamp();
    let end = secs.saturating_sub(secs.rem_euclid(step)).saturating_add(step);
    DateTime::from_timestamp(end, 0).unwrap_or(now)
}

fn preset(key: &str, now: DateTime<Utc>, agent: Option<Uuid>) -> Result<Selection, PageError> {
    let Some(preset) = PRESETS.iter().find(|p| p.key == key) else {
        let keys: Vec<&str> = PRESETS.iter().map(|p| p.key).collect();
        return Err(PageError::BadInput(format!(
            "The range is one of {}, or a from and a to date.",
            keys.join(", ")
        )));
    };
    let to = bucket_end(now, preset.bucket);
    Ok(Selection {
        from: to - Duration::hours(preset.hours),
        to,
        bucket: preset.bucket,
        preset: Some(preset.key),
        dates: None,
        agent,
    })
}

/// A date as a date input sends it: `YYYY-MM-DD`, four digits of year.
fn date(field: &str, text: &str) -> Result<NaiveDate, PageError> {
    let shaped = text.len() == 10
        && text.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        });
    let parsed = shaped
        .then(|| NaiveDate::parse_from_str(text, "%Y-%m-%d").ok())
        .flatten();
    parsed.ok_or_else(|| PageError::BadInput(format!("The {field} date must be a calendar date written YYYY-MM-DD.")))
}

/// Two dates, both included: from the start of `from` to the end of `to`, UTC.
fn custom(from: NaiveDate, to: NaiveDate, agent: Option<Uuid>) -> Result<Selection, PageError> {
    if from > to {
        return Err(PageError::BadInput(format!(
            "The from date ({from}) must come before the to date ({to})."
        )));
    }
    let days = (to - from).num_days() + 1;
    if days > MAX_DAYS {
        return Err(PageError::BadInput(format!(
            "A custom range covers at most {MAX_DAYS} days; {from} to {to} is {days}."
        )));
    }
    let end = to
        .succ_opt()
        .ok_or_else(|| PageError::BadInput("The to date is too late.".into()))?;
    let bucket = if days <= HOURLY_UP_TO_DAYS {
        Bucket::Hour
    } else {
        Bucket::Day
    };
    Ok(Selection {
        from: from.and_time(NaiveTime::MIN).and_utc(),
        to: end.and_time(NaiveTime::MIN).and_utc(),
        bucket,
        preset: None,
        dates: Some((from, to)),
        agent,
    })
}

#[derive(Deserialize)]
struct Totals {
    requests: i64,
    errors: i64,
    prompt_tokens: i64,
    completion_tokens: i64,
    total_tokens: i64,
    latency_ms_p50: Option<f64>,
    latency_ms_p95: Option<f64>,
    latency_ms_p99: Option<f64>,
}

#[derive(Deserialize)]
struct Point {
    start: DateTime<Utc>,
    requests: i64,
    total_tokens: i64,
}

#[derive(Deserialize)]
struct ByModel {
    model: String,
    requests: i64,
    total_tokens: i64,
}

#[derive(Deserialize)]
struct ByAgent {
    agent_id: Option<Uuid>,
    requests: i64,
    total_tokens: i64,
}

#[derive(Deserialize)]
struct LatencyBucket {
    le_ms: Option<i32>,
    count: i64,
}

#[derive(Deserialize)]
struct Usage {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    totals: Totals,
    #[serde(default)]
    series: Vec<Point>,
    #[serde(default)]
    models: Vec<ByModel>,
    #[serde(default)]
    agents: Vec<ByAgent>,
    #[serde(default)]
    latency_histogram: Vec<LatencyBucket>,
}

/// The API's series is sparse (a bucket without calls is left out) and binned from `from`; a
/// chart needs every bucket, so the missing ones are zeros.
fn dense(usage: &Usage, step: Duration, value: impl Fn(&Point) -> i64) -> Vec<(DateTime<Utc>, i64)> {
    let step_secs = step.num_seconds().max(1);
    let span = (usage.to - usage.from).num_seconds().max(0);
    let count = (span.saturating_add(step_secs - 1) / step_secs).min(MAX_BUCKETS);
    let mut points: Vec<(DateTime<Utc>, i64)> = (0..count)
        .map(|i| (usage.from + Duration::seconds(i * step_secs), 0))
        .collect();
    for point in &usage.series {
        let index = (point.start - usage.from).num_seconds().div_euclid(step_secs);
        if let Some(slot) = usize::try_from(index).ok().and_then(|i| points.get_mut(i)) {
            slot.1 = slot.1.saturating_add(value(point));
        }
    }
    points
}

/// The histogram's rows, labelled by their upper bound; the open last one by the bound before it.
fn latency_rows(histogram: &[LatencyBucket]) -> Vec<(String, i64)> {
    let highest = histogram.iter().filter_map(|b| b.le_ms).max();
    histogram
        .iter()
        .map(|b| {
            let label = match (b.le_ms, highest) {
                (Some(le), _) => format!("≤{le} ms"),
                (None, Some(highest)) => format!("> {highest} ms"),
                (None, None) => "any".to_string(),
            };
            (label, b.count)
        })
        .collect()
}

/// The busiest models one bar each, the others summed into one.
fn model_rows(models: &[ByModel]) -> Vec<(String, i64)> {
    let mut rows: Vec<(String, i64)> = models
        .iter()
        .take(CHARTED_MODELS)
        .map(|m| (m.model.clone(), m.requests))
        .collect();
    let rest = &models[models.len().min(CHARTED_MODELS)..];
    if !rest.is_empty() {
        let requests = rest.iter().map(|m| m.requests).fold(0i64, i64::saturating_add);
        rows.push((format!("{} other models", rest.len()), requests));
    }
    rows
}

/// A latency percentile, or a dash when there were no calls.
fn millis(value: Option<f64>) -> String {
    value.map_or_else(|| "—".to_string(), |ms| format!("{} ms", grouped(ms.round() as i64)))
}

pub struct Figure {
    label: &'static str,
    value: String,
}

pub struct ModelRow {
    model: String,
    requests: String,
    total_tokens: String,
    share: String,
}

pub struct AgentRow {
    /// None: calls made with a token bound to no agent.
    agent: Option<String>,
    requests: String,
    total_tokens: String,
    /// This page filtered by the agent.
    href: String,
}

/// What the API answered, ready to show.
pub struct Report {
    figures: Vec<Figure>,
    /// No call in the range: the page says so instead of drawing empty charts.
    empty: bool,
    tokens_chart: String,
    requests_chart: String,
    latency_chart: String,
    models_chart: String,
    models: Vec<ModelRow>,
    agents: Vec<AgentRow>,
}

pub struct PresetLink {
    label: &'static str,
    href: String,
    current: bool,
}

#[derive(Template)]
#[template(path = "analytics.html")]
struct Analytics {
    chrome: Chrome,
    presets: Vec<PresetLink>,
    /// The form's values: the preset kept when the dates are left blank, the dates, the agent.
    range: &'static str,
    from: String,
    to: String,
    agent: String,
    /// The same range for every agent, when filtered by one.
    all_agents: Option<String>,
    label: String,
    agent_bound: bool,
    /// None when the token may not read analytics.
    report: Option<Report>,
}

fn figures(totals: &Totals) -> Vec<Figure> {
    let errors = if totals.requests > 0 {
        format!(
            "{} ({:.1}%)",
            grouped(totals.errors),
            totals.errors as f64 * 100.0 / totals.requests as f64
        )
    } else {
        grouped(totals.errors)
    };
    vec![
        Figure {
            label: "Requests",
            value: grouped(totals.requests),
        },
        Figure {
            label: "Errors",
            value: errors,
        },
        Figure {
            label: "Prompt tokens",
            value: grouped(totals.prompt_tokens),
        },
        Figure {
            label: "Completion tokens",
            value: grouped(totals.completion_tokens),
        },
        Figure {
            label: "Total tokens",
            value: grouped(totals.total_tokens),
        },
        Figure {
            label: "Latency p50 / p95 / p99",
            value: format!(
                "{} / {} / {}",
                millis(totals.latency_ms_p50),
                millis(totals.latency_ms_p95),
                millis(totals.latency_ms_p99)
            ),
        },
    ]
}

fn report(usage: &Usage, selection: &Selection) -> Report {
    let step = selection.bucket.step();
    let per = selection.bucket.name();
    let models = usage
        .models
        .iter()
        .map(|m| ModelRow {
            model: m.model.clone(),
            requests: grouped(m.requests),
            total_tokens: grouped(m.total_tokens),
            share: format!(
                "{:.1}%",
                m.requests as f64 * 100.0 / usage.totals.requests.max(1) as f64
            ),
        })
        .collect();
    // The breakdown by agent leads to the filter; filtered, it would be one row.
    let agents = if selection.agent.is_some() {
        Vec::new()
    } else {
        usage
            .agents
            .iter()
            .take(LISTED_AGENTS)
            .map(|a| AgentRow {
                agent: a.agent_id.map(|id| id.to_string()),
                requests: grouped(a.requests),
                total_tokens: grouped(a.total_tokens),
                href: a.agent_id.map_or_else(String::new, |id| {
                    format!("{MOUNT}/analytics?{}&agent={id}", selection.range_query())
                }),
            })
            .collect()
    };
    Report {
        figures: figures(&usage.totals),
        empty: usage.totals.requests == 0,
        tokens_chart: charts::time_bars(
            &format!("Tokens per {per}"),
            "tokens",
            step,
            &dense(usage, step, |p| p.total_tokens),
        ),
        requests_chart: charts::time_bars(
            &format!("Requests per {per}"),
            "requests",
            step,
            &dense(usage, step, |p| p.requests),
        ),
        latency_chart: charts::bars("Latency", "requests", &latency_rows(&usage.latency_histogram)),
        models_chart: charts::bars("Requests by model", "requests", &model_rows(&usage.models)),
        models,
        agents,
    }
}

fn preset_links(selection: &Selection) -> Vec<PresetLink> {
    PRESETS
        .iter()
        .map(|p| PresetLink {
            label: p.label,
            href: format!("{MOUNT}/analytics?range={}{}", p.key, selection.agent_query()),
            current: selection.preset == Some(p.key),
        })
        .collect()
}

pub async fn show(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    params: Result<Query<RangeQuery>, QueryRejection>,
) -> Result<Response, PageError> {
    let session = ui.session(&headers)?;
    let selection = select(&query(params)?, Utc::now())?;
    let report = if session.identity.can("analytics:read") {
        let usage: Usage = ui.api.get(&session.token, &selection.api_path()).await?;
        Some(report(&usage, &selection))
    } else {
        None
    };
    let (from, to) = selection
        .dates
        .map(|(from, to)| (from.to_string(), to.to_string()))
        .unwrap_or_default();
    Ok(page(
        StatusCode::OK,
        &Analytics {
            chrome: Chrome::new("Analytics", "analytics", Some(&session)),
            presets: preset_links(&selection),
            range: selection.preset.unwrap_or(DEFAULT_PRESET),
            from,
            to,
            agent: selection.agent.map(|a| a.to_string()).unwrap_or_default(),
            all_agents: selection
                .agent
                .map(|_| format!("{MOUNT}/analytics?{}", selection.range_query())),
            label: selection.label(),
            agent_bound: session.identity.agent.is_some(),
            report,
        },
    ))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 5, 3, 14, 23, 17)
            .single()
            .expect("a valid time")
    }

    fn params(range: &str, from: &str, to: &str, agent: &str) -> RangeQuery {
        let some = |s: &str| Some(s.to_string());
        RangeQuery {
            range: some(range),
            from: some(from),
            to: some(to),
            agent: some(agent),
        }
    }

    fn refused(params: &RangeQuery) -> String {
        match select(params, now()) {
            Err(PageError::BadInput(reason)) => reason,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn presets_end_at_the_current_bucket_end() {
        let day = select(&RangeQuery::default(), now()).expect("the default range");
        assert_eq!(day.preset, Some("24h"));
        assert_eq!(day.bucket, Bucket::Hour);
        assert_eq!(day.to, Utc.with_ymd_and_hms(2025, 5, 3, 15, 0, 0).unwrap());
        assert_eq!(day.to - day.from, Duration::hours(24));
        let hour = select(&params("1h", "", " ", ""), now()).expect("blank dates: the preset");
        assert_eq!(hour.bucket, Bucket::Minute);
        assert_eq!(hour.to, Utc.with_ymd_and_hms(2025, 5, 3, 14, 24, 0).unwrap());
        let quarter = select(&params("90d", "", "", ""), now()).expect("90 days");
        assert_eq!(quarter.bucket, Bucket::Day);
        assert_eq!(quarter.to, Utc.with_ymd_and_hms(2025, 5, 4, 0, 0, 0).unwrap());
        assert_eq!(quarter.to - quarter.from, Duration::days(90));
        assert!(refused(&params("1y", "", "", "")).contains("1h, 24h, 7d, 30d, 90d"));
    }

    #[test]
    fn custom_dates_include_both_days_and_pick_a_bucket() {
        let week = select(&params("1h", "2025-04-01", "2025-04-07", ""), now()).expect("a week");
        assert_eq!(week.preset, None);
        assert_eq!(week.bucket, Bucket::Hour);
        assert_eq!(week.from, Utc.with_ymd_and_hms(2025, 4, 1, 0, 0, 0).unwrap());
        assert_eq!(week.to, Utc.with_ymd_and_hms(2025, 4, 8, 0, 0, 0).unwrap());
        let one = select(&params("", "2025-04-01", "2025-04-01", ""), now()).expect("one day");
        assert_eq!(one.to - one.from, Duration::days(1));
        assert_eq!(one.label(), "2025-04-01 (UTC), by hour");
        let year = select(&params("", "2024-05-01", "2025-04-30", ""), now()).expect("a year");
        assert_eq!(year.bucket, Bucket::Day);
        assert_eq!(year.range_query(), "from=2024-05-01&to=2025-04-30");
    }

    #[test]
    fn bad_ranges_are_refused() {
        assert!(refused(&params("", "2025-04-02", "2025-04-01", "")).contains("before"));
        assert!(refused(&params("", "2024-01-01", "2025-01-01", "")).contains("at most 366 days"));
        assert!(refused(&params("", "2025-04-01", "", "")).contains("both"));
        for bad in [
            "2025-4-1",
            "01/04/2025",
            "2025-02-30",
            "+202-04-01",
            "2025-04-01T00:00",
            "x",
        ] {
            assert!(
                refused(&params("", bad, "2025-04-30", "")).contains("YYYY-MM-DD"),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_agent_filter_is_a_uuid() {
        let id = "6f1c8c2e-2f55-4a8e-9d59-0c5b0c7b9a11";
        let chosen = select(&params("7d", "", "", id), now()).expect("an agent id");
        assert_eq!(chosen.agent.map(|a| a.to_string()).as_deref(), Some(id));
        assert!(chosen.api_path().ends_with(&format!("&bucket=hour&agent_id={id}")));
        assert!(refused(&params("7d", "", "", "not-a-uuid")).contains("UUID"));
        assert!(refused(&params("7d", "", "", &"a".repeat(5000))).contains("UUID"));
    }

    #[test]
    fn the_api_is_asked_for_the_selected_range() {
        let day = select(&RangeQuery::default(), now()).expect("the default range");
        assert_eq!(
            day.api_path(),
            "/v1/analytics/usage?from=2025-05-02T15%3A00%3A00Z&to=2025-05-03T15%3A00%3A00Z&bucket=hour"
        );
    }

    fn usage(series: Vec<Point>) -> Usage {
        let from = Utc.with_ymd_and_hms(2025, 5, 3, 0, 0, 0).unwrap();
        Usage {
            from,
            to: from + Duration::hours(24),
            totals: Totals {
                requests: 0,
                errors: 0,
                prompt_tokens: 0,
                completion_tokens: 0,
                total_tokens: 0,
                latency_ms_p50: None,
                latency_ms_p95: None,
                latency_ms_p99: None,
            },
            series,
            models: Vec::new(),
            agents: Vec::new(),
            latency_histogram: Vec::new(),
        }
    }

    #[test]
    fn missing_buckets_are_filled_with_zeros() {
        let from = Utc.with_ymd_and_hms(2025, 5, 3, 0, 0, 0).unwrap();
        let point = |hour: i64, requests| Point {
            start: from + Duration::hours(hour),
            requests,
            total_tokens: requests * 10,
        };
        let usage = usage(vec![point(2, 5), point(23, 7), point(24, 9), point(-1, 9)]);
        let points = dense(&usage, Duration::hours(1), |p| p.requests);
        assert_eq!(points.len(), 24);
        assert_eq!(points[0], (from, 0));
        assert_eq!(points[2].1, 5);
        assert_eq!(points[23], (from + Duration::hours(23), 7));
        assert_eq!(
            points.iter().map(|p| p.1).sum::<i64>(),
            12,
            "points outside the range are dropped"
        );
    }

    #[test]
    fn the_open_latency_bucket_is_labelled_by_the_last_bound() {
        let bucket = |le_ms, count| LatencyBucket { le_ms, count };
        let rows = latency_rows(&[bucket(Some(10), 1), bucket(Some(30000), 2), bucket(None, 3)]);
        let labels: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(labels, ["≤10 ms", "≤30000 ms", "> 30000 ms"]);
    }

    /// The API's answer, as `sidecar/src/api/analytics.rs` serializes it.
    fn answer() -> Usage {
        serde_json::from_value(serde_json::json!({
            "from": "2025-05-02T15:00:00Z", "to": "2025-05-03T15:00:00Z", "bucket": "hour", "agent_id": null,
            "totals": {"requests": 12, "errors": 1, "prompt_tokens": 1000, "completion_tokens": 234,
                       "total_tokens": 1234, "latency_ms_p50": 120.4, "latency_ms_p95": 980.0, "latency_ms_p99": null},
            "series": [
                {"start": "2025-05-02T15:00:00Z", "requests": 2, "errors": 0, "prompt_tokens": 100,
                 "completion_tokens": 20, "total_tokens": 120, "latency_ms_p50": 100.0, "latency_ms_p95": 200.0},
                {"start": "2025-05-03T14:00:00Z", "requests": 10, "errors": 1, "prompt_tokens": 900,
                 "completion_tokens": 214, "total_tokens": 1114, "latency_ms_p50": null, "latency_ms_p95": null}
            ],
            "models": [{"model": "<script>&\"", "requests": 12, "total_tokens": 1234}],
            "agents": [{"agent_id": "6f1c8c2e-2f55-4a8e-9d59-0c5b0c7b9a11", "requests": 11, "total_tokens": 1200},
                       {"agent_id": null, "requests": 1, "total_tokens": 34}],
            "latency_histogram": [{"le_ms": 10, "count": 0}, {"le_ms": 30000, "count": 12}, {"le_ms": null, "count": 0}]
        }))
        .expect("the API's answer reads")
    }

    #[test]
    fn the_page_shows_the_api_answer() {
        let selection = select(&RangeQuery::default(), now()).expect("the default range");
        let report = report(&answer(), &selection);
        let html = Analytics {
            chrome: Chrome::new("Analytics", "analytics", None),
            presets: preset_links(&selection),
            range: DEFAULT_PRESET,
            from: String::new(),
            to: String::new(),
            agent: String::new(),
            all_agents: None,
            label: selection.label(),
            agent_bound: false,
            report: Some(report),
        }
        .render()
        .expect("the page renders");
        assert_eq!(html.matches("<svg ").count(), 4, "tokens, requests, latency, models");
        assert_eq!(html.matches("</svg>").count(), 4);
        assert!(!html.contains("<script"), "a model's name is escaped");
        assert!(html.contains("&lt;script&gt;&amp;&quot;"));
        assert!(html.contains("1,234") && html.contains("120 ms / 980 ms / —"));
        assert!(html.contains("Last 24 hours (UTC), by hour"));
        assert!(html.contains(r#"href="/dashboard/analytics?range=24h" aria-current="page""#));
        assert!(html.contains("/dashboard/analytics?range=24h&#38;agent=6f1c8c2e-2f55-4a8e-9d59-0c5b0c7b9a11"));
        assert!(!html.contains("style="));
    }

    #[test]
    fn models_beyond_the_charted_ones_share_a_bar() {
        let models: Vec<ByModel> = (0..13)
            .map(|i| ByModel {
                model: format!("m{i}"),
                requests: 100 - i,
                total_tokens: 0,
            })
            .collect();
        let rows = model_rows(&models);
        assert_eq!(rows.len(), CHARTED_MODELS + 1);
        assert_eq!(rows[CHARTED_MODELS], ("3 other models".to_string(), 90 + 89 + 88));
        assert_eq!(model_rows(&models[..2]).len(), 2);
    }
}
