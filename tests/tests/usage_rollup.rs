//! The hourly usage rollup (`sql/api/usage_rollup.sql`) against the live test cluster: every
//! grain adds up to the raw events, hours are rolled once, open hours wait, day rows add up
//! however the hours are rolled, latency buckets match their bounds, and row-level security
//! confines the rollup like the events.

use ibex_e2e::{admin, app_for, bound_login, org_with_agent};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use uuid::Uuid;

/// 600 calls over the 12 closed hours before the last one: two agents and calls without one,
/// three models, latencies from 0 to 40 s, some errors.
async fn seed(admin: &PgPool, org: Uuid, agent: Uuid, other_agent: Uuid) {
    sqlx::query(
        "INSERT INTO ibex_core.usage_events (org_id, agent_id, model, prompt_tokens, completion_tokens,
                                             latency_ms, status_code, created_at)
         SELECT $1, (ARRAY[$2, $3, NULL])[1 + n % 3], (ARRAY['gpt-4o', 'gpt-4o-mini', 'claude'])[1 + n % 7 % 3],
                n % 500, n % 90, (n * 67) % 40000, CASE WHEN n % 13 = 0 THEN 502 ELSE 200 END,
                date_trunc('hour', now(), 'UTC') - interval '14 hours' + make_interval(secs => n * 72)
         FROM generate_series(0, 599) n",
    )
    .bind(org)
    .bind(agent)
    .bind(other_agent)
    .execute(admin)
    .await
    .expect("usage events");
}

/// grain, agent, model, hour (Unix seconds: the e2e crate has no date library), requests, errors,
/// prompt and completion tokens.
type Row = (String, Uuid, String, f64, i64, i64, i64, i64);

/// Each grain's rows, from the rollup and recomputed from the raw events, the same way keyed.
const ROLLED: &str = "SELECT grain, agent_id, model, extract(epoch FROM hour)::float8, requests, errors,
        prompt_tokens, completion_tokens
    FROM ibex_core.usage_hourly WHERE org_id = $1 ORDER BY 1, 2, 3, 4";
const RAW: &str = "WITH e AS (
        SELECT coalesce(agent_id, '00000000-0000-0000-0000-000000000000') AS agent_id, model,
               extract(epoch FROM date_trunc('hour', created_at, 'UTC'))::float8 AS hour,
               extract(epoch FROM date_trunc('day', created_at, 'UTC'))::float8 AS day, status_code,
               prompt_tokens, completion_tokens
        FROM ibex_core.usage_events
        WHERE org_id = $1 AND created_at < (SELECT rolled_until FROM ibex_core.usage_rollup_marks WHERE org_id = $1))
    SELECT grain, agent_id, model, hour, count(*), count(*) FILTER (WHERE status_code >= 400),
           sum(prompt_tokens)::bigint, sum(completion_tokens)::bigint
    FROM (SELECT 'org' AS grain, '00000000-0000-0000-0000-000000000000'::uuid AS agent_id, '' AS model, hour, status_code, prompt_tokens, completion_tokens FROM e
          UNION ALL SELECT 'org_model', '00000000-0000-0000-0000-000000000000', model, hour, status_code, prompt_tokens, completion_tokens FROM e
          UNION ALL SELECT 'agent', agent_id, '', hour, status_code, prompt_tokens, completion_tokens FROM e
          UNION ALL SELECT 'agent_model', agent_id, model, hour, status_code, prompt_tokens, completion_tokens FROM e
          UNION ALL SELECT 'agent_day', agent_id, '', day, status_code, prompt_tokens, completion_tokens FROM e) g
    GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4";

async fn roll_up(pool: &PgPool, org: Uuid) -> i32 {
    sqlx::query_scalar("SELECT ibex_core.roll_up_usage($1, 100, 24, 300)")
        .bind(org)
        .fetch_one(pool)
        .await
        .expect("roll_up_usage")
}

