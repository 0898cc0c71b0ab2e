-- Session archives (migration 0019): what the sidecar's archive worker calls, and what queues
-- archiving and the deletion of archives.
--
--   * completing a session writes an `archive` outbox event in the same transaction: completion
--     never waits for S3, and an archive is never forgotten;
--   * the worker claims events (leases, SKIP LOCKED: several sidecars may run), reads the turns
--     inside the session's org, writes the object, then records it here;
--   * deleting a session (GDPR), an agent or an org queues its objects' deletion in
--     ibex_ops.archive_deletions, retried until S3 confirms;
--   * after the retention, an archived and fully extracted session's turn contents are cleared.
--
-- The worker's functions read and change every org's rows: SECURITY DEFINER, owned by
-- ibex_system, search_path pinned, executable by ibex_sidecar alone (like hot_cache_queue.sql).
SET LOCAL ROLE ibex_owner;

-- A session that completes is queued for archiving (the outbox event of its transaction).
CREATE OR REPLACE FUNCTION ibex_core.sessions_enqueue_archive() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ibex_core.notify_outbox(NEW.org_id, 'archive', 'session.completed', NEW.id,
                                    jsonb_build_object('agent_id', NEW.agent_id));
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER sessions_enqueue_archive AFTER UPDATE OF status ON ibex_core.sessions
    FOR EACH ROW WHEN (NEW.status = 'completed' AND OLD.status IS DISTINCT FROM 'completed')
    EXECUTE FUNCTION ibex_core.sessions_enqueue_archive();

-- The object-key prefix of an org, an agent or a session: "{org}/{agent}/{session}/".
CREATE OR REPLACE FUNCTION ibex_core.archive_prefix(p_org uuid, p_agent uuid DEFAULT NULL, p_session uuid DEFAULT NULL)
RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT p_org::text || '/' || coalesce(p_agent::text || '/', '') || coalesce(p_session::text || '/', '')
$$;

