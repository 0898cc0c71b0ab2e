//! `/v1/analytics/usage`: what the org's (or one agent's) proxied model calls cost, from the
//! hourly rollup (`usage_hourly`, filled by [`crate::usage_rollup`]) for whole rolled hours and
//! from `usage_events` for the rest: a time series in buckets (requests, errors, tokens, latency
//! p50/p95), the totals, the breakdown by model and by agent, and a latency histogram. Buckets
//! without calls are left out of the series (it is sparse); the range and the bucket count are
//! bounded so one request cannot scan or return without limit.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Duration, DurationRound, Utc};
use ibex_engine::usage::{rolled_span, LatencyHistogram};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgRow;
use sqlx::PgConnection;
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

/// The nil UUID: the rollup's agent key of the whole org's rows and of calls without an agent.
const NIL: Uuid = Uuid::nil();

/// Raw events not covered by the rollup: $1 org, $2 from, $3 to, $4 agent (NULL: every call of
/// the org), and the rolled span [$5, $6) cut out of the range (two index ranges, not a filter).
/// Every query also has $7, the nil UUID (see [`Read::rows`]).
const RAW: &str = "FROM ibex_core.usage_events
     WHERE org_id = $1 AND ($4::uuid IS NULL OR agent_id = $4)
       AND ((created_at >= $2 AND created_at < $5) OR (created_at >= $6 AND created_at < $3))";

/// One hour (one minute at minute resolution) of usage from the rollup or the raw events, with
/// the latency histogram as sparse bucket counts ($8: the raw events' resolution).
const CELLS: &str = "SELECT hour AS at, requests, errors, prompt_tokens, completion_tokens,
            latency_buckets, latency_counts
     FROM ibex_core.usage_hourly
     WHERE org_id = $1 AND grain = CASE WHEN $4::uuid IS NULL THEN 'org' ELSE 'agent' END
       AND agent_id = coalesce($4, $7) AND hour >= $5 AND hour < $6
     UNION ALL
     SELECT at, sum(requests)::bigint, sum(errors)::bigint, sum(prompt_tokens)::bigint,
            sum(completion_tokens)::bigint, array_agg(bucket ORDER BY bucket), array_agg(requests ORDER BY bucket)
     FROM (SELECT date_trunc($8, created_at, 'UTC') AS at, ibex_core.usage_latency_bucket(latency_ms) AS bucket,
                  count(*) AS requests, count(*) FILTER (WHERE status_code >= 400) AS errors,
                  sum(prompt_tokens) AS prompt_tokens, sum(completion_tokens) AS completion_tokens
           {RAW} GROUP BY 1, 2) raw
     GROUP BY at";

const MODELS: &str = "SELECT model, sum(requests)::bigint AS requests, sum(total_tokens)::bigint AS total_tokens
     FROM (SELECT model, requests, prompt_tokens + completion_tokens AS total_tokens
           FROM ibex_core.usage_hourly
           WHERE org_id = $1 AND grain = CASE WHEN $4::uuid IS NULL THEN 'org_model' ELSE 'agent_model' END
             AND agent_id = coalesce($4, $7) AND hour >= $5 AND hour < $6
           UNION ALL
           SELECT model, count(*), sum(total_tokens) {RAW} GROUP BY model) m
     GROUP BY model ORDER BY requests DESC, model LIMIT 100";

/// Whole UTC days inside the rolled span come from the 'agent_day' rows (30 rows per agent over
/// 30 days instead of 720), the hours before the first and after the last of them from 'agent'
/// rows: `days` is [first midnight at or after $5, last midnight at or before $6), collapsed
/// to one point inside the span when no whole day fits, so the three ranges tile [$5, $6).
const AGENTS: &str = "WITH days AS MATERIALIZED (
         SELECT lo, greatest(date_trunc('day', $6, 'UTC'), lo) AS hi
         FROM (SELECT least(date_trunc('day', $5 - interval '1 microsecond', 'UTC') + interval '1 day', $6) AS lo) l)
     SELECT nullif(agent_id, $7) AS agent_id, sum(requests)::bigint AS requests,
            sum(total_tokens)::bigint AS total_tokens
     FROM (SELECT agent_id, requests, prompt_tokens + completion_tokens AS total_tokens
           FROM ibex_core.usage_hourly
           WHERE org_id = $1 AND grain = 'agent_day' AND ($4::uuid IS NULL OR agent_id = $4)
             AND hour >= (SELECT lo FROM days) AND hour < (SELECT hi FROM days)
           UNION ALL
           SELECT agent_id, requests, prompt_tokens + completion_tokens
           FROM ibex_core.usage_hourly
           WHERE org_id = $1 AND grain = 'agent' AND ($4::uuid IS NULL OR agent_id = $4)
             AND ((hour >= $5 AND hour < (SELECT lo FROM days)) OR (hour >= (SELECT hi FROM days) AND hour < $6))
           UNION ALL
           SELECT coalesce(agent_id, $7), count(*), sum(total_tokens) {RAW} GROUP BY 1) a
     GROUP BY 1 ORDER BY requests DESC, 1 LIMIT 1000";

/// The parameters every read of one answer shares.
struct Read {
    org: Uuid,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    agent: Option<Uuid>,
    /// The rolled span, `(from, from)` when empty.
    span: (DateTime<Utc>, DateTime<Utc>),
}

impl Read {
    /// Runs `sql` (with [`RAW`] in place of `{RAW}`) bound to $1..$7, and to $8 = `resolution`.
    async fn rows<O>(&self, tx: &mut PgConnection, sql: &str, resolution: Option<&str>) -> Result<Vec<O>, sqlx::Error>
    where
        O: for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin,
    {
        let sql = sql.replace("{RAW}", RAW);
        let mut query = sqlx::query_as::<_, O>(&sql)
            .bind(self.org)
            .bind(self.from)
            .bind(self.to)
            .bind(self.agent)
            .bind(self.span.0)
            .bind(self.span.1)
            .bind(NIL);
        if let Some(resolution) = resolution {
            query = query.bind(resolution);
        }
        query.fetch_all(&mut *tx).await
    }
}

