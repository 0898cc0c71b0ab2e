-- Agents and their directives, as applications manage them: applications hold no INSERT or
-- UPDATE on the tables (migration 0016), so these functions are how an agent is created, paused
-- or archived and how its directives change. Every directive change records a version
-- (directive_versions is append-only).
SET LOCAL ROLE ibex_owner;

CREATE OR REPLACE FUNCTION ibex_core.create_agent(p_org uuid, p_name text, p_description text DEFAULT NULL,
                                                  p_default_model text DEFAULT NULL, p_metadata jsonb DEFAULT '{}')
RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
    v_id uuid;
BEGIN
    PERFORM ibex_core.assert_org(p_org);
    IF p_name IS NULL OR length(btrim(p_name)) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'agent name must be 1 to 200 characters' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF length(p_description) > 4000 OR length(p_default_model) > 200 THEN
        RAISE EXCEPTION 'agent description or default model too long' USING ERRCODE = 'string_data_right_truncation',
            HINT = 'A description holds at most 4000 characters, a model name 200.';
    END IF;
    PERFORM ibex_core.assert_metadata(coalesce(p_metadata, '{}'));
    INSERT INTO ibex_core.agents (org_id, name, description, default_model, metadata)
    VALUES (p_org, btrim(p_name), p_description, p_default_model, coalesce(p_metadata, '{}'))
    RETURNING id INTO v_id;
    RETURN v_id;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'an agent named % already exists in this org', btrim(p_name) USING ERRCODE = 'unique_violation',
        HINT = 'Agent names are unique per org; pick another name or use the existing agent.';
END
$$;

-- The statuses an agent may move to from each status: active <-> paused, either -> archived, and
-- archived -> active (restoring an agent archived by mistake). Anything else is refused with
-- 55000 (object_not_in_prerequisite_state), the allowed ones named in the DETAIL.
CREATE OR REPLACE FUNCTION ibex_core.agent_status_transitions(p_from text) RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE p_from
        WHEN 'active' THEN ARRAY['paused', 'archived']
        WHEN 'paused' THEN ARRAY['active', 'archived']
        WHEN 'archived' THEN ARRAY['active']
        ELSE ARRAY[]::text[] END
$$;

-- active, paused (keeps its memories, takes no new context) or archived (takes no new memories).
CREATE OR REPLACE FUNCTION ibex_core.set_agent_status(p_org uuid, p_agent uuid, p_status text)
RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    v_from text;
    v_allowed text[];
BEGIN
    PERFORM ibex_core.assert_org(p_org);
    IF p_status IS NULL OR p_status NOT IN ('active', 'paused', 'archived') THEN
        RAISE EXCEPTION 'invalid agent status: %', coalesce(p_status, 'NULL') USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Use active, paused or archived.';
    END IF;
    SELECT a.status INTO v_from FROM ibex_core.agents a WHERE a.org_id = p_org AND a.id = p_agent FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'agent % not found', p_agent USING ERRCODE = 'no_data_found';
    END IF;
    v_allowed := ibex_core.agent_status_transitions(v_from);
    IF NOT p_status = ANY (v_allowed) THEN
        RAISE EXCEPTION 'an agent that is % cannot become %', v_from, p_status
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  DETAIL = 'allowed: ' || array_to_string(v_allowed, ', '),
                  HINT = 'active <-> paused, active or paused -> archived, archived -> active.';
    END IF;
    UPDATE ibex_core.agents a SET status = p_status WHERE a.org_id = p_org AND a.id = p_agent;
    RETURN p_status;
END
$$;

