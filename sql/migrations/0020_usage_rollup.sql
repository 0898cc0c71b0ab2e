-- IBEX 0020: hourly usage rollup (sql/api/usage_rollup.sql fills it, /v1/analytics/usage reads it).
--   * usage analytics over 30 days read ~700 rows per grain instead of every usage event;
--   * a worker rolls closed hours up past each org's watermark (usage_rollup_marks), never
--     touching an hour twice; readers take rolled hours below the watermark and raw events from
--     it on, so an answer is exact whenever the worker last ran;
--   * record_usage stays a plain INSERT: the proxied call's hot path pays no upsert or lock.
SET LOCAL ROLE ibex_owner;

-- One row per org, hour and grain. The grain says which columns group it:
--   'org'          every call of the org in that hour (agent_id nil, model '');
--   'org_model'    per model;
--   'agent'        per agent (nil: calls without an agent; model '');
--   'agent_model'  per agent and model.
-- Keys are NOT NULL (the primary key starts with org_id like every tenant table's): the nil
-- UUID and '' never occur as an agent or a model of an event (model is 1..200 characters).
CREATE TABLE ibex_core.usage_hourly (
    org_id             uuid NOT NULL REFERENCES ibex_core.orgs (id) ON DELETE CASCADE,
    grain              text NOT NULL CHECK (grain IN ('org', 'org_model', 'agent', 'agent_model')),
    agent_id           uuid NOT NULL,
    model              text NOT NULL CHECK (length(model) <= 200),
    hour               timestamptz NOT NULL CHECK (hour = date_trunc('hour', hour, 'UTC')),
    requests           bigint NOT NULL CHECK (requests >= 0),
    errors             bigint NOT NULL CHECK (errors >= 0),
    prompt_tokens      bigint NOT NULL CHECK (prompt_tokens >= 0),
    completion_tokens  bigint NOT NULL CHECK (completion_tokens >= 0),
    -- Latency histogram, sparse: counts[i] calls fell in bucket buckets[i]
    -- (ibex_core.usage_latency_bucket in sql/api/usage_rollup.sql).
    latency_buckets    integer[] NOT NULL,
    latency_counts     bigint[] NOT NULL CHECK (cardinality(latency_counts) = cardinality(latency_buckets)),
    PRIMARY KEY (org_id, grain, agent_id, model, hour)
);
-- Breakdowns (by model, by agent) read one grain over an hour range, whatever the agent or model.
CREATE INDEX usage_hourly_by_hour ON ibex_core.usage_hourly (org_id, grain, hour);

ALTER TABLE ibex_core.usage_hourly ENABLE ROW LEVEL SECURITY;
ALTER TABLE ibex_core.usage_hourly FORCE ROW LEVEL SECURITY;
CREATE POLICY org_isolation ON ibex_core.usage_hourly
    USING (org_id = (SELECT ibex_core.current_org()))
    WITH CHECK (org_id = (SELECT ibex_core.current_org()));
-- Read like usage_events; written only by the rollup function (ibex_system).
GRANT SELECT ON ibex_core.usage_hourly TO ibex_app;
GRANT SELECT, INSERT ON ibex_core.usage_hourly TO ibex_system;

-- The watermark of each org: every event of the org before rolled_until is in usage_hourly,
-- none after. No row: nothing rolled up yet (the first run starts at the org's oldest event).
-- Per org, so a run holds one org's row at a time and an org with a backlog delays no other.
CREATE TABLE ibex_core.usage_rollup_marks (
    org_id        uuid PRIMARY KEY REFERENCES ibex_core.orgs (id) ON DELETE CASCADE,
    rolled_until  timestamptz NOT NULL CHECK (rolled_until = date_trunc('hour', rolled_until, 'UTC')),
    rolled_at     timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE ibex_core.usage_rollup_marks ENABLE ROW LEVEL SECURITY;
ALTER TABLE ibex_core.usage_rollup_marks FORCE ROW LEVEL SECURITY;
CREATE POLICY org_isolation ON ibex_core.usage_rollup_marks
    USING (org_id = (SELECT ibex_core.current_org()))
    WITH CHECK (org_id = (SELECT ibex_core.current_org()));
-- The behind orgs, oldest mark first.
CREATE INDEX usage_rollup_marks_due ON ibex_core.usage_rollup_marks (rolled_until);
GRANT SELECT ON ibex_core.usage_rollup_marks TO ibex_app;
GRANT SELECT, INSERT, UPDATE ON ibex_core.usage_rollup_marks TO ibex_system;
RESET ROLE;
