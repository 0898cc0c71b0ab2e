//! The management API as the CLI calls it: bearer token, JSON in and out, the error envelope
//! turned into one readable line, lists followed page by page through `next_cursor`.

use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use reqwest::{Method, Response};
use serde_json::Value;

/// Where the API is and who calls it (flags or `IBEX_API_URL` / `IBEX_TOKEN`).
#[derive(Debug, Clone, clap::Args)]
pub struct ApiArgs {
    /// Base URL of the sidecar's HTTP listener.
    #[arg(long, env = "IBEX_API_URL", default_value = "http://127.0.0.1:8780", global = true)]
    pub api_url: String,
    /// A personal access token (`make run` prints the first one).
    #[arg(long, env = "IBEX_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
}

pub struct ApiClient {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl ApiClient {
    pub fn new(args: &ApiArgs) -> anyhow::Result<Self> {
        let token = args
            .token
            .clone()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| anyhow!("no token: pass --token or set IBEX_TOKEN (make run prints the first one)"))?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .context("building the HTTP client")?;
        Ok(Self {
            base: args.api_url.trim_end_matches('/').to_string(),
            token,
            http,
        })
    }

    /// One call; a non-2xx answer is an error carrying the envelope's code, message and request id.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> anyhow::Result<Response> {
        let url = format!("{}{path}", self.base);
        let mut request = self
            .http
            .request(method.clone(), &url)
            .bearer_auth(&self.token)
            .query(query);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("{method} {url}: is the sidecar running (make run)?"))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        bail!("{method} {path}: {}", describe_failure(status.as_u16(), &text))
    }

    pub async fn json(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
    ) -> anyhow::Result<Value> {
        let response = self.send(method, path, query, body).await?;
        if response.status() == reqwest::StatusCode::NO_CONTENT {
            return Ok(Value::Null);
        }
        response.json().await.context("reading the answer as JSON")
    }

    /// Rows of a list: one page, or every page when `all` (pages are keyset cursors, so following
    /// them is as fast at the end as at the start).
    pub async fn list(
        &self,
        path: &str,
        mut query: Vec<(&str, String)>,
        all: bool,
    ) -> anyhow::Result<(Vec<Value>, Option<String>)> {
        let mut rows = Vec::new();
        loop {
            let page = self.json(Method::GET, path, &query, None).await?;
            if let Some(data) = page.get("data").and_then(Value::as_array) {
                rows.extend(data.iter().cloned());
            }
            let next = page.get("next_cursor").and_then(Value::as_str).map(str::to_string);
            match next {
                Some(cursor) if all => {
                    query.retain(|(k, _)| *k != "cursor");
                    query.push(("cursor", cursor));
                }
                next => return Ok((rows, next)),
            }
        }
    }
}

/// `404 not_found: agent … not found (request id …)`, or the raw body when it is not an envelope.
pub fn describe_failure(status: u16, body: &str) -> String {
    let Ok(envelope) = serde_json::from_str::<Value>(body) else {
        return format!("HTTP {status}: {}", body.trim());
    };
    let error = &envelope["error"];
    let mut line = format!(
        "HTTP {status} {}: {}",
        error["code"].as_str().unwrap_or("error"),
        error["message"].as_str().unwrap_or("")
    );
    if let Some(allowed) = error["details"]["allowed"].as_array() {
        let names: Vec<&str> = allowed.iter().filter_map(Value::as_str).collect();
        line.push_str(&format!(" (allowed: {})", names.join(", ")));
    }
    if let Some(id) = error["request_id"].as_str() {
        line.push_str(&format!(" [request id {id}]"));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_read_the_envelope() {
        let body = r#"{"error":{"code":"invalid_transition","message":"cannot go","details":{"allowed":["paused","archived"]},"request_id":"r1"}}"#;
        assert_eq!(
            describe_failure(409, body),
            "HTTP 409 invalid_transition: cannot go (allowed: paused, archived) [request id r1]"
        );
        assert_eq!(describe_failure(502, "bad gateway\n"), "HTTP 502: bad gateway");
    }
}
