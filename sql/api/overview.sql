-- org_overview: what the dashboard's overview shows of one org (or one agent of it), as one row
-- per figure: counts of memories, agents and sessions (all, last 24 hours, last 30 days), and
-- the health of the workers that serve the org: what waits in the indexer's, the archive's and
-- the hot cache's queues (the outbox), completed sessions not yet learnt from, and unresolved
-- dead letters, each with its oldest item (a queue whose oldest item ages is a stuck worker).
--
-- Queues are the org's, whatever the agent: outbox events name no agent.
-- SECURITY DEFINER because applications read no queue table directly (migration 0016); it
-- answers for the caller's org alone (assert_org, and row-level security forced on the owner).
SET LOCAL ROLE ibex_owner;

CREATE OR REPLACE FUNCTION ibex_core.org_overview(p_org uuid, p_agent uuid DEFAULT NULL)
RETURNS TABLE (figure text, value bigint, oldest timestamptz)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_day   timestamptz := now() - interval '24 hours';
    v_month timestamptz := now() - interval '30 days';
BEGIN
    PERFORM ibex_core.assert_org(p_org);
    RETURN QUERY
    SELECT f.figure, f.value, f.oldest FROM (
        -- Each count its own query, so each can use an index: the partial unique index of active
        -- memories, memories_org_created for the windows.
        SELECT 'memories_active' AS figure, count(*) AS value, NULL::timestamptz AS oldest
        FROM ibex_core.memories m
        WHERE m.org_id = p_org AND m.status = 'active' AND (p_agent IS NULL OR m.agent_id = p_agent)
        UNION ALL
        SELECT 'memories_24h', count(*), NULL FROM ibex_core.memories m
        WHERE m.org_id = p_org AND m.created_at >= v_day AND (p_agent IS NULL OR m.agent_id = p_agent)
        UNION ALL
        SELECT 'memories_30d', count(*), NULL FROM ibex_core.memories m
        WHERE m.org_id = p_org AND m.created_at >= v_month AND (p_agent IS NULL OR m.agent_id = p_agent)
        UNION ALL
        SELECT 'agents', count(*), NULL FROM ibex_core.agents a
        WHERE a.org_id = p_org AND a.status <> 'archived' AND (p_agent IS NULL OR a.id = p_agent)
        UNION ALL
        SELECT 'sessions_active', count(*), NULL FROM ibex_core.sessions s
        WHERE s.org_id = p_org AND s.status = 'active' AND (p_agent IS NULL OR s.agent_id = p_agent)
        UNION ALL
        SELECT 'sessions_24h', count(*), NULL FROM ibex_core.sessions s
        WHERE s.org_id = p_org AND s.started_at >= v_day AND (p_agent IS NULL OR s.agent_id = p_agent)
        UNION ALL
        SELECT 'sessions_30d', count(*), NULL FROM ibex_core.sessions s
        WHERE s.org_id = p_org AND s.started_at >= v_month AND (p_agent IS NULL OR s.agent_id = p_agent)
        UNION ALL
        SELECT 'queue_' || t.topic, count(o.id), min(o.created_at)
        FROM unnest(ARRAY['index', 'archive', 'hot_cache']) t(topic)
        LEFT JOIN ibex_core.outbox o ON o.topic = t.topic AND o.org_id = p_org AND o.processed_at IS NULL
        GROUP BY t.topic
        UNION ALL
        SELECT 'queue_extraction', count(*), min(s.completed_at) FROM ibex_core.sessions s
        WHERE s.org_id = p_org AND s.status = 'completed' AND s.last_extracted_turn < s.turn_count
          AND NOT s.extraction_dead
        UNION ALL
        SELECT 'dead_letters', count(*), min(d.created_at) FROM ibex_core.dead_letters d
        WHERE d.org_id = p_org AND d.resolved_at IS NULL
        UNION ALL
        SELECT 'dead_extractions', count(*), min(s.completed_at) FROM ibex_core.sessions s
        WHERE s.org_id = p_org AND s.extraction_dead
    ) f;
END
$$;

ALTER FUNCTION ibex_core.org_overview SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp;
REVOKE ALL ON FUNCTION ibex_core.org_overview FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ibex_core.org_overview TO ibex_app;
