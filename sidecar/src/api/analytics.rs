//! `/v1/analytics/usage`: what the org's (or one agent's) proxied model calls cost, from
//! `usage_events`: a time series in buckets (requests, errors, tokens, latency p50/p95), the totals,
//! the breakdown by model and by agent, and a latency histogram. Buckets without calls are left
//! out of the series (it is sparse); the range and the bucket count are bounded so one request
//! cannot scan or return without limit.

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::extract::{ApiQuery, Caller};
use super::{for_org, sql_error::from_sqlx};
use crate::error::ApiError;
use crate::state::AppState;

const SCOPE: &str = "analytics:read";
/// Buckets one answer may hold.
const MAX_BUCKETS: i64 = 2000;
/// Upper bounds (ms) of the latency histogram's buckets; a last, open bucket holds the rest.
const LATENCY_BOUNDS_MS: &[i32] = &[10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000];

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Bucket {
    Minute,
    Hour,
    Day,
}

impl Bucket {
    fn length(self) -> Duration {
        match self {
            Self::Minute => Duration::minutes(1),
            Self::Hour => Duration::hours(1),
            Self::Day => Duration::days(1),
        }
    }

    fn interval(self) -> &'static str {
        match self {
            Self::Minute => "1 minute",
            Self::Hour => "1 hour",
            Self::Day => "1 day",
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// Default: 24 hours before `to`.
    pub from: Option<DateTime<Utc>>,
    /// Default: now.
    pub to: Option<DateTime<Utc>>,
    /// Default: hour.
    #[param(inline)]
    pub bucket: Option<Bucket>,
    pub agent_id: Option<Uuid>,
}

#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
pub struct Point {
    pub start: DateTime<Utc>,
    pub requests: i64,
    pub errors: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub total_tokens: i64,
    pub latency_ms_p50: Option<f64>,
    pub latency_ms_p95: Option<f64>,
}

#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
pub struct Totals {
    pub requests: i64,
    pub errors: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub total_tokens: i64,
    pub latency_ms_p50: Option<f64>,
    pub latency_ms_p95: Option<f64>,
    pub latency_ms_p99: Option<f64>,
}

#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
pub struct ByModel {
    pub model: String,
    pub requests: i64,
    pub total_tokens: i64,
}

#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
pub struct ByAgent {
    pub agent_id: Option<Uuid>,
    pub requests: i64,
    pub total_tokens: i64,
}

#[derive(Debug, Serialize, sqlx::FromRow, ToSchema)]
pub struct LatencyBucket {
    /// Upper bound in ms; null for the open last bucket.
    pub le_ms: Option<i32>,
    pub count: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Usage {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub bucket: Bucket,
    pub agent_id: Option<Uuid>,
    pub totals: Totals,
    pub series: Vec<Point>,
    pub models: Vec<ByModel>,
    pub agents: Vec<ByAgent>,
    pub latency_histogram: Vec<LatencyBucket>,
}

/// The checked range: `from < to`, at most [`MAX_BUCKETS`] buckets.
fn range(query: &UsageQuery, now: DateTime<Utc>) -> Result<(DateTime<Utc>, DateTime<Utc>, Bucket), ApiError> {
    let bucket = query.bucket.unwrap_or(Bucket::Hour);
    let to = query.to.unwrap_or(now);
    // Checked: `to` may be chrono's earliest time, 24 hours before which does not exist.
    let from = match query.from {
        Some(from) => from,
        None => to
            .checked_sub_signed(Duration::hours(24))
            .ok_or_else(|| ApiError::invalid("to is too early: give from as well"))?,
    };
    if from >= to {
        return Err(ApiError::invalid("from must be before to"));
    }
    let buckets = (to - from).num_seconds() / bucket.length().num_seconds();
    if buckets > MAX_BUCKETS {
        return Err(ApiError::InvalidRequest {
            message: format!(
                "{buckets} buckets of one {:?} asked; at most {MAX_BUCKETS}: use a larger bucket or a shorter range",
                bucket
            ),
            details: Some(serde_json::json!({ "max_buckets": MAX_BUCKETS })),
        });
    }
    Ok((from, to, bucket))
}

/// The filter every query shares: $1 org, $2 from, $3 to, $4 agent.
const SCOPED: &str = "FROM ibex_core.usage_events
     WHERE org_id = $1 AND created_at >= $2 AND created_at < $3 AND ($4::uuid IS NULL OR agent_id = $4)";

#[utoipa::path(
    get,
    path = "/v1/analytics/usage",
    operation_id = "analytics_usage",
    tag = "analytics",
    description = "What the org's (or one agent's) proxied model calls cost, in time buckets. Scope: `analytics:read`.",
    params(UsageQuery),
    responses((status = 200, description = "Usage over the range", body = Usage)),
)]
pub async fn usage(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ApiQuery(query): ApiQuery<UsageQuery>,
) -> Result<Json<Usage>, ApiError> {
    caller.require_scope(SCOPE)?;
    if let Some(agent) = query.agent_id {
        caller.require_agent(agent)?;
    }
    let agent = query.agent_id.or(caller.agent_id);
    let (from, to, bucket) = range(&query, Utc::now())?;
    let mut tx = for_org(&state, caller.org_id).await?;
    let failed = |e| from_sqlx("reading usage", e);
    let totals: Totals = sqlx::query_as(&format!(
        "SELECT count(*) AS requests, count(*) FILTER (WHERE status_code >= 400) AS errors,
                coalesce(sum(prompt_tokens), 0)::bigint AS prompt_tokens,
                coalesce(sum(completion_tokens), 0)::bigint AS completion_tokens,
                coalesce(sum(total_tokens), 0)::bigint AS total_tokens,
                percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) AS latency_ms_p50,
                percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS latency_ms_p95,
                percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms) AS latency_ms_p99
         {SCOPED}"
    ))
    .bind(caller.org_id)
    .bind(from)
    .bind(to)
    .bind(agent)
    .fetch_one(&mut *tx)
    .await
    .map_err(failed)?;
    let series: Vec<Point> = sqlx::query_as(&format!(
        "SELECT date_bin($5::interval, created_at, $2) AS start, count(*) AS requests,
                count(*) FILTER (WHERE status_code >= 400) AS errors,
                sum(prompt_tokens)::bigint AS prompt_tokens, sum(completion_tokens)::bigint AS completion_tokens,
                sum(total_tokens)::bigint AS total_tokens,
                percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) AS latency_ms_p50,
                percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS latency_ms_p95
         {SCOPED} GROUP BY 1 ORDER BY 1"
    ))
    .bind(caller.org_id)
    .bind(from)
    .bind(to)
    .bind(agent)
    .bind(bucket.interval())
    .fetch_all(&mut *tx)
    .await
    .map_err(failed)?;
    let models: Vec<ByModel> = sqlx::query_as(&format!(
        "SELECT model, count(*) AS requests, sum(total_tokens)::bigint AS total_tokens
         {SCOPED} GROUP BY model ORDER BY requests DESC, model LIMIT 100"
    ))
    .bind(caller.org_id)
    .bind(from)
    .bind(to)
    .bind(agent)
    .fetch_all(&mut *tx)
    .await
    .map_err(failed)?;
    let agents: Vec<ByAgent> = sqlx::query_as(&format!(
        "SELECT agent_id, count(*) AS requests, sum(total_tokens)::bigint AS total_tokens
         {SCOPED} GROUP BY agent_id ORDER BY requests DESC, agent_id LIMIT 1000"
    ))
    .bind(caller.org_id)
    .bind(from)
    .bind(to)
    .bind(agent)
    .fetch_all(&mut *tx)
    .await
    .map_err(failed)?;
    let latency_histogram: Vec<LatencyBucket> = sqlx::query_as(&format!(
        "SELECT b.le AS le_ms, count(u.latency_ms) AS count
         FROM (SELECT unnest($5::int[]) AS le UNION ALL SELECT NULL) b
         LEFT JOIN (SELECT (SELECT min(x) FROM unnest($5::int[]) x WHERE x >= latency_ms) AS le, latency_ms
                    {SCOPED}) u ON u.le IS NOT DISTINCT FROM b.le
         GROUP BY b.le ORDER BY b.le NULLS LAST"
    ))
    .bind(caller.org_id)
    .bind(from)
    .bind(to)
    .bind(agent)
    .bind(LATENCY_BOUNDS_MS)
    .fetch_all(&mut *tx)
    .await
    .map_err(failed)?;
    Ok(Json(Usage {
        from,
        to,
        bucket,
        agent_id: agent,
        totals,
        series,
        models,
        agents,
        latency_histogram,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_bounded() {
        let now = Utc::now();
        let query = |from: Option<DateTime<Utc>>, bucket| UsageQuery {
            from,
            to: Some(now),
            bucket,
            agent_id: None,
        };
        let (from, _, bucket) = range(&query(None, None), now).unwrap();
        assert_eq!((now - from, bucket), (Duration::hours(24), Bucket::Hour));
        assert!(range(&query(Some(now), None), now).is_err(), "empty range");
        assert!(range(&query(Some(now - Duration::days(3)), Some(Bucket::Minute)), now).is_err());
        assert!(range(&query(Some(now - Duration::days(365)), Some(Bucket::Day)), now).is_ok());
        let earliest = UsageQuery {
            from: None,
            to: Some(DateTime::<Utc>::MIN_UTC),
            bucket: None,
            agent_id: None,
        };
        assert!(range(&earliest, now).is_err(), "no time before the earliest");
    }
}
