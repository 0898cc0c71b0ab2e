-- The hot cache's outbox consumer (in the sidecar): claim, acknowledge and retry hot_cache events
-- of every org, and list the agents whose hot sets to rebuild.
--
-- Cross-org like token authentication (sql/api/auth.sql, same reasoning): SECURITY DEFINER, owned
-- by ibex_system, search_path pinned, hot_cache rows only (never another topic), executable by
-- ibex_app only. Runs as the migration runner, which hands the functions over to ibex_system.

-- The hot cache's topic of the shared consumer functions (sql/api/outbox.sql): claim with a
-- lease, acknowledge, give back after a failure. An event that keeps failing is a bug to look
-- at; the periodic rebuild repairs the cache meanwhile.
CREATE OR REPLACE FUNCTION ibex_core.claim_hot_cache_events(p_limit integer, p_lease_seconds integer)
RETURNS TABLE (event_org uuid, event_id bigint, event_name text, event_aggregate uuid, event_payload jsonb,
               event_attempts integer)
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT * FROM ibex_core.claim_outbox_events('hot_cache', p_limit, p_lease_seconds) $$;

CREATE OR REPLACE FUNCTION ibex_core.ack_hot_cache_events(p_orgs uuid[], p_ids bigint[])
RETURNS integer
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ibex_core.ack_outbox_events('hot_cache', p_orgs, p_ids) $$;

CREATE OR REPLACE FUNCTION ibex_core.retry_hot_cache_events(p_orgs uuid[], p_ids bigint[], p_error text,
                                                 p_delay_seconds integer, p_max_attempts integer)
RETURNS integer
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ibex_core.retry_outbox_events('hot_cache', p_orgs, p_ids, p_error, p_delay_seconds, p_max_attempts) $$;

-- Every (org, agent) with active memories in an org that is not deleted: what a full rebuild of
-- the hot cache walks. Reading each agent's memories then happens as ibex_app, inside its org.
CREATE OR REPLACE FUNCTION ibex_core.hot_cache_agents()
RETURNS TABLE (agent_org uuid, agent_id uuid)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT s.org_id, s.agent_id
    FROM ibex_core.agent_memory_stats s JOIN ibex_core.orgs o ON o.id = s.org_id
    WHERE s.active_memories > 0 AND o.status <> 'deleted'
    ORDER BY s.org_id, s.agent_id
$$;

ALTER FUNCTION ibex_core.claim_hot_cache_events(integer, integer) OWNER TO ibex_system;
ALTER FUNCTION ibex_core.ack_hot_cache_events(uuid[], bigint[]) OWNER TO ibex_system;
ALTER FUNCTION ibex_core.retry_hot_cache_events(uuid[], bigint[], text, integer, integer) OWNER TO ibex_system;
ALTER FUNCTION ibex_core.hot_cache_agents() OWNER TO ibex_system;
REVOKE ALL ON FUNCTION ibex_core.claim_hot_cache_events(integer, integer),
    ibex_core.ack_hot_cache_events(uuid[], bigint[]),
    ibex_core.retry_hot_cache_events(uuid[], bigint[], text, integer, integer),
    ibex_core.hot_cache_agents() FROM PUBLIC, ibex_app;
-- The sidecar's alone: they read and change every org's outbox (an application could list other
-- orgs' agents, steal their events, acknowledge them or write into their dead letters).
GRANT EXECUTE ON FUNCTION ibex_core.claim_hot_cache_events(integer, integer),
    ibex_core.ack_hot_cache_events(uuid[], bigint[]),
    ibex_core.retry_hot_cache_events(uuid[], bigint[], text, integer, integer),
    ibex_core.hot_cache_agents() TO ibex_sidecar;
