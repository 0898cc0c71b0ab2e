-- The hourly usage rollup (tables: migration 0020): the latency buckets and the run that rolls
-- closed hours up past each org's watermark (usage_rollup_marks).
--
-- A reader of /v1/analytics/usage takes usage_hourly for whole hours before its org's
-- watermark and usage_events from the watermark on (and for a partial first hour). The run
-- never rolls an hour up twice and moves the watermark in the transaction that writes the
-- hour's rows, so the two halves never overlap or leave a gap, however late the worker runs.
SET LOCAL ROLE ibex_owner;

-- Upper bounds (ms, inclusive) of the latency buckets the rollup counts calls in; a last, open
-- bucket holds the rest. Bucket k (0-based) holds latencies in (bounds[k-1], bounds[k]]: from
-- 3 ms on, neighbours are at most 1.5x apart, so a percentile estimated inside a bucket is off
-- by less than a third of its value. The API's coarser display histogram (analytics.rs,
-- LATENCY_BOUNDS_MS) uses a subset of these, so its counts are exact.
CREATE OR REPLACE FUNCTION ibex_core.usage_latency_bounds() RETURNS integer[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT '{1,2,3,4,5,6,8,10,12,15,20,25,30,40,50,60,80,100,120,150,200,250,300,400,500,600,800,
             1000,1200,1500,2000,2500,3000,4000,5000,6000,8000,10000,12000,15000,20000,25000,30000,
             40000,50000,60000,80000,100000,120000,150000,200000,300000}'::integer[]
$$;

-- The bucket of one latency: width_bucket counts the bounds at or below its argument, and for
-- whole milliseconds "bound <= ms - 1" is "bound < ms". Inlined, with the bounds folded to a
-- constant, when a query is planned.
CREATE OR REPLACE FUNCTION ibex_core.usage_latency_bucket(p_latency_ms integer) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT width_bucket(p_latency_ms - 1, ibex_core.usage_latency_bounds())
$$;

-- The rollup's functions belong to ibex_system (BYPASSRLS: it reads and writes every org).
RESET ROLE;

-- Rolls the events of one org in [p_from, p_to) (whole hours) up, in grains 'org', 'org_model',
-- 'agent' and 'agent_model', then adds the new 'agent' hours to their days' 'agent_day' rows.
-- Only roll_up_usage calls it, holding the org's mark row, so no hour is added to a day twice.
CREATE OR REPLACE FUNCTION ibex_core.roll_up_org_usage(p_org uuid, p_from timestamptz, p_to timestamptz)
RETURNS void
LANGUAGE sql
SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO ibex_core.usage_hourly (org_id, grain, agent_id, model, hour, requests, errors,
                                        prompt_tokens, completion_tokens, latency_buckets, latency_counts)
    WITH cells AS (
        SELECT coalesce(e.agent_id, '00000000-0000-0000-0000-000000000000'::uuid) AS agent_id, e.model,
               date_trunc('hour', e.created_at, 'UTC') AS hour,
               ibex_core.usage_latency_bucket(e.latency_ms) AS bucket,
               count(*) AS requests, count(*) FILTER (WHERE e.status_code >= 400) AS errors,
               sum(e.prompt_tokens) AS prompt_tokens, sum(e.completion_tokens) AS completion_tokens
        FROM ibex_core.usage_events e
        WHERE e.org_id = p_org AND e.created_at >= p_from AND e.created_at < p_to
        GROUP BY 1, 2, 3, 4),
    grains AS (
        -- grouping(): bit 1 for agent_id, bit 0 for model, set when the column is left out.
        SELECT c.hour, c.bucket,
               CASE grouping(c.agent_id, c.model)
                   WHEN 3 THEN 'org' WHEN 2 THEN 'org_model' WHEN 1 THEN 'agent' ELSE 'agent_model'
               END AS grain,
               CASE WHEN grouping(c.agent_id) = 1 THEN '00000000-0000-0000-0000-000000000000'::uuid
                    ELSE c.agent_id END AS agent_id,
               CASE WHEN grouping(c.model) = 1 THEN '' ELSE c.model END AS model,
               sum(c.requests)::bigint AS requests, sum(c.errors)::bigint AS errors,
               sum(c.prompt_tokens) AS prompt_tokens, sum(c.completion_tokens) AS completion_tokens
        FROM cells c
        GROUP BY GROUPING SETS ((c.hour, c.bucket),
                                (c.hour, c.bucket, c.model),
                                (c.hour, c.bucket, c.agent_id),
                                (c.hour, c.bucket, c.agent_id, c.model)))
    SELECT p_org, g.grain, g.agent_id, g.model, g.hour,
           sum(g.requests)::bigint, sum(g.errors)::bigint,
           sum(g.prompt_tokens)::bigint, sum(g.completion_tokens)::bigint,
           array_agg(g.bucket ORDER BY g.bucket), array_agg(g.requests ORDER BY g.bucket)
    FROM grains g
    GROUP BY g.grain, g.agent_id, g.model, g.hour;

    -- The day rows (a range may span days, and a day many ranges): sums add, histograms merge.
    INSERT INTO ibex_core.usage_hourly AS d (org_id, grain, agent_id, model, hour, requests, errors,
                                             prompt_tokens, completion_tokens, latency_buckets, latency_counts)
    WITH hours AS (
        SELECT h.agent_id, date_trunc('day', h.hour, 'UTC') AS day, h.requests, h.errors, h.prompt_tokens,
               h.completion_tokens, h.latency_buckets, h.latency_counts
        FROM ibex_core.usage_hourly h
        WHERE h.org_id = p_org AND h.grain = 'agent' AND h.hour >= p_from AND h.hour < p_to),
    sums AS (
        SELECT agent_id, day, sum(requests)::bigint AS requests, sum(errors)::bigint AS errors,
               sum(prompt_tokens)::bigint AS prompt_tokens, sum(completion_tokens)::bigint AS completion_tokens
        FROM hours GROUP BY 1, 2),
    histograms AS (
        SELECT agent_id, day, array_agg(bucket ORDER BY bucket) AS latency_buckets,
               array_agg(n ORDER BY bucket) AS latency_counts
        FROM (SELECT agent_id, day, l.bucket, sum(l.n)::bigint AS n
              FROM hours, unnest(latency_buckets, latency_counts) AS l(bucket, n)
              GROUP BY 1, 2, 3) b
        GROUP BY 1, 2)
    SELECT p_org, 'agent_day', s.agent_id, '', s.day, s.requests, s.errors, s.prompt_tokens,
           s.completion_tokens, h.latency_buckets, h.latency_counts
    FROM sums s JOIN histograms h USING (agent_id, day)
    ON CONFLICT (org_id, grain, agent_id, model, hour) DO UPDATE SET
        requests = d.requests + excluded.requests,
        errors = d.errors + excluded.errors,
        prompt_tokens = d.prompt_tokens + excluded.prompt_tokens,
        completion_tokens = d.completion_tokens + excluded.completion_tokens,
        (latency_buckets, latency_counts) = (
            SELECT array_agg(m.bucket ORDER BY m.bucket), array_agg(m.n ORDER BY m.bucket)
            FROM (SELECT u.bucket, sum(u.n)::bigint AS n
                  FROM unnest(d.latency_buckets || excluded.latency_buckets,
                              d.latency_counts || excluded.latency_counts) AS u(bucket, n)
                  GROUP BY u.bucket) m);