-- Changes an agent's name, description, default model or metadata; a NULL argument keeps the
-- current value (p_clear_description / p_clear_model set those to NULL).
CREATE OR REPLACE FUNCTION ibex_core.update_agent(p_org uuid, p_agent uuid, p_name text DEFAULT NULL,
                                                  p_description text DEFAULT NULL, p_default_model text DEFAULT NULL,
                                                  p_metadata jsonb DEFAULT NULL, p_clear_description boolean DEFAULT false,
                                                  p_clear_model boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ibex_core.assert_org(p_org);
    IF p_name IS NOT NULL AND length(btrim(p_name)) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'agent name must be 1 to 200 characters' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF length(p_description) > 4000 OR length(p_default_model) > 200 THEN
        RAISE EXCEPTION 'agent description or default model too long' USING ERRCODE = 'string_data_right_truncation',
            HINT = 'A description holds at most 4000 characters, a model name 200.';
    END IF;
    IF p_metadata IS NOT NULL THEN
        PERFORM ibex_core.assert_metadata(p_metadata);
    END IF;
    UPDATE ibex_core.agents a
    SET name = coalesce(btrim(p_name), a.name),
        description = CASE WHEN p_clear_description THEN NULL ELSE coalesce(p_description, a.description) END,
        default_model = CASE WHEN p_clear_model THEN NULL ELSE coalesce(p_default_model, a.default_model) END,
        metadata = coalesce(p_metadata, a.metadata)
    WHERE a.org_id = p_org AND a.id = p_agent;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'agent % not found', p_agent USING ERRCODE = 'no_data_found';
    END IF;
EXCEPTION WHEN unique_violation THEN
    RAISE EXCEPTION 'an agent named % already exists in this org', btrim(p_name) USING ERRCODE = 'unique_violation',
        HINT = 'Agent names are unique per org.';
END
$$;

-- Deletes an agent and everything it owns (memories, directives, sessions, its tokens): the
-- foreign keys cascade, and the memory triggers queue the hot cache's eviction. Returns what was
-- deleted, counted before it went.
CREATE OR REPLACE FUNCTION ibex_core.delete_agent(p_org uuid, p_agent uuid)
RETURNS TABLE (memories bigint, directives bigint, sessions bigint, tokens bigint)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ibex_core.assert_org(p_org);
    PERFORM 1 FROM ibex_core.agents a WHERE a.org_id = p_org AND a.id = p_agent FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'agent % not found', p_agent USING ERRCODE = 'no_data_found';
    END IF;
    memories := (SELECT count(*) FROM ibex_core.memories m WHERE m.org_id = p_org AND m.agent_id = p_agent);
    directives := (SELECT count(*) FROM ibex_core.directives d WHERE d.org_id = p_org AND d.agent_id = p_agent);
    sessions := (SELECT count(*) FROM ibex_core.sessions s WHERE s.org_id = p_org AND s.agent_id = p_agent);
    tokens := (SELECT count(*) FROM ibex_core.api_tokens k WHERE k.org_id = p_org AND k.agent_id = p_agent);
    -- The agent's memory and directive histories go with it (the append-only history triggers
    -- allow a delete cascaded from what a history row describes).
    DELETE FROM ibex_core.agents a WHERE a.org_id = p_org AND a.id = p_agent;
    RETURN NEXT;
END
$$;

-- Creates the agent's directive of that name, or records a new version of it (reactivating an
-- archived one). An unchanged active directive is returned as it is, without a new version.
CREATE OR REPLACE FUNCTION ibex_core.set_directive(p_org uuid, p_agent uuid, p_name text, p_content text,
                                                   p_priority integer DEFAULT 0)
RETURNS TABLE (directive_id uuid, version integer)
LANGUAGE plpgsql AS $$
DECLARE
    d ibex_core.directives%ROWTYPE;
