-- IBEX 0022: a daily per-agent grain in the usage rollup (issue 13).
--   * the breakdown by agent over 30 days summed 72,000 'agent' hour rows at 100 agents
--     (~30 ms, a third of the dashboard's 100 ms budget); 'agent_day' rows hold the same sums
--     per UTC day, so a reader takes whole days from them and only the edges from hour rows;
--   * a day row is keyed by its day's first hour (hour = midnight UTC, so the hour check holds)
--     and grows as the rollup rolls that day's hours up, each hour once: the rollup now
--     updates rows as well as inserting them.
SET LOCAL ROLE ibex_owner;

ALTER TABLE ibex_core.usage_hourly
    DROP CONSTRAINT usage_hourly_grain_check,
    ADD CONSTRAINT usage_hourly_grain_check
        CHECK (grain IN ('org', 'org_model', 'agent', 'agent_model', 'agent_day'));
GRANT UPDATE ON ibex_core.usage_hourly TO ibex_system;

RESET ROLE;

-- The days rolled so far, from their hour rows (as the migrating superuser: every org). A day
-- the watermark is inside gets the rest of its hours from the rollup as they close.
INSERT INTO ibex_core.usage_hourly (org_id, grain, agent_id, model, hour, requests, errors,
                                    prompt_tokens, completion_tokens, latency_buckets, latency_counts)
WITH hours AS (
    SELECT org_id, agent_id, date_trunc('day', hour, 'UTC') AS day, requests, errors, prompt_tokens,
           completion_tokens, latency_buckets, latency_counts
    FROM ibex_core.usage_hourly WHERE grain = 'agent'),
sums AS (
    SELECT org_id, agent_id, day, sum(requests)::bigint AS requests, sum(errors)::bigint AS errors,
           sum(prompt_tokens)::bigint AS prompt_tokens, sum(completion_tokens)::bigint AS completion_tokens
    FROM hours GROUP BY 1, 2, 3),
buckets AS (
    SELECT org_id, agent_id, day, l.bucket, sum(l.n)::bigint AS n
    FROM hours, unnest(latency_buckets, latency_counts) AS l(bucket, n)
    GROUP BY 1, 2, 3, 4),
histograms AS (
    SELECT org_id, agent_id, day, array_agg(bucket ORDER BY bucket) AS latency_buckets,
           array_agg(n ORDER BY bucket) AS latency_counts
    FROM buckets GROUP BY 1, 2, 3)
SELECT s.org_id, 'agent_day', s.agent_id, '', s.day, s.requests, s.errors, s.prompt_tokens,
       s.completion_tokens, h.latency_buckets, h.latency_counts
FROM sums s JOIN histograms h USING (org_id, agent_id, day);
