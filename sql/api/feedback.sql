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
    RETURN QUERY SELECT m.id, m.useful_count, m.not_useful_count FROM ibex_core.memories m
                 WHERE m.org_id = p_org AND m.id = p_memory;
END
$$;

-- Applications write only through functions (migration 0016): this one runs with its owner's
-- privileges, for the caller's org alone (assert_org, and row-level security forced on the owner).
ALTER FUNCTION ibex_core.feedback SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp;
REVOKE ALL ON FUNCTION ibex_core.feedback FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ibex_core.feedback TO ibex_app;
