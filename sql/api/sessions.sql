-- Agent sessions and their turns (the proxy's bookkeeping), and the wake-up of extraction.
SET LOCAL ROLE ibex_owner;

-- The session of (agent, external id), created on first use. Sessions without an external id
-- are always new.
CREATE OR REPLACE FUNCTION ibex_core.ensure_session(p_org uuid, p_agent uuid, p_external_id text DEFAULT NULL,
                                         p_user uuid DEFAULT NULL, p_metadata jsonb DEFAULT '{}')
RETURNS uuid LANGUAGE plpgsql AS $$
DECLARE
    v_id uuid;
BEGIN
    PERFORM ibex_core.assert_org(p_org);
    IF p_external_id IS NOT NULL THEN
        SELECT s.id INTO v_id FROM ibex_core.sessions s
        WHERE s.org_id = p_org AND s.agent_id = p_agent AND s.external_id = p_external_id;
        IF FOUND THEN
            RETURN v_id;
        END IF;
    END IF;
    INSERT INTO ibex_core.sessions (org_id, agent_id, user_id, external_id, metadata)
    VALUES (p_org, p_agent, p_user, p_external_id, coalesce(p_metadata, '{}'))
    ON CONFLICT (org_id, agent_id, external_id) DO UPDATE SET updated_at = now()
    RETURNING id INTO v_id;
    RETURN v_id;
END
$$;

-- Appends turns ([{"role": "user", "content": "...", "tokens": 12, "model": "gpt-4o"}, ...]) to an
-- active session, numbering them after the last one; returns the session's turn count. A turn may
-- say when it was said ("at": an ISO 8601 time, for conversations imported after the fact; at most
-- a day ahead of now): memories learned from it happened then, and its relative dates count from
-- then. Without it, the turn was said now.
CREATE OR REPLACE FUNCTION ibex_core.append_turns(p_org uuid, p_session uuid, p_turns jsonb)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_status text;
    v_count integer;
    v_checkpoint integer;
    v_added integer;
    v_first timestamptz;
    v_last timestamptz;
BEGIN
    PERFORM ibex_core.assert_org(p_org);
    IF p_turns IS NULL OR jsonb_typeof(p_turns) <> 'array' THEN
        RAISE EXCEPTION 'turns must be a JSON array' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- The row lock numbers concurrent appends one after the other.
    SELECT s.status, s.turn_count, s.checkpoint_count INTO v_status, v_count, v_checkpoint FROM ibex_core.sessions s
    WHERE s.org_id = p_org AND s.id = p_session FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'session % not found', p_session USING ERRCODE = 'no_data_found';
    END IF;
    IF v_status <> 'active' THEN
        RAISE EXCEPTION 'session % is %', p_session, v_status USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = 'Turns can only be added to an active session.';
    END IF;
    IF EXISTS (SELECT 1 FROM jsonb_array_elements(p_turns) t
               WHERE jsonb_typeof(t) <> 'object' OR t->>'role' IS NULL OR t->>'content' IS NULL) THEN
        RAISE EXCEPTION 'every turn needs a role and a content' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- "at" comes with imported turns only: checked before anything is written, and only then
    -- (the proxy's appends pay for no subtransaction).
    IF EXISTS (SELECT 1 FROM jsonb_array_elements(p_turns) t WHERE t ? 'at') THEN
        BEGIN
            SELECT min((t->>'at')::timestamptz), max((t->>'at')::timestamptz) INTO v_first, v_last
            FROM jsonb_array_elements(p_turns) t;
        EXCEPTION WHEN invalid_datetime_format OR datetime_field_overflow OR invalid_time_zone_displacement_value THEN
            RAISE EXCEPTION 'a turn''s "at" is not a time: %', SQLERRM USING ERRCODE = 'invalid_datetime_format',
                HINT = 'Give "at" as an ISO 8601 time with its offset, e.g. "2026-11-29T18:30:00Z".';
        END;
        IF v_first < '1900-01-01'::timestamptz OR v_last > now() + interval '1 day' THEN
            RAISE EXCEPTION 'a turn''s "at" is out of range' USING ERRCODE = 'datetime_field_overflow',
                DETAIL = 'It must be between 1900-01-01 and a day from now.';
        END IF;
    END IF;
    -- One call is one checkpoint (one proxied model call): the archive writes a line per checkpoint.
    INSERT INTO ibex_core.session_turns (org_id, session_id, turn_index, role, content, tokens, model, checkpoint,
                                         created_at)
    SELECT p_org, p_session, v_count + t.i::integer, t.v->>'role', t.v->>'content',
           (t.v->>'tokens')::integer, t.v->>'model', v_checkpoint + 1, coalesce((t.v->>'at')::timestamptz, now())
    FROM jsonb_array_elements(p_turns) WITH ORDINALITY AS t(v, i);
    GET DIAGNOSTICS v_added = ROW_COUNT;
    UPDATE ibex_core.sessions s
    SET turn_count = v_count + v_added, checkpoint_count = v_checkpoint + sign(v_added)::integer
    WHERE s.org_id = p_org AND s.id = p_session;
    RETURN v_count + v_added;
END
$$;

-- Marks a session completed: from now on the extraction workers learn from it. Idempotent.
CREATE OR REPLACE FUNCTION ibex_core.complete_session(p_org uuid, p_session uuid)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_status text;
BEGIN
    PERFORM ibex_core.assert_org(p_org);
    UPDATE ibex_core.sessions s SET status = 'completed', completed_at = coalesce(s.completed_at, now())
    WHERE s.org_id = p_org AND s.id = p_session AND s.status IN ('active', 'completed')
    RETURNING s.status INTO v_status;
    IF NOT FOUND THEN
        SELECT s.status INTO v_status FROM ibex_core.sessions s WHERE s.org_id = p_org AND s.id = p_session;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'session % not found', p_session USING ERRCODE = 'no_data_found';
        END IF;
        RAISE EXCEPTION 'session % is %', p_session, v_status USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    RETURN v_status;
END
$$;

-- A session that completes (or gets new turns while completed) wakes the extraction workers
-- when its transaction commits; they also poll, so a missed wake-up only costs latency.
CREATE OR REPLACE FUNCTION ibex_core.sessions_wake_extraction() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- No NOTIFY: any session may LISTEN on any channel, so a payload would show every org's
    -- session ids to every login; the workers are woken through their latches instead.
    PERFORM ibex_wake_extraction_workers();
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER sessions_wake_extraction AFTER UPDATE OF status, turn_count ON ibex_core.sessions
    FOR EACH ROW WHEN (NEW.status = 'completed' AND NEW.last_extracted_turn < NEW.turn_count)
    EXECUTE FUNCTION ibex_core.sessions_wake_extraction();

-- Applications write only through functions (migration 0016): this one runs with its owner's
-- privileges, for the caller's org alone (assert_org, and row-level security forced on the owner).
ALTER FUNCTION ibex_core.ensure_session SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp;
ALTER FUNCTION ibex_core.append_turns SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp;
ALTER FUNCTION ibex_core.complete_session SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp;
REVOKE ALL ON FUNCTION ibex_core.ensure_session, ibex_core.append_turns, ibex_core.complete_session FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ibex_core.ensure_session, ibex_core.append_turns, ibex_core.complete_session TO ibex_app;

-- The extension's wake-up function is SECURITY DEFINER (it sets the workers' latches); like every
-- SECURITY DEFINER function it runs with a pinned search_path, so no object of the caller's can
-- stand in for one it uses. It belongs to the extension's owner, hence RESET ROLE.
RESET ROLE;
ALTER FUNCTION public.ibex_wake_extraction_workers() SET search_path = pg_catalog, pg_temp;