BEGIN
    PERFORM ibex_core.assert_org(p_org);
    IF p_name IS NULL OR length(btrim(p_name)) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'directive name must be 1 to 200 characters' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_content IS NULL OR btrim(p_content) = '' OR length(p_content) > 100000 THEN
        RAISE EXCEPTION 'directive content must be 1 to 100000 characters' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM ibex_core.agents a WHERE a.org_id = p_org AND a.id = p_agent) THEN
        RAISE EXCEPTION 'agent % does not exist in this org', p_agent USING ERRCODE = 'foreign_key_violation';
    END IF;
    SELECT * INTO d FROM ibex_core.directives x
    WHERE x.org_id = p_org AND x.agent_id = p_agent AND x.name = btrim(p_name) FOR UPDATE;
    IF NOT FOUND THEN
        INSERT INTO ibex_core.directives (org_id, agent_id, name, content, priority)
        VALUES (p_org, p_agent, btrim(p_name), p_content, coalesce(p_priority, 0))
        RETURNING * INTO d;
    ELSIF d.content = p_content AND d.priority = coalesce(p_priority, 0) AND d.status = 'active' THEN
        RETURN QUERY SELECT d.id, d.version;
        RETURN;
    ELSE
        UPDATE ibex_core.directives x SET content = p_content, priority = coalesce(p_priority, 0), status = 'active',
                                          version = x.version + 1
        WHERE x.org_id = p_org AND x.id = d.id
        RETURNING * INTO d;
    END IF;
    INSERT INTO ibex_core.directive_versions (org_id, directive_id, version, name, content, status)
    VALUES (p_org, d.id, d.version, d.name, d.content, d.status);
    RETURN QUERY SELECT d.id, d.version;
END
$$;

CREATE OR REPLACE FUNCTION ibex_core.archive_directive(p_org uuid, p_directive uuid)
RETURNS TABLE (directive_id uuid, version integer)
LANGUAGE plpgsql AS $$
DECLARE
    d ibex_core.directives%ROWTYPE;
BEGIN
    PERFORM ibex_core.assert_org(p_org);
    SELECT * INTO d FROM ibex_core.directives x WHERE x.org_id = p_org AND x.id = p_directive FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'directive % not found', p_directive USING ERRCODE = 'no_data_found';
    END IF;
    IF d.status <> 'archived' THEN
        UPDATE ibex_core.directives x SET status = 'archived', version = x.version + 1
        WHERE x.org_id = p_org AND x.id = p_directive
        RETURNING * INTO d;
        INSERT INTO ibex_core.directive_versions (org_id, directive_id, version, name, content, status)
        VALUES (p_org, d.id, d.version, d.name, d.content, d.status);
    END IF;
    RETURN QUERY SELECT d.id, d.version;
END
$$;

-- Applications write only through functions (migration 0016): these run with their owner's
-- privileges, for the caller's org alone (assert_org, and row-level security forced on the owner).
ALTER FUNCTION ibex_core.create_agent(uuid, text, text, text, jsonb) SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp;
ALTER FUNCTION ibex_core.set_agent_status(uuid, uuid, text) SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp;
ALTER FUNCTION ibex_core.update_agent(uuid, uuid, text, text, text, jsonb, boolean, boolean) SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp;
ALTER FUNCTION ibex_core.delete_agent(uuid, uuid) SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp;
ALTER FUNCTION ibex_core.set_directive(uuid, uuid, text, text, integer) SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp;
ALTER FUNCTION ibex_core.archive_directive(uuid, uuid) SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp;
REVOKE ALL ON FUNCTION ibex_core.create_agent(uuid, text, text, text, jsonb), ibex_core.set_agent_status(uuid, uuid, text),
    ibex_core.update_agent(uuid, uuid, text, text, text, jsonb, boolean, boolean), ibex_core.delete_agent(uuid, uuid),
    ibex_core.set_directive(uuid, uuid, text, text, integer), ibex_core.archive_directive(uuid, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ibex_core.create_agent(uuid, text, text, text, jsonb), ibex_core.set_agent_status(uuid, uuid, text),
    ibex_core.update_agent(uuid, uuid, text, text, text, jsonb, boolean, boolean), ibex_core.delete_agent(uuid, uuid),
    ibex_core.set_directive(uuid, uuid, text, text, integer), ibex_core.archive_directive(uuid, uuid) TO ibex_app;