-- GDPR deletion of one session: its turns, the memories learned from it (with their versions,
-- relationships and embeddings), its usage rows, pending events and dead letters, and the
-- archive objects (queued: the sidecar deletes them and records S3's confirmation). Answers the
-- receipt of what went, counted in the same transaction.
CREATE OR REPLACE FUNCTION ibex_core.delete_session(p_org uuid, p_session uuid)
RETURNS jsonb
LANGUAGE plpgsql AS $$
DECLARE
    s ibex_core.sessions%ROWTYPE;
    v_memories uuid[];
    v_receipt jsonb;
    v_deletion bigint;
BEGIN
    PERFORM ibex_core.assert_org(p_org);
    SELECT * INTO s FROM ibex_core.sessions x WHERE x.org_id = p_org AND x.id = p_session FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'session % not found', p_session USING ERRCODE = 'no_data_found';
    END IF;
    v_memories := ARRAY(SELECT m.id FROM ibex_core.memories m WHERE m.org_id = p_org AND m.source_session_id = p_session);
    v_receipt := jsonb_build_object(
        'session_id', p_session,
        'agent_id', s.agent_id,
        'turns', (SELECT count(*) FROM ibex_core.session_turns t WHERE t.org_id = p_org AND t.session_id = p_session),
        'memories', cardinality(v_memories),
        'memory_versions', (SELECT count(*) FROM ibex_core.memory_versions v
                            WHERE v.org_id = p_org AND v.memory_id = ANY (v_memories)),
        'usage_events', (SELECT count(*) FROM ibex_core.usage_events u WHERE u.org_id = p_org AND u.session_id = p_session),
        'archive_key', s.archive_key,
        'deleted_at', now());
    -- A memory learned elsewhere that this session's memory superseded keeps its status, without
    -- a pointer to a row that no longer exists.
    UPDATE ibex_core.memories m SET superseded_by = NULL
    WHERE m.org_id = p_org AND m.superseded_by = ANY (v_memories) AND NOT m.id = ANY (v_memories);
    DELETE FROM ibex_core.memories m WHERE m.org_id = p_org AND m.id = ANY (v_memories);
    DELETE FROM ibex_core.memory_reviews r WHERE r.org_id = p_org AND r.source_session_id = p_session;
    DELETE FROM ibex_core.usage_events u WHERE u.org_id = p_org AND u.session_id = p_session;
    DELETE FROM ibex_core.dead_letters d WHERE d.org_id = p_org AND d.reference_id = p_session::text;
    DELETE FROM ibex_core.outbox o WHERE o.org_id = p_org AND o.topic = 'archive' AND o.aggregate_id = p_session;
    DELETE FROM ibex_core.sessions x WHERE x.org_id = p_org AND x.id = p_session;
    INSERT INTO ibex_ops.archive_deletions (org_id, agent_id, session_id, prefix, reason)
    VALUES (p_org, s.agent_id, p_session, ibex_core.archive_prefix(p_org, s.agent_id, p_session), 'session deleted')
    RETURNING id INTO v_deletion;
    RETURN v_receipt || jsonb_build_object('archive_deletion_id', v_deletion);
END
$$;

ALTER FUNCTION ibex_core.delete_session(uuid, uuid) SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp;
REVOKE ALL ON FUNCTION ibex_core.delete_session(uuid, uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ibex_core.delete_session(uuid, uuid) TO ibex_app;

-- Deleting an agent deletes its sessions (foreign keys cascade), so their objects go too.
CREATE OR REPLACE FUNCTION ibex_core.agents_queue_archive_deletion() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ibex_ops.archive_deletions (org_id, agent_id, prefix, reason)
    VALUES (OLD.org_id, OLD.id, ibex_core.archive_prefix(OLD.org_id, OLD.id), 'agent deleted');
    RETURN NULL;
END
$$;
ALTER FUNCTION ibex_core.agents_queue_archive_deletion() SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp;
REVOKE ALL ON FUNCTION ibex_core.agents_queue_archive_deletion() FROM PUBLIC;

-- Not when the whole org goes: platform_delete_org queues the org's prefix once.
CREATE OR REPLACE TRIGGER agents_queue_archive_deletion AFTER DELETE ON ibex_core.agents
    FOR EACH ROW WHEN (pg_trigger_depth() < 1)
    EXECUTE FUNCTION ibex_core.agents_queue_archive_deletion();

RESET ROLE;

-- The archive worker's topic of the shared outbox consumer functions (sql/api/outbox.sql).
CREATE OR REPLACE FUNCTION ibex_core.claim_archive_events(p_limit integer, p_lease_seconds integer)
RETURNS TABLE (event_org uuid, event_id bigint, event_name text, event_aggregate uuid, event_payload jsonb,
               event_attempts integer)
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT * FROM ibex_core.claim_outbox_events('archive', p_limit, p_lease_seconds) $$;

CREATE OR REPLACE FUNCTION ibex_core.retry_archive_events(p_orgs uuid[], p_ids bigint[], p_error text,
                                                          p_delay_seconds integer, p_max_attempts integer)
RETURNS integer
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$ SELECT ibex_core.retry_outbox_events('archive', p_orgs, p_ids, p_error, p_delay_seconds, p_max_attempts) $$;

-- Records the objects written for a batch of sessions and acknowledges their events, in one
-- transaction (one commit per batch, not per session). Answers, per session, whether it was
-- recorded: false when the session is gone (deleted meanwhile) or gained turns the object lacks;
-- the worker then deletes the object it wrote (the event is acknowledged either way: a deleted
-- session needs no archive). A turn count of -1 only acknowledges.
CREATE OR REPLACE FUNCTION ibex_core.record_session_archives(p_orgs uuid[], p_sessions uuid[], p_events bigint[],
                                                             p_keys text[], p_bytes bigint[], p_lines integer[],
                                                             p_sha256 text[], p_turns integer[])
RETURNS TABLE (archived_session uuid, recorded boolean)
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM ibex_core.ack_outbox_events('archive', p_orgs, p_events);
    RETURN QUERY
    WITH a AS (
        SELECT * FROM unnest(p_orgs, p_sessions, p_keys, p_bytes, p_lines, p_sha256, p_turns)
            AS x(org, sess, object_key, object_bytes, object_lines, object_sha256, turns)),
    done AS (
        UPDATE ibex_core.sessions s
        SET archive_key = a.object_key, archived_at = now(), archive_bytes = a.object_bytes,
            archive_lines = a.object_lines, archive_sha256 = a.object_sha256
        FROM a
        WHERE s.org_id = a.org AND s.id = a.sess AND s.turn_count = a.turns AND s.status = 'completed'
        RETURNING s.id)
    SELECT a.sess, EXISTS (SELECT 1 FROM done WHERE done.id = a.sess) FROM a;
END
$$;

-- Clears the turn contents of sessions archived at least p_retention_seconds ago whose
-- extraction has read every turn; keeps roles, tokens, timestamps and each content's SHA-256.
-- Up to p_limit sessions per call; answers how many were cleared.
CREATE OR REPLACE FUNCTION ibex_core.clear_archived_turns(p_retention_seconds bigint, p_limit integer)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_sessions integer;
BEGIN
    WITH due AS (
        SELECT s.org_id, s.id FROM ibex_core.sessions s
        WHERE s.archived_at IS NOT NULL AND s.turns_cleared_at IS NULL
          AND s.archived_at <= now() - make_interval(secs => greatest(coalesce(p_retention_seconds, 0), 0))
          AND s.last_extracted_turn >= s.turn_count
        ORDER BY s.archived_at
        LIMIT least(greatest(coalesce(p_limit, 100), 1), 1000)
        FOR UPDATE OF s SKIP LOCKED),
    turns AS (
        UPDATE ibex_core.session_turns t
        SET content_sha256 = sha256(convert_to(t.content, 'UTF8')), content = ''
        FROM due WHERE t.org_id = due.org_id AND t.session_id = due.id)
    UPDATE ibex_core.sessions s SET turns_cleared_at = now()
    FROM due WHERE s.org_id = due.org_id AND s.id = due.id;
    GET DIAGNOSTICS v_sessions = ROW_COUNT;
    RETURN v_sessions;
END
$$;

-- Pending deletions of archive objects, claimed with a lease like the outbox's events.
CREATE OR REPLACE FUNCTION ibex_core.claim_archive_deletions(p_limit integer, p_lease_seconds integer)
RETURNS TABLE (deletion_id bigint, deletion_prefix text, deletion_attempts integer)
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    WITH picked AS (
        SELECT d.id FROM ibex_ops.archive_deletions d
        WHERE d.confirmed_at IS NULL AND d.available_at <= now()
        ORDER BY d.id
        LIMIT least(greatest(coalesce(p_limit, 10), 1), 100)
        FOR UPDATE SKIP LOCKED)
    UPDATE ibex_ops.archive_deletions d
    SET available_at = now() + make_interval(secs => least(greatest(coalesce(p_lease_seconds, 60), 1), 3600)),
        attempts = d.attempts + 1
    FROM picked WHERE d.id = picked.id
    RETURNING d.id, d.prefix, d.attempts
$$;

-- S3 confirmed: the receipt records the keys that were deleted.
CREATE OR REPLACE FUNCTION ibex_core.confirm_archive_deletion(p_id bigint, p_keys text[])
RETURNS void
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE ibex_ops.archive_deletions d
    SET confirmed_at = now(), deleted_keys = coalesce(d.deleted_keys, '{}') || coalesce(p_keys, '{}'), last_error = NULL
    WHERE d.id = p_id AND d.confirmed_at IS NULL
$$;

-- S3 failed: retried after p_delay_seconds, without an end (a deletion is never given up).
CREATE OR REPLACE FUNCTION ibex_core.retry_archive_deletion(p_id bigint, p_error text, p_delay_seconds integer)
RETURNS void
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE ibex_ops.archive_deletions d
    SET available_at = now() + make_interval(secs => least(greatest(coalesce(p_delay_seconds, 1), 0), 3600)),
        last_error = left(coalesce(p_error, 'unknown error'), 2000)
    WHERE d.id = p_id AND d.confirmed_at IS NULL
$$;

-- One deletion's receipt, for the org that asked (the API checks the caller's org first).
CREATE OR REPLACE FUNCTION ibex_core.archive_deletion(p_org uuid, p_id bigint)
RETURNS TABLE (id bigint, session_id uuid, agent_id uuid, prefix text, reason text, requested_at timestamptz,
               attempts integer, last_error text, confirmed_at timestamptz, deleted_keys text[])
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT d.id, d.session_id, d.agent_id, d.prefix, d.reason, d.requested_at, d.attempts, d.last_error,
           d.confirmed_at, d.deleted_keys
    FROM ibex_ops.archive_deletions d WHERE d.org_id = p_org AND d.id = p_id
$$;

-- What archiving has done and what is pending, across orgs: for operators (the view below) and
-- the sidecar's metrics.
CREATE OR REPLACE FUNCTION ibex_core.archive_status()
RETURNS TABLE (queued bigint, retrying bigint, archived bigint, archived_bytes bigint, failed bigint,
               oldest_pending_age_seconds double precision, cleared bigint, pending_deletions bigint,
               oldest_pending_deletion_age_seconds double precision)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
SELECT
    (SELECT count(*) FROM ibex_core.outbox o WHERE o.topic = 'archive' AND o.processed_at IS NULL) AS queued,
    (SELECT count(*) FROM ibex_core.outbox o WHERE o.topic = 'archive' AND o.processed_at IS NULL AND o.attempts > 0
        AND o.last_error IS NOT NULL) AS retrying,
    (SELECT count(*) FROM ibex_core.sessions s WHERE s.archived_at IS NOT NULL) AS archived,
    (SELECT coalesce(sum(s.archive_bytes), 0) FROM ibex_core.sessions s WHERE s.archived_at IS NOT NULL)::bigint AS archived_bytes,
    (SELECT count(*) FROM ibex_core.outbox o WHERE o.topic = 'archive' AND o.processed_at IS NOT NULL
        AND o.last_error IS NOT NULL) AS failed,
    (SELECT coalesce(extract(epoch FROM now() - min(o.created_at)), 0) FROM ibex_core.outbox o
        WHERE o.topic = 'archive' AND o.processed_at IS NULL)::double precision AS oldest_pending_age_seconds,
    (SELECT count(*) FROM ibex_core.sessions s WHERE s.turns_cleared_at IS NOT NULL) AS cleared,
    (SELECT count(*) FROM ibex_ops.archive_deletions d WHERE d.confirmed_at IS NULL) AS pending_deletions,
    (SELECT coalesce(extract(epoch FROM now() - min(d.requested_at)), 0) FROM ibex_ops.archive_deletions d
        WHERE d.confirmed_at IS NULL)::double precision AS oldest_pending_deletion_age_seconds
$$;

CREATE OR REPLACE VIEW ibex_ops.archive_status AS SELECT * FROM ibex_core.archive_status();

ALTER FUNCTION ibex_core.claim_archive_events(integer, integer) OWNER TO ibex_system;
ALTER FUNCTION ibex_core.retry_archive_events(uuid[], bigint[], text, integer, integer) OWNER TO ibex_system;
ALTER FUNCTION ibex_core.record_session_archives(uuid[], uuid[], bigint[], text[], bigint[], integer[], text[], integer[]) OWNER TO ibex_system;
ALTER FUNCTION ibex_core.clear_archived_turns(bigint, integer) OWNER TO ibex_system;
ALTER FUNCTION ibex_core.claim_archive_deletions(integer, integer) OWNER TO ibex_system;
ALTER FUNCTION ibex_core.confirm_archive_deletion(bigint, text[]) OWNER TO ibex_system;
ALTER FUNCTION ibex_core.retry_archive_deletion(bigint, text, integer) OWNER TO ibex_system;
ALTER FUNCTION ibex_core.archive_deletion(uuid, bigint) OWNER TO ibex_system;
ALTER FUNCTION ibex_core.archive_status() OWNER TO ibex_system;
ALTER VIEW ibex_ops.archive_status OWNER TO ibex_system;
REVOKE ALL ON FUNCTION ibex_core.claim_archive_events(integer, integer),
    ibex_core.retry_archive_events(uuid[], bigint[], text, integer, integer),
    ibex_core.record_session_archives(uuid[], uuid[], bigint[], text[], bigint[], integer[], text[], integer[]),
    ibex_core.clear_archived_turns(bigint, integer),
    ibex_core.claim_archive_deletions(integer, integer),
    ibex_core.confirm_archive_deletion(bigint, text[]),
    ibex_core.retry_archive_deletion(bigint, text, integer),
    ibex_core.archive_deletion(uuid, bigint), ibex_core.archive_status() FROM PUBLIC, ibex_app;
-- The sidecar's alone: they read and change every org's sessions, events and deletions.
GRANT EXECUTE ON FUNCTION ibex_core.claim_archive_events(integer, integer),
    ibex_core.retry_archive_events(uuid[], bigint[], text, integer, integer),
    ibex_core.record_session_archives(uuid[], uuid[], bigint[], text[], bigint[], integer[], text[], integer[]),
    ibex_core.clear_archived_turns(bigint, integer),
    ibex_core.claim_archive_deletions(integer, integer),
    ibex_core.confirm_archive_deletion(bigint, text[]),
    ibex_core.retry_archive_deletion(bigint, text, integer),
    ibex_core.archive_deletion(uuid, bigint), ibex_core.archive_status() TO ibex_sidecar;
REVOKE ALL ON ibex_ops.archive_status FROM PUBLIC;
GRANT SELECT ON ibex_ops.archive_status TO ibex_sidecar;
