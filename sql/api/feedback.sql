-- feedback: a memory was (not) useful; moves the usefulness term of the score.
SET LOCAL ROLE ibex_owner;

CREATE OR REPLACE FUNCTION ibex_core.feedback(p_org uuid, p_memory uuid, p_useful boolean)
RETURNS TABLE (memory_id uuid, useful_count integer, not_useful_count integer)
LANGUAGE plpgsql AS $$
DECLARE
    v_agent uuid;
BEGIN
    PERFORM ibex_core.assert_org(p_org);
    IF p_memory IS NULL OR p_useful IS NULL THEN
        RAISE EXCEPTION 'memory and useful must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    UPDATE ibex_core.memories m
    SET useful_count = m.useful_count + p_useful::int, not_useful_count = m.not_useful_count + (NOT p_useful)::int
    WHERE m.org_id = p_org AND m.id = p_memory AND m.status <> 'deleted'
    RETURNING m.agent_id INTO v_agent;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'memory % not found', p_memory USING ERRCODE = 'no_data_found';
    END IF;
    PERFORM ibex_core.notify_outbox(p_org, 'hot_cache', 'memory.upserted', p_memory,
        jsonb_build_object('agent_id', v_agent, 'memory_id', p_memory, 'removed', '[]'::jsonb));
    RETURN QUERY SELECT m.id, m.useful_count, m.not_useful_count FROM ibex_core.memories m
                 WHERE m.org_id = p_org AND m.id = p_memory;
END
$$;

REVOKE ALL ON FUNCTION ibex_core.feedback FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ibex_core.feedback TO ibex_app;
