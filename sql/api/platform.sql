-- Orgs across the platform, for the management API's platform operators (scope platform:admin,
-- checked by the sidecar before it calls any of these).
--
-- Cross-org like token authentication (sql/api/auth.sql, same reasoning): SECURITY DEFINER, owned
-- by ibex_system (NOLOGIN, BYPASSRLS), search_path pinned, executable by ibex_sidecar only; all SQL
-- is static. Runs as the migration runner, which hands the functions over to ibex_system. Migration
-- 0017 grants ibex_system what these functions need and nothing more.

-- The statuses an org may move to from each status: active <-> suspended. Deletion is its own
-- operation (platform_delete_org), never a status a caller sets.
CREATE OR REPLACE FUNCTION ibex_ops.org_status_transitions(p_from text) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE p_from WHEN 'active' THEN ARRAY['suspended'] WHEN 'suspended' THEN ARRAY['active']
                       ELSE ARRAY[]::text[] END
$$;

CREATE OR REPLACE FUNCTION ibex_ops.platform_create_org(p_name text, p_slug text, p_settings jsonb DEFAULT '{}')
RETURNS SETOF ibex_core.orgs
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF p_name IS NULL OR length(btrim(p_name)) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'org name must be 1 to 200 characters' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_slug IS NULL OR p_slug !~ '^[a-z0-9][a-z0-9-]{1,62}$' THEN
        RAISE EXCEPTION 'invalid org slug: %', coalesce(p_slug, 'NULL') USING ERRCODE = 'invalid_parameter_value',
            HINT = '2 to 63 characters: lower-case letters, digits and dashes, not starting with a dash.';
    END IF;
    IF jsonb_typeof(coalesce(p_settings, '{}')) <> 'object' OR octet_length(coalesce(p_settings, '{}')::text) > 65536 THEN
        RAISE EXCEPTION 'org settings must be a JSON object of at most 64 KiB' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY INSERT INTO ibex_core.orgs (name, slug, settings)
                 VALUES (btrim(p_name), p_slug, coalesce(p_settings, '{}')) RETURNING *;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'an org with slug % already exists', p_slug USING ERRCODE = 'unique_violation';
END
$$;

-- Orgs newest first, after (p_after_time, p_after_id) when given; deleted orgs are gone (their
-- rows are deleted), suspended ones listed.
CREATE OR REPLACE FUNCTION ibex_ops.platform_list_orgs(p_status text, p_after_time timestamptz, p_after_id uuid,
                                                       p_limit integer)
RETURNS SETOF ibex_core.orgs
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT * FROM ibex_core.orgs o
    WHERE (p_status IS NULL OR o.status = p_status)
      AND (p_after_time IS NULL OR (o.created_at, o.id) < (p_after_time, p_after_id))
    ORDER BY o.created_at DESC, o.id DESC
    LIMIT least(greatest(coalesce(p_limit, 50), 1), 1001)
$$;

CREATE OR REPLACE FUNCTION ibex_ops.platform_get_org(p_org uuid)
RETURNS SETOF ibex_core.orgs
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT * FROM ibex_core.orgs o WHERE o.id = p_org
$$;

-- Changes an org's name or settings; NULL keeps the current value.
CREATE OR REPLACE FUNCTION ibex_ops.platform_update_org(p_org uuid, p_name text, p_settings jsonb)
RETURNS SETOF ibex_core.orgs
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF p_name IS NOT NULL AND length(btrim(p_name)) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'org name must be 1 to 200 characters' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_settings IS NOT NULL AND (jsonb_typeof(p_settings) <> 'object' OR octet_length(p_settings::text) > 65536) THEN
        RAISE EXCEPTION 'org settings must be a JSON object of at most 64 KiB' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    RETURN QUERY UPDATE ibex_core.orgs o SET name = coalesce(btrim(p_name), o.name), settings = coalesce(p_settings, o.settings)
                 WHERE o.id = p_org RETURNING *;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'org % not found', p_org USING ERRCODE = 'no_data_found';
    END IF;
END
$$;

-- Suspends or resumes an org. A suspended org's tokens are refused at once (authenticate_token,
-- and the orgs trigger of auth.sql pushes the change to every sidecar); its data stays.
CREATE OR REPLACE FUNCTION ibex_ops.platform_set_org_status(p_org uuid, p_status text)
RETURNS SETOF ibex_core.orgs
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_from text;
    v_allowed text[];
