-- forget: soft delete with a version record.
SET LOCAL ROLE ibex_owner;

-- Soft delete: the row stays (status deleted) with a version record, and leaves every ranking.
CREATE OR REPLACE FUNCTION ibex_core.forget(p_org uuid, p_memory uuid, p_reason text DEFAULT NULL)
RETURNS TABLE (memory_id uuid, status text, version integer)
LANGUAGE plpgsql AS $$
DECLARE
    m ibex_core.memories%ROWTYPE;
BEGIN
    PERFORM ibex_core.assert_org(p_org);
    SELECT * INTO m FROM ibex_core.memories x WHERE x.org_id = p_org AND x.id = p_memory FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'memory % not found', p_memory USING ERRCODE = 'no_data_found';
    END IF;
    IF m.status <> 'deleted' THEN
        UPDATE ibex_core.memories x SET status = 'deleted', deleted_at = now(), superseded_by = NULL,
                                        version = x.version + 1
        WHERE x.org_id = p_org AND x.id = p_memory
        RETURNING * INTO m;
        INSERT INTO ibex_core.memory_versions (org_id, memory_id, version, change, content, content_hash, category,
                                               confidence, status, reason)
        VALUES (p_org, m.id, m.version, 'forgotten', m.content, m.content_hash, m.category, m.confidence,
                m.status, p_reason);
        UPDATE ibex_core.memory_conflicts c SET status = 'resolved', resolution = 'memory forgotten', resolved_at = now()
        WHERE c.org_id = p_org AND c.status = 'open' AND (c.memory_id = p_memory OR c.conflicting_memory_id = p_memory);
    END IF;
    RETURN QUERY SELECT m.id, m.status, m.version;
END
$$;

-- Applications write only through functions (migration 0016): this one runs with its owner's
-- privileges, for the caller's org alone (assert_org, and row-level security forced on the owner).
ALTER FUNCTION ibex_core.forget SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp;
REVOKE ALL ON FUNCTION ibex_core.forget FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ibex_core.forget TO ibex_app;
