-- The hot cache's outbox consumer (in the sidecar): claim, acknowledge and retry hot_cache events
-- of every org, and list the agents whose hot sets to rebuild.
--
-- Cross-org like token authentication (sql/api/auth.sql, same reasoning): SECURITY DEFINER, owned
-- by ibex_system, search_path pinned, hot_cache rows only (never another topic), executable by
-- ibex_app only. Runs as the migration runner, which hands the functions over to ibex_system.

-- Claims up to p_limit pending hot_cache events of any org with a lease: they become invisible
-- to other consumers for p_lease_seconds and count an attempt. A consumer that dies before it
-- acknowledges simply lets the lease run out, and another one gets the events (at least once).
CREATE OR REPLACE FUNCTION ibex_core.claim_hot_cache_events(p_limit integer, p_lease_seconds integer)
RETURNS TABLE (event_org uuid, event_id bigint, event_name text, event_aggregate uuid, event_payload jsonb,
               event_attempts integer)
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    WITH picked AS (
        SELECT o.org_id, o.id
        FROM ibex_core.outbox o
        WHERE o.topic = 'hot_cache' AND o.processed_at IS NULL AND o.available_at <= now()
        ORDER BY o.id
        LIMIT least(greatest(coalesce(p_limit, 100), 1), 1000)
        FOR UPDATE SKIP LOCKED)
    UPDATE ibex_core.outbox o
    SET available_at = now() + make_interval(secs => least(greatest(coalesce(p_lease_seconds, 30), 1), 3600)),
        attempts = o.attempts + 1
    FROM picked
    WHERE o.org_id = picked.org_id AND o.id = picked.id
    RETURNING o.org_id, o.id, o.event, o.aggregate_id, o.payload, o.attempts
$$;

-- Marks claimed events done. Idempotent: acknowledging twice changes nothing.
CREATE OR REPLACE FUNCTION ibex_core.ack_hot_cache_events(p_orgs uuid[], p_ids bigint[])
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_done integer;
BEGIN
    UPDATE ibex_core.outbox o SET processed_at = now(), last_error = NULL
    FROM unnest(p_orgs, p_ids) AS a(org_id, id)
    WHERE o.org_id = a.org_id AND o.id = a.id AND o.topic = 'hot_cache' AND o.processed_at IS NULL;
    GET DIAGNOSTICS v_done = ROW_COUNT;
    RETURN v_done;
END
$$;

-- Gives claimed events back after a failure: they are retried after p_delay_seconds, and an
-- event that has failed p_max_attempts times goes to dead_letters instead (a hot-cache event
-- that keeps failing is a bug to look at; the periodic rebuild repairs the cache meanwhile).
CREATE OR REPLACE FUNCTION ibex_core.retry_hot_cache_events(p_orgs uuid[], p_ids bigint[], p_error text,
                                                 p_delay_seconds integer, p_max_attempts integer)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_error text := left(coalesce(p_error, 'unknown error'), 2000);
    v_dead integer;
BEGIN
    WITH dead AS (
        UPDATE ibex_core.outbox o SET processed_at = now(), last_error = v_error
        FROM unnest(p_orgs, p_ids) AS a(org_id, id)
        WHERE o.org_id = a.org_id AND o.id = a.id AND o.topic = 'hot_cache' AND o.processed_at IS NULL
          AND o.attempts >= greatest(coalesce(p_max_attempts, 10), 1)
        RETURNING o.org_id, o.id, o.payload, o.attempts)
    INSERT INTO ibex_core.dead_letters (org_id, source, reference_id, payload, error, attempts)
    SELECT dead.org_id, 'outbox', dead.id::text, dead.payload, v_error, dead.attempts FROM dead;
    GET DIAGNOSTICS v_dead = ROW_COUNT;
    UPDATE ibex_core.outbox o
    SET available_at = now() + make_interval(secs => least(greatest(coalesce(p_delay_seconds, 1), 0), 3600)),
        last_error = v_error
    FROM unnest(p_orgs, p_ids) AS a(org_id, id)
    WHERE o.org_id = a.org_id AND o.id = a.id AND o.topic = 'hot_cache' AND o.processed_at IS NULL;
    RETURN v_dead;
END
$$;

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
