//! The overview: requests, errors and token spend for the last 24 hours and 30 days, and the
//! models used, from the API's usage analytics.

use std::sync::Arc;

use askama::Template;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::{Duration, Utc};
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

#[derive(Template)]
#[template(path = "overview.html")]
struct Overview {
    chrome: Chrome,
    /// None when the token may not read analytics.
    windows: Option<Vec<Window>>,
    models: Vec<ModelRow>,
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
    let (windows, models) = if identity.can("analytics:read") {
        let (day, month) = tokio::join!(usage(&ui, &session.token, 1), usage(&ui, &session.token, 30));
        let (day, month) = (day?, month?);
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
            agent_bound: identity.agent.is_some(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::grouped;

    #[test]
    fn numbers_are_grouped_by_thousands() {
        assert_eq!(grouped(0), "0");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(grouped(1234567), "1,234,567");
        assert_eq!(grouped(-45000), "-45,000");
    }
}
