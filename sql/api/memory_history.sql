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

-- memory_links: the memories one memory is related to, either way round (supersedes,
-- conflicts_with, related_to, derived_from), with a short preview of the other memory.
-- `outgoing` is true when this memory is the relationship's source. At most 200 rows, newest
-- first: a page shows them, nothing pages through them.
CREATE OR REPLACE FUNCTION ibex_core.memory_links(p_org uuid, p_memory uuid)
RETURNS TABLE (kind text, outgoing boolean, other_id uuid, other_preview text, other_status text,
               similarity real, created_at timestamptz)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    PERFORM ibex_core.assert_org(p_org);
    IF NOT EXISTS (SELECT 1 FROM ibex_core.memories m WHERE m.org_id = p_org AND m.id = p_memory) THEN
        RAISE EXCEPTION 'memory % not found', p_memory USING ERRCODE = 'no_data_found';
    END IF;
    RETURN QUERY
    SELECT l.kind, l.outgoing, o.id, left(o.content, 200), o.status, l.similarity, l.created_at
    FROM (
        SELECT r.kind, true AS outgoing, r.target_memory_id AS other, r.similarity, r.created_at
        FROM ibex_core.memory_relationships r WHERE r.org_id = p_org AND r.source_memory_id = p_memory
        UNION ALL
        SELECT r.kind, false, r.source_memory_id, r.similarity, r.created_at
        FROM ibex_core.memory_relationships r WHERE r.org_id = p_org AND r.target_memory_id = p_memory
    ) l
    JOIN ibex_core.memories o ON o.org_id = p_org AND o.id = l.other
    ORDER BY l.created_at DESC
    LIMIT 200;
END
$$;

REVOKE ALL ON FUNCTION ibex_core.memory_links FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ibex_core.memory_links TO ibex_app;
