-- The org a session acts for, and the guard every API function starts with (double enforcement
-- next to row-level security).
SET LOCAL ROLE ibex_owner;

-- The org this session acts for, or NULL (then row-level security, which compares against it,
-- shows and accepts nothing). It is bound to the login (session_user, which no SET changes):
--   * an application login bound by ibex_ops.bind_login acts for its org, whatever the session
--     sets in ibex.org_id;
--   * the trusted sidecar login (a member of ibex_sidecar) and superusers (migrations, DBAs,
--     background workers) act for the org in ibex.org_id, set per transaction after the sidecar
--     proved it from an API token; an empty string counts as unset (RESET leaves '' behind);
--   * any other login acts for no org.
-- SECURITY DEFINER so that it can read org_logins, which applications cannot.
-- PL/pgSQL, not SQL: a SECURITY DEFINER SQL function is never inlined, and the SQL-function
-- executor parses and plans its body again for every statement that calls it, while PL/pgSQL
-- keeps the plan for the session. Every row-level security policy calls this once per statement,
-- and a search runs about ten statements: as SQL it cost about 0.1 ms each (a tenth of search's
-- own time at 10k memories), as PL/pgSQL 5-8 us.
CREATE OR REPLACE FUNCTION ibex_core.current_org() RETURNS uuid
    LANGUAGE plpgsql STABLE PARALLEL SAFE SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    AS $$
DECLARE
    v_org     uuid;
    v_setting text;
BEGIN
    SELECT l.org_id INTO v_org FROM ibex_ops.org_logins l WHERE l.login = session_user::text;
    IF v_org IS NOT NULL OR NOT pg_has_role(session_user, 'ibex_sidecar', 'MEMBER') THEN
        RETURN v_org;
    END IF;
    v_setting := nullif(current_setting('ibex.org_id', true), '');
    -- A malformed id is an error, not a silent empty result (checked by pattern: catching the
    -- cast's error would open a subtransaction on every call).
    IF v_setting !~ '^\{?[0-9A-Fa-f-]{32,39}\}?$' THEN
        RAISE EXCEPTION 'ibex.org_id is not an org id'
            USING ERRCODE = 'invalid_text_representation',
                  DETAIL = format('ibex.org_id is set to %L.', v_setting),
                  HINT = 'Set it to the uuid of the org the transaction acts for, or reset it.';
    END IF;
    RETURN v_setting::uuid;
END
$$;

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
        RAISE EXCEPTION 'this session acts for no org'
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = format('Login %s is not bound to an org, or ibex.org_id is not set.', session_user),
                  HINT = 'Applications connect with a login bound by ibex_ops.bind_login; the sidecar (ibex_sidecar) starts each transaction with SELECT set_config(''ibex.org_id'', ''<org uuid>'', true).';
    END IF;
    IF v_current <> p_org THEN
        RAISE EXCEPTION 'org % is not the org of this session', p_org
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = format('This session acts for org %s.', v_current),
                  HINT = 'Pass the org the session acts for.';
    END IF;
END
$$;

GRANT EXECUTE ON FUNCTION ibex_core.current_org() TO ibex_app, ibex_system;

-- Binding an application login to its org (superusers only: the function is not granted to
-- anyone). The login must exist and be an ordinary login (no superuser, no BYPASSRLS, not the
-- sidecar); it becomes a member of ibex_app, the group holding the application privileges.
-- Rebinding moves the login to another org.
RESET ROLE;
CREATE OR REPLACE FUNCTION ibex_ops.bind_login(p_login name, p_org uuid) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r record;
BEGIN
    SELECT rolcanlogin, rolsuper, rolbypassrls INTO r FROM pg_roles WHERE rolname = p_login;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'role % does not exist', p_login USING ERRCODE = 'undefined_object',
            HINT = 'CREATE ROLE <name> LOGIN PASSWORD ''...'' first.';
    END IF;
    IF NOT r.rolcanlogin OR r.rolsuper OR r.rolbypassrls
       OR p_login IN ('ibex_sidecar', 'ibex_app', 'ibex_owner', 'ibex_system')
       OR pg_has_role(p_login, 'ibex_sidecar', 'MEMBER') THEN
        RAISE EXCEPTION 'role % cannot be an application login', p_login
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'An application login can log in, is no superuser, has no BYPASSRLS and is not the sidecar.';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM ibex_core.orgs o WHERE o.id = p_org) THEN
        RAISE EXCEPTION 'org % does not exist', p_org USING ERRCODE = 'foreign_key_violation';
    END IF;
    INSERT INTO ibex_ops.org_logins (login, org_id) VALUES (p_login, p_org)
    ON CONFLICT (login) DO UPDATE SET org_id = EXCLUDED.org_id, created_at = now();
    EXECUTE format('GRANT ibex_app TO %I', p_login);
END
$$;

CREATE OR REPLACE FUNCTION ibex_ops.unbind_login(p_login name) RETURNS boolean
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM ibex_ops.org_logins WHERE login = p_login;
    RETURN FOUND;
END
$$;
REVOKE ALL ON FUNCTION ibex_ops.bind_login(name, uuid), ibex_ops.unbind_login(name) FROM PUBLIC;

-- Erasing an org and everything it owns (GDPR deletion): superusers only (granted to no one).
-- History rows are append-only, so the purge lifts their guard for this transaction alone.
-- Redis follows through ibex_ops.hot_cache_evictions: the sidecar removes the org's hot sets and
-- embedding cache entries (sql/api/hot_cache_invalidation.sql). Its logins stay, bound to nothing.
-- Returns how many memories went.
CREATE OR REPLACE FUNCTION ibex_ops.purge_org(p_org uuid) RETURNS bigint
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_memories bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM ibex_core.orgs o WHERE o.id = p_org) THEN
        RAISE EXCEPTION 'org % does not exist', p_org USING ERRCODE = 'no_data_found';
    END IF;
    SELECT count(*) INTO v_memories FROM ibex_core.memories m WHERE m.org_id = p_org;
    PERFORM set_config('ibex.allow_history_purge', 'on', true);
    DELETE FROM ibex_core.orgs o WHERE o.id = p_org;
    PERFORM set_config('ibex.allow_history_purge', 'off', true);
    RETURN v_memories;
END
$$;
REVOKE ALL ON FUNCTION ibex_ops.purge_org(uuid) FROM PUBLIC;
