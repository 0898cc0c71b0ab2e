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