#[tokio::test]
async fn every_grain_adds_up_to_the_raw_events_and_hours_roll_up_once() {
    let admin = admin().await;
    let (org, agent) = org_with_agent(&admin, "usage-rollup").await;
    let other_agent: Uuid =
        sqlx::query_scalar("INSERT INTO ibex_core.agents (org_id, name) VALUES ($1, 'second') RETURNING id")
            .bind(org)
            .fetch_one(&admin)
            .await
            .unwrap();
    seed(&admin, org, agent, other_agent).await;
    // As the sidecar runs it (its login; the function is the only way in).
    let sidecar = app_for(org).await;
    // 14 closed hours at most 24 per step: one step moves the org, the next finds nothing.
    assert_eq!(roll_up(&sidecar, org).await, 1);
    assert_eq!(roll_up(&sidecar, org).await, 0, "rolled hours are not rolled again");
    let (mark, closed): (f64, f64) = sqlx::query_as(
        "SELECT extract(epoch FROM rolled_until)::float8,
                extract(epoch FROM date_trunc('hour', now() - interval '300 seconds', 'UTC'))::float8
         FROM ibex_core.usage_rollup_marks WHERE org_id = $1",
    )
    .bind(org)
    .fetch_one(&admin)
    .await
    .unwrap();
    assert_eq!(mark, closed, "the watermark is the last closed hour");

    let rolled: Vec<Row> = sqlx::query_as(ROLLED).bind(org).fetch_all(&admin).await.unwrap();
    let raw: Vec<Row> = sqlx::query_as(RAW).bind(org).fetch_all(&admin).await.unwrap();
    assert!(rolled.len() > 40, "{} rows", rolled.len());
    assert_eq!(rolled, raw, "every grain adds up to the raw events");
    let org_requests: i64 = rolled.iter().filter(|r| r.0 == "org").map(|r| r.4).sum();
    assert_eq!(org_requests, 600);

    // Each row's histogram counts its calls, in the buckets the raw latencies fall in.
    let (histograms_add_up, buckets_match): (bool, bool) = sqlx::query_as(
        "SELECT bool_and((SELECT sum(c) FROM unnest(h.latency_counts) c) = h.requests),
                bool_and(h.latency_buckets = (SELECT array_agg(DISTINCT ibex_core.usage_latency_bucket(e.latency_ms))
                                              FROM ibex_core.usage_events e
                                              WHERE e.org_id = h.org_id AND date_trunc('hour', e.created_at, 'UTC') = h.hour))
         FROM ibex_core.usage_hourly h WHERE h.org_id = $1 AND h.grain = 'org'",
    )
    .bind(org)
    .fetch_one(&admin)
    .await
    .unwrap();
    assert!(histograms_add_up && buckets_match);

    // A call of the open hour waits for the hour to close.
    sqlx::query(
        "INSERT INTO ibex_core.usage_events (org_id, agent_id, model, latency_ms, status_code) VALUES ($1, $2, 'gpt-4o', 5, 200)",
    )
    .bind(org)
    .bind(agent)
    .execute(&admin)
    .await
    .unwrap();
    assert_eq!(roll_up(&sidecar, org).await, 0);
    let after: Vec<Row> = sqlx::query_as(ROLLED).bind(org).fetch_all(&admin).await.unwrap();
    assert_eq!(after, rolled);

    // Row-level security: the org's own login reads its rollup, another org's login none of it,
    // and an application login can neither write the rollup nor run it.
    let (stranger_org, _) = org_with_agent(&admin, "usage-rollup-stranger").await;
    for (reader, expected) in [(org, rolled.len() as i64), (stranger_org, 0)] {
        let (_, url) = bound_login(&admin, reader, "rollup").await;
        let login = PgPoolOptions::new().max_connections(1).connect(&url).await.unwrap();
        let seen: i64 = sqlx::query_scalar("SELECT count(*) FROM ibex_core.usage_hourly WHERE org_id = $1")
            .bind(org)
            .fetch_one(&login)
            .await
            .unwrap();
        assert_eq!(seen, expected);
        for statement in [
            "SELECT ibex_core.roll_up_usage(NULL, 1, 1, 0)",
            "UPDATE ibex_core.usage_rollup_marks SET rolled_until = '2000-01-01'",
        ] {
            let refused = sqlx::query(statement).execute(&login).await.unwrap_err();
            let code = refused.as_database_error().and_then(|e| e.code());
            assert_eq!(code.as_deref(), Some("42501"), "{statement}");
        }
    }
}

/// agent, day (Unix seconds), requests, errors, prompt and completion tokens, latency buckets and
/// their counts.
type DayRow = (Uuid, f64, i64, i64, i64, i64, Vec<i32>, Vec<i64>);

const ROLLED_DAYS: &str = "SELECT agent_id, extract(epoch FROM hour)::float8, requests, errors, prompt_tokens,
        completion_tokens, latency_buckets, latency_counts
    FROM ibex_core.usage_hourly WHERE org_id = $1 AND grain = 'agent_day' ORDER BY 1, 2";
