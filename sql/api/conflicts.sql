-- Conflicts between memories (remember's step 6): list and resolve.
SET LOCAL ROLE ibex_owner;

CREATE OR REPLACE FUNCTION ibex_core.list_conflicts(p_org uuid, p_agent uuid DEFAULT NULL, p_status text DEFAULT 'open')
RETURNS TABLE (conflict_id uuid, agent_id uuid, memory_id uuid, memory_content text, conflicting_memory_id uuid,
               conflicting_content text, similarity real, status text, created_at timestamptz)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    PERFORM ibex_core.assert_org(p_org);
    IF p_status IS NOT NULL AND p_status NOT IN ('open', 'resolved', 'dismissed') THEN
        RAISE EXCEPTION 'invalid conflict status: %', p_status USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Use open, resolved, dismissed, or NULL for all.';
    END IF;
    RETURN QUERY
    SELECT c.id, a.agent_id, a.id, a.content, b.id, b.content, c.similarity, c.status, c.created_at
    FROM ibex_core.memory_conflicts c
    JOIN ibex_core.memories a ON a.org_id = c.org_id AND a.id = c.memory_id
    JOIN ibex_core.memories b ON b.org_id = c.org_id AND b.id = c.conflicting_memory_id
    WHERE c.org_id = p_org AND (p_agent IS NULL OR a.agent_id = p_agent) AND (p_status IS NULL OR c.status = p_status)
    ORDER BY c.created_at, c.id;
END
$$;

-- Closes a conflict; optionally forgets the memory that lost.
CREATE OR REPLACE FUNCTION ibex_core.resolve_conflict(p_org uuid, p_conflict uuid, p_status text DEFAULT 'resolved',
                                           p_resolution text DEFAULT NULL, p_forget_memory uuid DEFAULT NULL)
RETURNS TABLE (conflict_id uuid, status text)
LANGUAGE plpgsql AS $$
DECLARE
    c ibex_core.memory_conflicts%ROWTYPE;
BEGIN
    PERFORM ibex_core.assert_org(p_org);
    IF p_status NOT IN ('resolved', 'dismissed') THEN
        RAISE EXCEPTION 'invalid resolution status: %', p_status USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Use resolved or dismissed.';
    END IF;
    SELECT * INTO c FROM ibex_core.memory_conflicts x WHERE x.org_id = p_org AND x.id = p_conflict FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'conflict % not found', p_conflict USING ERRCODE = 'no_data_found';
    END IF;
    IF p_forget_memory IS NOT NULL AND p_forget_memory NOT IN (c.memory_id, c.conflicting_memory_id) THEN
        RAISE EXCEPTION 'memory % is not part of conflict %', p_forget_memory, p_conflict
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE ibex_core.memory_conflicts x SET status = p_status, resolution = p_resolution, resolved_at = now()
    WHERE x.org_id = p_org AND x.id = p_conflict AND x.status = 'open';
    IF p_forget_memory IS NOT NULL THEN
        PERFORM ibex_core.forget(p_org, p_forget_memory, coalesce(p_resolution, 'lost a conflict'));
    END IF;
    RETURN QUERY SELECT x.id, x.status FROM ibex_core.memory_conflicts x WHERE x.org_id = p_org AND x.id = p_conflict;
END
$$;

-- Applications write only through functions (migration 0016): this one runs with its owner's
-- privileges, for the caller's org alone (assert_org, and row-level security forced on the owner).
ALTER FUNCTION ibex_core.resolve_conflict SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp;
REVOKE ALL ON FUNCTION ibex_core.list_conflicts, ibex_core.resolve_conflict FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ibex_core.list_conflicts, ibex_core.resolve_conflict TO ibex_app;
