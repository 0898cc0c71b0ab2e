-- Token authentication for the sidecar: a token's hash in, the token's org, agent and scopes out.
--
-- It runs before the org is known, so it reads across orgs: SECURITY DEFINER, owned by ibex_system
-- (NOLOGIN, BYPASSRLS), search_path pinned so no object of the caller's can stand in for ours,
-- executable by the sidecar (ibex_sidecar) only; all SQL is static. ibex_owner cannot give a function away to
-- ibex_system (it is not a member of that role), so this file runs as the migration runner (a
-- superuser), which may replace a function of any owner, and hands the function over.

-- The token with this SHA-256 (lowercase hex), or no row. token_state says whether it may be
-- used: 'active', 'revoked', 'expired', 'org_suspended' / 'org_deleted', or 'user_disabled' (the
-- token's user is deactivated). last_used_at moves
-- at most once a minute, so authenticating stays a read on the hot path.
CREATE OR REPLACE FUNCTION ibex_core.authenticate_token(p_token_hash text)
RETURNS TABLE (token_id uuid, token_org uuid, token_agent uuid, token_user uuid, token_scopes text[],
               token_state text, token_expires_at timestamptz)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    t record;
BEGIN
    IF p_token_hash IS NULL OR p_token_hash !~ '^[0-9a-f]{64}$' THEN
        RETURN;
    END IF;
    SELECT k.org_id, k.id, k.agent_id, k.user_id, k.scopes, k.revoked_at, k.expires_at, k.last_used_at,
           o.status AS org_status, u.status AS user_status
    INTO t
    FROM ibex_core.api_tokens k JOIN ibex_core.orgs o ON o.id = k.org_id
    LEFT JOIN ibex_core.users u ON u.org_id = k.org_id AND u.id = k.user_id
    WHERE k.token_hash = p_token_hash;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    token_state := CASE
        WHEN t.revoked_at IS NOT NULL THEN 'revoked'
        WHEN t.expires_at IS NOT NULL AND t.expires_at <= now() THEN 'expired'
        WHEN t.org_status <> 'active' THEN 'org_' || t.org_status
        WHEN t.user_status IS NOT NULL AND t.user_status <> 'active' THEN 'user_' || t.user_status
        ELSE 'active' END;
    IF token_state = 'active' AND (t.last_used_at IS NULL OR t.last_used_at < now() - interval '1 minute') THEN
        UPDATE ibex_core.api_tokens k SET last_used_at = now()
        WHERE k.org_id = t.org_id AND k.id = t.id
          AND (k.last_used_at IS NULL OR k.last_used_at < now() - interval '1 minute');
    END IF;
    token_id := t.id;
    token_org := t.org_id;
    token_agent := t.agent_id;
    token_user := t.user_id;
    token_scopes := t.scopes;
    token_expires_at := t.expires_at;
    RETURN NEXT;
END
$$;

ALTER FUNCTION ibex_core.authenticate_token(text) OWNER TO ibex_system;
-- The sidecar's alone: an application that could call it would learn any token's org and
-- scopes (and probe hashes across orgs).
REVOKE ALL ON FUNCTION ibex_core.authenticate_token(text) FROM PUBLIC, ibex_app;
GRANT EXECUTE ON FUNCTION ibex_core.authenticate_token(text) TO ibex_sidecar;

-- Revocation is pushed: every change that can turn a valid token invalid notifies the channel
-- `ibex_auth`, and each sidecar drops what it remembered (sidecar/src/auth/revocation.rs). The
-- payload is always `*` (drop every remembered token): any session may LISTEN on any channel, so
-- a payload must not tell which token or org changed. Such changes are rare; the cost is one
-- database lookup per token in use afterwards. NOTIFY is transactional: it is delivered on
-- commit, never for a change rolled back, and identical notifications of one transaction fold
-- into one.
CREATE OR REPLACE FUNCTION ibex_core.notify_auth_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ibex_auth', '*');
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER api_tokens_notify_auth
    AFTER UPDATE OF revoked_at, expires_at, scopes, agent_id, user_id OR DELETE ON ibex_core.api_tokens
    FOR EACH ROW EXECUTE FUNCTION ibex_core.notify_auth_change();
CREATE OR REPLACE TRIGGER orgs_notify_auth
    AFTER UPDATE OF status OR DELETE ON ibex_core.orgs
    FOR EACH ROW EXECUTE FUNCTION ibex_core.notify_auth_change();
CREATE OR REPLACE TRIGGER users_notify_auth
    AFTER UPDATE OF status OR DELETE ON ibex_core.users
    FOR EACH ROW EXECUTE FUNCTION ibex_core.notify_auth_change();
ALTER FUNCTION ibex_core.notify_auth_change() OWNER TO ibex_owner;
