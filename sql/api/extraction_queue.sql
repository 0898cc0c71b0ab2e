-- The extraction queue, used by the "ibex extraction" background workers of ibex_pg.
SET LOCAL ROLE ibex_owner;

-- Claims the oldest completed session with turns beyond its checkpoint: never an active one,
-- never one leased by another worker or waiting for a retry. The lease (not a row lock) covers
-- the LLM call, which runs outside any transaction; a worker that dies leaves a lease that
-- expires, and the session is claimed again.
CREATE OR REPLACE FUNCTION ibex_ops.claim_extraction(p_worker text, p_lease_seconds integer, p_max_turns integer)
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
--
-- It starts the worker's write transaction, so it also bounds that transaction's lock waits
-- (set_config local: until commit, including every remember the worker calls next). A session
-- or agent row held by an idle transaction of the org fails the job after 2 s; it is retried
-- with backoff and the worker goes on with other sessions instead of waiting forever.
CREATE OR REPLACE FUNCTION ibex_ops.finish_extraction(p_org uuid, p_session uuid, p_from integer, p_to integer)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    PERFORM set_config('lock_timeout', '2s', true);
    UPDATE ibex_core.sessions s
    SET last_extracted_turn = p_to, extraction_lease_until = NULL, extraction_next_at = NULL,
        extraction_attempts = 0, extraction_error = NULL
    WHERE s.org_id = p_org AND s.id = p_session AND s.last_extracted_turn = p_from;
    RETURN FOUND;
END
$$;

-- Records a failed attempt: retried after p_delay_ms, or dead-lettered once the attempts are
-- used up (or at once when the error cannot be cured by retrying). Other sessions keep flowing.
CREATE OR REPLACE FUNCTION ibex_ops.fail_extraction(p_org uuid, p_session uuid, p_from integer, p_to integer,
                                         p_error text, p_retryable boolean, p_max_retries integer,
                                         p_delay_ms bigint)
RETURNS text LANGUAGE plpgsql SET lock_timeout = '2s' AS $$
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
CREATE OR REPLACE FUNCTION ibex_ops.retry_extraction(p_org uuid, p_session uuid) RETURNS boolean
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
CREATE OR REPLACE VIEW ibex_ops.extraction_status WITH (security_invoker = true) AS
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