$$;

-- Rolls closed hours up for the orgs that are behind, oldest watermark first, at most
-- p_max_hours per org and p_max_orgs orgs per call (p_org: that org only). An hour is closed
-- p_grace_seconds after it ends: the proxy stamps a call when its short transaction starts, so
-- one still committing is not missed. Mark rows are locked FOR UPDATE SKIP LOCKED, so several
-- sidecars share the work and none waits on another. Answers how many orgs moved their
-- watermark: 0 when every org has caught up.
CREATE OR REPLACE FUNCTION ibex_core.roll_up_usage(p_org uuid, p_max_orgs integer, p_max_hours integer,
                                                   p_grace_seconds integer)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_limit  timestamptz := date_trunc('hour',
        now() - make_interval(secs => least(greatest(coalesce(p_grace_seconds, 300), 0), 86400)), 'UTC');
    v_hours  interval := make_interval(hours => least(greatest(coalesce(p_max_hours, 24), 1), 24 * 31));
    v_moved  integer := 0;
    v_org    uuid;
    v_from   timestamptz;
    v_to     timestamptz;
BEGIN
    -- Orgs without a mark get one at their oldest event's hour (or at the limit: nothing yet).
    INSERT INTO ibex_core.usage_rollup_marks (org_id, rolled_until)
    SELECT o.id, coalesce(
               (SELECT least(date_trunc('hour', min(e.created_at), 'UTC'), v_limit)
                FROM ibex_core.usage_events e WHERE e.org_id = o.id),
               v_limit)
    FROM ibex_core.orgs o
    WHERE (p_org IS NULL OR o.id = p_org)
      AND NOT EXISTS (SELECT 1 FROM ibex_core.usage_rollup_marks m WHERE m.org_id = o.id)
    ON CONFLICT (org_id) DO NOTHING;

    FOR v_org, v_from IN
        SELECT m.org_id, m.rolled_until FROM ibex_core.usage_rollup_marks m
        WHERE m.rolled_until < v_limit AND (p_org IS NULL OR m.org_id = p_org)
        ORDER BY m.rolled_until
        LIMIT least(greatest(coalesce(p_max_orgs, 100), 1), 1000)
        FOR UPDATE SKIP LOCKED
    LOOP
        v_to := least(v_limit, v_from + v_hours);
        PERFORM ibex_core.roll_up_org_usage(v_org, v_from, v_to);
        UPDATE ibex_core.usage_rollup_marks SET rolled_until = v_to, rolled_at = now() WHERE org_id = v_org;
        v_moved := v_moved + 1;
    END LOOP;
    RETURN v_moved;
END
$$;

ALTER FUNCTION ibex_core.roll_up_org_usage(uuid, timestamptz, timestamptz) OWNER TO ibex_system;
ALTER FUNCTION ibex_core.roll_up_usage(uuid, integer, integer, integer) OWNER TO ibex_system;
REVOKE ALL ON FUNCTION ibex_core.roll_up_org_usage(uuid, timestamptz, timestamptz),
    ibex_core.roll_up_usage(uuid, integer, integer, integer) FROM PUBLIC, ibex_app;
-- The sidecar's usage worker alone runs it: it reads and writes every org's usage.
GRANT EXECUTE ON FUNCTION ibex_core.roll_up_usage(uuid, integer, integer, integer) TO ibex_sidecar;
