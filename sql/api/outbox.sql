-- The durable outbox: consumers (hot cache, indexer, archives) read the table; NOTIFY only wakes them.
SET LOCAL ROLE ibex_owner;

CREATE OR REPLACE FUNCTION ibex_core.notify_outbox(p_org uuid, p_topic text, p_event text, p_aggregate uuid, p_payload jsonb)
    RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ibex_core.outbox (org_id, topic, event, aggregate_id, payload)
    VALUES (p_org, p_topic, p_event, p_aggregate, p_payload);
    -- A wake-up only: consumers read the outbox table, so a missed notification loses nothing.
    PERFORM pg_notify('ibex_outbox', p_topic);
END
$$;

-- The functions below belong to ibex_system (they read every org), hence the migration runner.
RESET ROLE;

-- The consumers' side, shared by every topic: claim with a lease, acknowledge, and give back
-- after a failure (then dead letters). Cross-org, so SECURITY DEFINER owned by ibex_system and
-- granted to nobody: each consumer gets a wrapper for its own topic only (hot_cache_queue.sql,
-- archives.sql), so a grant never reaches another topic's events.

-- Claims up to p_limit pending events of the topic, of any org, with a lease: they become
-- invisible to other consumers for p_lease_seconds and count an attempt. A consumer that dies
-- before it acknowledges simply lets the lease run out, and another one gets the events (at
-- least once).
CREATE OR REPLACE FUNCTION ibex_core.claim_outbox_events(p_topic text, p_limit integer, p_lease_seconds integer)
RETURNS TABLE (event_org uuid, event_id bigint, event_name text, event_aggregate uuid, event_payload jsonb,
               event_attempts integer)
LANGUAGE sql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    WITH picked AS (
        SELECT o.org_id, o.id
        FROM ibex_core.outbox o
        WHERE o.topic = p_topic AND o.processed_at IS NULL AND o.available_at <= now()
        ORDER BY o.id
        LIMIT least(greatest(coalesce(p_limit, 100), 1), 1000)
        FOR UPDATE SKIP LOCKED)
    UPDATE ibex_core.outbox o
    SET available_at = now() + make_interval(secs => least(greatest(coalesce(p_lease_seconds, 30), 1), 3600)),
        attempts = o.attempts + 1
    FROM picked
    WHERE o.org_id = picked.org_id AND o.id = picked.id
    RETURNING o.org_id, o.id, o.event, o.aggregate_id, o.payload, o.attempts
$$;

-- Marks claimed events of the topic done. Idempotent: acknowledging twice changes nothing.
CREATE OR REPLACE FUNCTION ibex_core.ack_outbox_events(p_topic text, p_orgs uuid[], p_ids bigint[])
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_done integer;
BEGIN
    UPDATE ibex_core.outbox o SET processed_at = now(), last_error = NULL
    FROM unnest(p_orgs, p_ids) AS a(org_id, id)
    WHERE o.org_id = a.org_id AND o.id = a.id AND o.topic = p_topic AND o.processed_at IS NULL;
    GET DIAGNOSTICS v_done = ROW_COUNT;
    RETURN v_done;
END
$$;

-- Gives claimed events of the topic back after a failure: they are retried after
-- p_delay_seconds, and an event that has failed p_max_attempts times goes to dead_letters
-- instead (visible to operators; the event stays in the outbox, processed, with its error).
CREATE OR REPLACE FUNCTION ibex_core.retry_outbox_events(p_topic text, p_orgs uuid[], p_ids bigint[], p_error text,
                                                         p_delay_seconds integer, p_max_attempts integer)
RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    v_error text := left(coalesce(p_error, 'unknown error'), 2000);
    v_dead integer;
BEGIN
    WITH dead AS (
        UPDATE ibex_core.outbox o SET processed_at = now(), last_error = v_error
        FROM unnest(p_orgs, p_ids) AS a(org_id, id)
        WHERE o.org_id = a.org_id AND o.id = a.id AND o.topic = p_topic AND o.processed_at IS NULL
          AND o.attempts >= greatest(coalesce(p_max_attempts, 10), 1)
        RETURNING o.org_id, o.id, o.topic, o.aggregate_id, o.payload, o.attempts)
    INSERT INTO ibex_core.dead_letters (org_id, source, reference_id, payload, error, attempts)
    SELECT dead.org_id, 'outbox', dead.id::text,
           dead.payload || jsonb_build_object('topic', dead.topic, 'aggregate_id', dead.aggregate_id),
           v_error, dead.attempts
    FROM dead;
    GET DIAGNOSTICS v_dead = ROW_COUNT;
    UPDATE ibex_core.outbox o
    SET available_at = now() + make_interval(secs => least(greatest(coalesce(p_delay_seconds, 1), 0), 3600)),
        last_error = v_error
    FROM unnest(p_orgs, p_ids) AS a(org_id, id)
    WHERE o.org_id = a.org_id AND o.id = a.id AND o.topic = p_topic AND o.processed_at IS NULL;
    RETURN v_dead;
END
$$;

ALTER FUNCTION ibex_core.claim_outbox_events(text, integer, integer) OWNER TO ibex_system;
ALTER FUNCTION ibex_core.ack_outbox_events(text, uuid[], bigint[]) OWNER TO ibex_system;
ALTER FUNCTION ibex_core.retry_outbox_events(text, uuid[], bigint[], text, integer, integer) OWNER TO ibex_system;
REVOKE ALL ON FUNCTION ibex_core.claim_outbox_events(text, integer, integer),
    ibex_core.ack_outbox_events(text, uuid[], bigint[]),
    ibex_core.retry_outbox_events(text, uuid[], bigint[], text, integer, integer) FROM PUBLIC, ibex_app;
