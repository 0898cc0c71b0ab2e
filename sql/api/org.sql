-- The org a session acts for, and the guard every API function starts with (double enforcement
-- next to row-level security).
SET LOCAL ROLE ibex_owner;

-- The org this session acts for (NULL when unset). Row-level security compares against it.
-- An empty string counts as unset: RESET leaves '' behind for custom settings.
CREATE OR REPLACE FUNCTION ibex_core.current_org() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT nullif(current_setting('ibex.org_id', true), '')::uuid $$;

-- Double enforcement: the org named in the call must be the session's org (ibex.org_id). RLS
-- alone would turn a mismatch into an empty result; a mismatch is a bug or an attack, so it is
-- an error.
CREATE OR REPLACE FUNCTION ibex_core.assert_org(p_org uuid) RETURNS void
    LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_current uuid := ibex_core.current_org();
BEGIN
    IF p_org IS NULL THEN
        RAISE EXCEPTION 'org must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF v_current IS NULL THEN
        RAISE EXCEPTION 'ibex.org_id is not set'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Start the transaction with SELECT set_config(''ibex.org_id'', ''<org uuid>'', true).';
    END IF;
    IF v_current <> p_org THEN
        RAISE EXCEPTION 'org % is not the org of this session', p_org
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = format('ibex.org_id is %s.', v_current),
                  HINT = 'Pass the org the session acts for, or set ibex.org_id to it.';
    END IF;
END
$$;

GRANT EXECUTE ON FUNCTION ibex_core.current_org() TO ibex_app, ibex_system;