const RAW_DAYS: &str = "WITH e AS (
        SELECT coalesce(agent_id, '00000000-0000-0000-0000-000000000000') AS agent_id,
               extract(epoch FROM date_trunc('day', created_at, 'UTC'))::float8 AS day,
               ibex_core.usage_latency_bucket(latency_ms) AS bucket, status_code, prompt_tokens, completion_tokens
        FROM ibex_core.usage_events
        WHERE org_id = $1 AND created_at < (SELECT rolled_until FROM ibex_core.usage_rollup_marks WHERE org_id = $1)),
    buckets AS (SELECT agent_id, day, bucket, count(*) AS n FROM e GROUP BY 1, 2, 3)
    SELECT agent_id, day, count(*), count(*) FILTER (WHERE status_code >= 400), sum(prompt_tokens)::bigint,
           sum(completion_tokens)::bigint,
           (SELECT array_agg(b.bucket ORDER BY b.bucket) FROM buckets b WHERE b.agent_id = e.agent_id AND b.day = e.day),
           (SELECT array_agg(b.n ORDER BY b.bucket) FROM buckets b WHERE b.agent_id = e.agent_id AND b.day = e.day)
    FROM e GROUP BY 1, 2 ORDER BY 1, 2";

#[tokio::test]
async fn day_rows_add_up_however_the_hours_are_rolled() {
    let admin = admin().await;
    let (org, agent) = org_with_agent(&admin, "usage-rollup-days").await;
    // 900 calls over the 3 days before the last 2 hours: every day boundary falls inside them.
    sqlx::query(
        "INSERT INTO ibex_core.usage_events (org_id, agent_id, model, prompt_tokens, completion_tokens,
                                             latency_ms, status_code, created_at)
         SELECT $1, CASE WHEN n % 4 = 0 THEN NULL ELSE $2 END, 'gpt-4o', n % 500, n % 90, (n * 67) % 40000,
                CASE WHEN n % 13 = 0 THEN 502 ELSE 200 END,
                date_trunc('hour', now(), 'UTC') - interval '74 hours' + make_interval(secs => n * 288)
         FROM generate_series(0, 899) n",
    )
    .bind(org)
    .bind(agent)
    .execute(&admin)
    .await
    .unwrap();
    // Five hours a step: most days are added to by several steps, and most steps cross midnight.
    let sidecar = app_for(org).await;
    let mut steps = 0;
    while sqlx::query_scalar::<_, i32>("SELECT ibex_core.roll_up_usage($1, 1, 5, 300)")
        .bind(org)
        .fetch_one(&sidecar)
        .await
        .unwrap()
        > 0
    {
        steps += 1;
        assert!(steps < 100, "the rollup catches up");
    }
    assert!(steps >= 10, "{steps} steps");
    let rolled: Vec<DayRow> = sqlx::query_as(ROLLED_DAYS).bind(org).fetch_all(&admin).await.unwrap();
    let raw: Vec<DayRow> = sqlx::query_as(RAW_DAYS).bind(org).fetch_all(&admin).await.unwrap();
    assert!(
        rolled.len() >= 6,
        "two agents (one the nil agent) over 3 or 4 days: {}",
        rolled.len()
    );
    assert_eq!(rolled, raw, "day rows and their histograms add up to the raw events");
}

#[tokio::test]
async fn latency_buckets_hold_what_their_bounds_say() {
    let admin = admin().await;
    // Bucket k holds (bounds[k-1], bounds[k]]: each bound is the last latency of its bucket.
    let (ok, bounds): (bool, i32) = sqlx::query_as(
        "SELECT bool_and(ibex_core.usage_latency_bucket(b) = k - 1 AND ibex_core.usage_latency_bucket(b + 1) = k
                         AND (b <= 3 OR b::float8 / lag_b <= 1.5)),
                count(*)::int
         FROM (SELECT b, k, lag(b) OVER (ORDER BY k) AS lag_b
               FROM unnest(ibex_core.usage_latency_bounds()) WITH ORDINALITY u(b, k)) x",
    )
    .fetch_one(&admin)
    .await
    .unwrap();
    assert!(
        ok,
        "buckets agree with their bounds, neighbours from 3 ms on at most 1.5x apart"
    );
    assert_eq!(bounds, 52);
    let zero: i32 = sqlx::query_scalar("SELECT ibex_core.usage_latency_bucket(0)")
        .fetch_one(&admin)
        .await
        .unwrap();
    assert_eq!(zero, 0);
}