BEGIN
    SELECT o.status INTO v_from FROM ibex_core.orgs o WHERE o.id = p_org FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'org % not found', p_org USING ERRCODE = 'no_data_found';
    END IF;
    v_allowed := ibex_ops.org_status_transitions(v_from);
    IF p_status IS NULL OR NOT p_status = ANY (v_allowed) THEN
        RAISE EXCEPTION 'an org that is % cannot become %', v_from, coalesce(p_status, 'NULL')
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'allowed: ' || array_to_string(v_allowed, ', ');
    END IF;
    RETURN QUERY UPDATE ibex_core.orgs o SET status = p_status WHERE o.id = p_org RETURNING *;
END
$$;

-- Deletes an org and everything it owns (foreign keys cascade; the history rows go with what
-- they describe; Redis follows through the eviction queue). Answers the receipt: how many rows
-- of each kind went, counted in the same transaction.
CREATE OR REPLACE FUNCTION ibex_ops.platform_delete_org(p_org uuid)
RETURNS jsonb
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    v_receipt jsonb;
BEGIN
    PERFORM 1 FROM ibex_core.orgs o WHERE o.id = p_org FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'org % not found', p_org USING ERRCODE = 'no_data_found';
    END IF;
    v_receipt := jsonb_build_object(
        'org_id', p_org,
        'users', (SELECT count(*) FROM ibex_core.users x WHERE x.org_id = p_org),
        'agents', (SELECT count(*) FROM ibex_core.agents x WHERE x.org_id = p_org),
        'api_tokens', (SELECT count(*) FROM ibex_core.api_tokens x WHERE x.org_id = p_org),
        'directives', (SELECT count(*) FROM ibex_core.directives x WHERE x.org_id = p_org),
        'memories', (SELECT count(*) FROM ibex_core.memories x WHERE x.org_id = p_org),
        'sessions', (SELECT count(*) FROM ibex_core.sessions x WHERE x.org_id = p_org),
        'session_turns', (SELECT count(*) FROM ibex_core.session_turns x WHERE x.org_id = p_org),
        'usage_events', (SELECT count(*) FROM ibex_core.usage_events x WHERE x.org_id = p_org),
        'deleted_at', now());
    -- Every key of the org leaves Redis too (hot sets, embedding cache entries), and every
    -- archive object leaves S3 (the sidecar deletes them and records S3's confirmation).
    INSERT INTO ibex_ops.hot_cache_evictions (org_id, agent_id, reason) VALUES (p_org, NULL, 'org purged');
    INSERT INTO ibex_ops.archive_deletions (org_id, prefix, reason) VALUES (p_org, p_org::text || '/', 'org deleted')
    RETURNING jsonb_set(v_receipt, '{archive_deletion_id}', to_jsonb(id)) INTO v_receipt;
    PERFORM pg_notify('ibex_outbox', 'hot_cache');
    DELETE FROM ibex_core.orgs o WHERE o.id = p_org;
    RETURN v_receipt;
END
$$;

ALTER FUNCTION ibex_ops.org_status_transitions(text) OWNER TO ibex_system;
ALTER FUNCTION ibex_ops.platform_create_org(text, text, jsonb) OWNER TO ibex_system;
ALTER FUNCTION ibex_ops.platform_list_orgs(text, timestamptz, uuid, integer) OWNER TO ibex_system;
ALTER FUNCTION ibex_ops.platform_get_org(uuid) OWNER TO ibex_system;
ALTER FUNCTION ibex_ops.platform_update_org(uuid, text, jsonb) OWNER TO ibex_system;
ALTER FUNCTION ibex_ops.platform_set_org_status(uuid, text) OWNER TO ibex_system;
ALTER FUNCTION ibex_ops.platform_delete_org(uuid) OWNER TO ibex_system;
-- The sidecar's alone, and only after it checked the caller's platform:admin scope.
REVOKE ALL ON FUNCTION ibex_ops.org_status_transitions(text), ibex_ops.platform_create_org(text, text, jsonb),
    ibex_ops.platform_list_orgs(text, timestamptz, uuid, integer), ibex_ops.platform_get_org(uuid),
    ibex_ops.platform_update_org(uuid, text, jsonb), ibex_ops.platform_set_org_status(uuid, text),
    ibex_ops.platform_delete_org(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ibex_ops.platform_create_org(text, text, jsonb),
    ibex_ops.platform_list_orgs(text, timestamptz, uuid, integer), ibex_ops.platform_get_org(uuid),
    ibex_ops.platform_update_org(uuid, text, jsonb), ibex_ops.platform_set_org_status(uuid, text),
    ibex_ops.platform_delete_org(uuid) TO ibex_sidecar;
