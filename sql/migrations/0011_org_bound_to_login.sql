-- IBEX 0011: the org a session acts for is bound to something the session cannot forge.
--
-- Until now every application session connected as ibex_app and chose its org with
-- set_config('ibex.org_id', ...): any session could name another org and read it. Now:
--   * an application connects with a login of its own, bound to one org in ibex_ops.org_logins
--     (written only by a superuser, through ibex_ops.bind_login); current_org() returns that org
--     whatever the session sets;
--   * the sidecar connects as ibex_sidecar, the one trusted login: it proves each request's org
--     from an API token and only then sets ibex.org_id for the transaction;
--   * ibex_app becomes a NOLOGIN group role holding the application privileges; every
--     application login and ibex_sidecar are members of it.
-- A session that is neither (an unbound login) acts for no org: it sees and writes nothing.
-- docs/SECURITY.md has the trust model.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ibex_sidecar') THEN
        CREATE ROLE ibex_sidecar LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS;
    END IF;
END
$$;
GRANT ibex_app TO ibex_sidecar;
ALTER ROLE ibex_app NOLOGIN;

SET LOCAL ROLE ibex_owner;

-- One row per application login: the org it acts for. Not visible to applications; read by
-- current_org() (SECURITY DEFINER, sql/api/org.sql).
CREATE TABLE ibex_ops.org_logins (
    login       text PRIMARY KEY CHECK (length(login) BETWEEN 1 AND 63),
    org_id      uuid NOT NULL REFERENCES ibex_core.orgs (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX org_logins_org_idx ON ibex_ops.org_logins (org_id);

-- Policies compare against (SELECT current_org()): an init plan, evaluated once per statement,
-- instead of a call per row (current_org() now reads org_logins).
-- Every org_isolation policy of 0004 and 0005, found in the catalog rather than listed again.
DO $$
DECLARE
    t text;
BEGIN
    FOR t IN SELECT c.relname FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
             WHERE p.polname = 'org_isolation' AND c.relnamespace = 'ibex_core'::regnamespace
               AND c.relname <> 'orgs'
    LOOP
        EXECUTE format('ALTER POLICY org_isolation ON ibex_core.%I
                            USING (org_id = (SELECT ibex_core.current_org()))
                            WITH CHECK (org_id = (SELECT ibex_core.current_org()))', t);
    END LOOP;
END
$$;
ALTER POLICY org_isolation ON ibex_core.orgs
    USING (id = (SELECT ibex_core.current_org()))
    WITH CHECK (id = (SELECT ibex_core.current_org()));

RESET ROLE;
