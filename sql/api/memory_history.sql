-- memory_history: every version of one memory, oldest first.
SET LOCAL ROLE ibex_owner;

CREATE OR REPLACE FUNCTION ibex_core.memory_history(p_org uuid, p_memory uuid)
RETURNS SETOF ibex_core.memory_versions
LANGUAGE plpgsql STABLE AS $$
BEGIN
    PERFORM ibex_core.assert_org(p_org);
    IF NOT EXISTS (SELECT 1 FROM ibex_core.memories m WHERE m.org_id = p_org AND m.id = p_memory) THEN
        RAISE EXCEPTION 'memory % not found', p_memory USING ERRCODE = 'no_data_found';
    END IF;
    RETURN QUERY SELECT * FROM ibex_core.memory_versions v
                 WHERE v.org_id = p_org AND v.memory_id = p_memory ORDER BY v.version, v.created_at;
END
$$;

REVOKE ALL ON FUNCTION ibex_core.memory_history FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ibex_core.memory_history TO ibex_app;
