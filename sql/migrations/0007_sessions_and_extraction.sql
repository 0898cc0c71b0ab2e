-- IBEX 0007: recording sessions, and the queue the extraction workers (ibex_pg) take work from.
SET LOCAL ROLE ibex_owner;

------------------------------------------------------------------------------------------------
-- Recording sessions and turns
------------------------------------------------------------------------------------------------

-- Extraction state per session: the worker holding a lease on it, its attempts and the error of
-- the last failure. last_extracted_turn (0002) is the checkpoint: turns up to it are learned.
ALTER TABLE ibex_core.sessions
    ADD COLUMN extraction_attempts integer NOT NULL DEFAULT 0 CHECK (extraction_attempts >= 0),
    ADD COLUMN extraction_lease_until timestamptz,
    ADD COLUMN extraction_next_at timestamptz,
    ADD COLUMN extraction_error text,
    ADD COLUMN extraction_dead boolean NOT NULL DEFAULT false;
DROP INDEX ibex_core.sessions_extraction_queue;
CREATE INDEX sessions_extraction_queue ON ibex_core.sessions (completed_at)
    WHERE status = 'completed' AND last_extracted_turn < turn_count AND NOT extraction_dead;

-- The session of (agent, external id), created on first use. Sessions without an external id
-- are always new.
CREATE FUNCTION ibex_core.ensure_session(p_org uuid, p_agent uuid, p_external_id text DEFAULT NULL,
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
-- active session, numbering them after the last one; returns the session's turn count.
CREATE FUNCTION ibex_core.append_turns(p_org uuid, p_session uuid, p_turns jsonb)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    v_status text;
    v_count integer;
    v_added integer;
BEGIN
    PERFORM ibex_core.assert_org(p_org);
    IF p_turns IS NULL OR jsonb_typeof(p_turns) <> 'array' THEN
        RAISE EXCEPTION 'turns must be a JSON array' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- The row lock numbers concurrent appends one after the other.
    SELECT s.status, s.turn_count INTO v_status, v_count FROM ibex_core.sessions s
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
    INSERT INTO ibex_core.session_turns (org_id, session_id, turn_index, role, content, tokens, model)
    SELECT p_org, p_session, v_count + t.i::integer, t.v->>'role', t.v->>'content',
           (t.v->>'tokens')::integer, t.v->>'model'
    FROM jsonb_array_elements(p_turns) WITH ORDINALITY AS t(v, i);
    GET DIAGNOSTICS v_added = ROW_COUNT;
    UPDATE ibex_core.sessions s SET turn_count = v_count + v_added WHERE s.org_id = p_org AND s.id = p_session;
    RETURN v_count + v_added;
END
$$;

-- Marks a session completed: from now on the extraction workers learn from it. Idempotent.
CREATE FUNCTION ibex_core.complete_session(p_org uuid, p_session uuid)
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

REVOKE ALL ON FUNCTION ibex_core.ensure_session, ibex_core.append_turns, ibex_core.complete_session FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ibex_core.ensure_session, ibex_core.append_turns, ibex_core.complete_session TO ibex_app;

------------------------------------------------------------------------------------------------
-- The extraction queue (used by the "ibex extraction" background workers of ibex_pg)
------------------------------------------------------------------------------------------------

-- A session that completes (or gets new turns while completed) wakes the extraction workers
-- when its transaction commits; they also poll, so a missed wake-up only costs latency.
CREATE FUNCTION ibex_core.sessions_wake_extraction() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ibex_wake_extraction_workers();
    PERFORM pg_notify('ibex_extraction', NEW.id::text);
    RETURN NULL;
END
$$;
CREATE TRIGGER sessions_wake_extraction AFTER UPDATE OF status, turn_count ON ibex_core.sessions
    FOR EACH ROW WHEN (NEW.status = 'completed' AND NEW.last_extracted_turn < NEW.turn_count)
    EXECUTE FUNCTION ibex_core.sessions_wake_extraction();

-- Claims the oldest completed session with turns beyond its checkpoint: never an active one,
-- never one leased by another worker or waiting for a retry. The lease (not a row lock) covers
-- the LLM call, which runs outside any transaction; a worker that dies leaves a lease that
-- expires, and the session is claimed again.
CREATE FUNCTION ibex_ops.claim_extraction(p_worker text, p_lease_seconds integer, p_max_turns integer)
RETURNS TABLE (org_id uuid, session_id uuid, agent_id uuid, from_turn integer, to_turn integer, attempts integer)
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY
    WITH candidate AS (
        SELECT s.org_id, s.id
        FROM ibex_core.sessions s
        WHERE s.status = 'completed' AND s.last_extracted_turn < s.turn_count AND NOT s.extraction_dead
          AND (s.extraction_next_at IS NULL OR s.extraction_next_at <= now())
          AND (s.extraction_lease_until IS NULL OR s.extraction_lease_until < now())
        ORDER BY s.completed_at, s.id
        LIMIT 1
        FOR UPDATE SKIP LOCKED)
    UPDATE ibex_core.sessions s
    SET extraction_lease_until = now() + make_interval(secs => p_lease_seconds),
        metadata = s.metadata || jsonb_build_object('extraction_worker', p_worker)
    FROM candidate c
    WHERE s.org_id = c.org_id AND s.id = c.id
    RETURNING s.org_id, s.id, s.agent_id, s.last_extracted_turn,
              least(s.turn_count, s.last_extracted_turn + p_max_turns), s.extraction_attempts;
END
$$;

-- Moves the checkpoint, in the transaction that wrote the memories: only if it is still where
-- the job started (compare-and-set), so a job that lost its lease to another worker writes
-- nothing (its transaction is rolled back by the caller).
CREATE FUNCTION ibex_ops.finish_extraction(p_org uuid, p_session uuid, p_from integer, p_to integer)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    UPDATE ibex_core.sessions s
    SET last_extracted_turn = p_to, extraction_lease_until = NULL, extraction_next_at = NULL,
        extraction_attempts = 0, extraction_error = NULL
    WHERE s.org_id = p_org AND s.id = p_session AND s.last_extracted_turn = p_from;
    RETURN FOUND;
END
$$;

-- Records a failed attempt: retried after p_delay_ms, or dead-lettered once the attempts are
-- used up (or at once when the error cannot be cured by retrying). Other sessions keep flowing.
CREATE FUNCTION ibex_ops.fail_extraction(p_org uuid, p_session uuid, p_from integer, p_to integer,
                                         p_error text, p_retryable boolean, p_max_retries integer,
                                         p_delay_ms bigint)
RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    v_attempts integer;
BEGIN
    UPDATE ibex_core.sessions s
    SET extraction_attempts = s.extraction_attempts + 1, extraction_error = p_error, extraction_lease_until = NULL,
        extraction_next_at = now() + make_interval(secs => p_delay_ms / 1000.0)
    WHERE s.org_id = p_org AND s.id = p_session AND s.last_extracted_turn = p_from
    RETURNING s.extraction_attempts INTO v_attempts;
    IF NOT FOUND THEN
        RETURN 'stale';
    END IF;
    IF NOT p_retryable OR v_attempts > p_max_retries THEN
        UPDATE ibex_core.sessions s SET extraction_dead = true WHERE s.org_id = p_org AND s.id = p_session;
        INSERT INTO ibex_core.dead_letters (org_id, source, reference_id, payload, error, attempts)
        VALUES (p_org, 'extraction', p_session::text,
                jsonb_build_object('session_id', p_session, 'from_turn', p_from, 'to_turn', p_to, 'retryable', p_retryable),
                p_error, v_attempts);
        PERFORM ibex_ops.bump('extraction', 'dead_lettered', 1);
        RETURN 'dead_lettered';
    END IF;
    PERFORM ibex_ops.bump('extraction', 'retries', 1);
    RETURN 'retry';
END
$$;

-- Gives a dead-lettered session another chance (after fixing the LLM settings, say).
CREATE FUNCTION ibex_ops.retry_extraction(p_org uuid, p_session uuid) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE ibex_core.sessions s
    SET extraction_dead = false, extraction_attempts = 0, extraction_next_at = NULL, extraction_error = NULL
    WHERE s.org_id = p_org AND s.id = p_session AND s.extraction_dead;
    IF FOUND THEN
        UPDATE ibex_core.dead_letters d SET resolved_at = now()
        WHERE d.org_id = p_org AND d.source = 'extraction' AND d.reference_id = p_session::text AND d.resolved_at IS NULL;
        RETURN true;
    END IF;
    RETURN false;
END
$$;

-- Queue depth, work in flight, retries and dead letters of the extraction workers.
CREATE VIEW ibex_ops.extraction_status WITH (security_invoker = true) AS
SELECT
    count(*) FILTER (WHERE s.status = 'completed' AND s.last_extracted_turn < s.turn_count AND NOT s.extraction_dead
                      AND (s.extraction_lease_until IS NULL OR s.extraction_lease_until < now())) AS queued_sessions,
    coalesce(sum(s.turn_count - s.last_extracted_turn) FILTER (
        WHERE s.status = 'completed' AND NOT s.extraction_dead), 0) AS queued_turns,
    count(*) FILTER (WHERE s.extraction_lease_until >= now()) AS in_flight,
    count(*) FILTER (WHERE s.extraction_attempts > 0 AND NOT s.extraction_dead) AS retrying,
    count(*) FILTER (WHERE s.extraction_dead) AS dead_sessions,
    (SELECT count(*) FROM ibex_core.dead_letters d WHERE d.source = 'extraction' AND d.resolved_at IS NULL) AS dead_letters,
    (SELECT coalesce(jsonb_object_agg(c.counter, c.value), '{}') FROM ibex_ops.worker_counters c WHERE c.worker = 'extraction') AS counters,
    (SELECT max(c.updated_at) FROM ibex_ops.worker_counters c WHERE c.worker = 'extraction') AS last_activity_at
FROM ibex_core.sessions s;

GRANT SELECT ON ibex_ops.extraction_status TO ibex_system;
GRANT SELECT ON ibex_core.sessions TO ibex_system;

RESET ROLE;