#[derive(Debug, sqlx::FromRow)]
struct Cell {
    at: DateTime<Utc>,
    requests: i64,
    errors: i64,
    prompt_tokens: i64,
    completion_tokens: i64,
    latency_buckets: Vec<i32>,
    latency_counts: Vec<i64>,
}

/// What one point (or the totals) adds up.
struct Sum {
    requests: i64,
    errors: i64,
    prompt_tokens: i64,
    completion_tokens: i64,
    latency: LatencyHistogram,
}

impl Sum {
    fn new(bounds: &[i32]) -> Self {
        Self {
            requests: 0,
            errors: 0,
            prompt_tokens: 0,
            completion_tokens: 0,
            latency: LatencyHistogram::new(bounds),
        }
    }

    fn add(&mut self, cell: &Cell) {
        self.requests += cell.requests;
        self.errors += cell.errors;
        self.prompt_tokens += cell.prompt_tokens;
        self.completion_tokens += cell.completion_tokens;
        self.latency.add_sparse(&cell.latency_buckets, &cell.latency_counts);
    }
}

/// Folds hourly (or minute) cells into the answer's buckets, aligned to UTC boundaries; the first
/// bucket starts at `from` when `from` is inside it. Percentiles are estimated from the buckets.
fn fold(
    cells: &[Cell],
    from: DateTime<Utc>,
    bucket: Bucket,
    bounds: &[i32],
) -> (Totals, Vec<Point>, Vec<LatencyBucket>) {
    let mut total = Sum::new(bounds);
    let mut points: BTreeMap<DateTime<Utc>, Sum> = BTreeMap::new();
    for cell in cells {
        total.add(cell);
        let start = match bucket {
            Bucket::Day => cell.at.duration_trunc(Duration::days(1)).unwrap_or(cell.at),
            Bucket::Minute | Bucket::Hour => cell.at,
        };
        points
            .entry(start.max(from))
            .or_insert_with(|| Sum::new(bounds))
            .add(cell);
    }
    let series = points
        .into_iter()
        .map(|(start, sum)| Point {
            start,
            requests: sum.requests,
            errors: sum.errors,
            prompt_tokens: sum.prompt_tokens,
            completion_tokens: sum.completion_tokens,
            total_tokens: sum.prompt_tokens + sum.completion_tokens,
            latency_ms_p50: sum.latency.quantile(bounds, 0.5),
            latency_ms_p95: sum.latency.quantile(bounds, 0.95),
        })
        .collect();
    let histogram = total
        .latency
        .regroup(bounds, LATENCY_BOUNDS_MS)
        .into_iter()
        .enumerate()
        .map(|(i, count)| LatencyBucket {
            le_ms: LATENCY_BOUNDS_MS.get(i).copied(),
            count,
        })
        .collect();
    let totals = Totals {
        requests: total.requests,
        errors: total.errors,
        prompt_tokens: total.prompt_tokens,
        completion_tokens: total.completion_tokens,
        total_tokens: total.prompt_tokens + total.completion_tokens,
        latency_ms_p50: total.latency.quantile(bounds, 0.5),
        latency_ms_p95: total.latency.quantile(bounds, 0.95),
        latency_ms_p99: total.latency.quantile(bounds, 0.99),
    };
    (totals, series, histogram)
}

#[utoipa::path(
    get,
    path = "/v1/analytics/usage",
    operation_id = "analytics_usage",
    tag = "analytics",
    description = "What the org's (or one agent's) proxied model calls cost, in time buckets aligned to UTC minutes, hours or days (the first bucket starts at `from`). Whole hours come from the hourly rollup, the rest from the calls themselves; latency percentiles are estimated from latency buckets. Scope: `analytics:read`.",
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
    // The watermark first: hours before it are in the rollup for good, events from it on are
    // still raw, so the reads below neither overlap nor miss whatever the worker does meanwhile.
    let (rolled_until, bounds): (Option<DateTime<Utc>>, Vec<i32>) = sqlx::query_as(
        "SELECT (SELECT rolled_until FROM ibex_core.usage_rollup_marks WHERE org_id = $1),
                    ibex_core.usage_latency_bounds()",
    )
    .bind(caller.org_id)
    .fetch_one(&mut *tx)
    .await
    .map_err(failed)?;
    let minutes = bucket == Bucket::Minute;
    // A fraction of a second past an hour keeps that hour out of the span: it is not all inside.
    let from_second = from.timestamp() + i64::from(from.timestamp_subsec_nanos() > 0);
    let at = |secs| DateTime::from_timestamp(secs, 0).unwrap_or(from);
    let span = rolled_span(
        from_second,
        to.timestamp(),
        rolled_until.map(|t| t.timestamp()),
        minutes,
    )
    .map_or((from, from), |(start, end)| (at(start), at(end)));
    let read = Read {
        org: caller.org_id,
        from,
        to,
        agent,
        span,
    };
    let resolution = if minutes { "minute" } else { "hour" };
    let cells: Vec<Cell> = read.rows(&mut tx, CELLS, Some(resolution)).await.map_err(failed)?;
    let models: Vec<ByModel> = read.rows(&mut tx, MODELS, None).await.map_err(failed)?;
    let agents: Vec<ByAgent> = read.rows(&mut tx, AGENTS, None).await.map_err(failed)?;
    let (totals, series, latency_histogram) = fold(&cells, from, bucket, &bounds);
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
