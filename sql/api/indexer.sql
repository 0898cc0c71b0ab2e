-- The work of the indexing background worker (ibex_pg, "ibex indexer"), as SQL it calls once per
-- poll, and a view of what it has done and what is pending. The worker runs as the bootstrap
-- superuser across all orgs; these functions are not granted to applications.

-- link_related sets ivfflat.* (see search.sql).
LOAD 'vector';
SET LOCAL ROLE ibex_owner;

CREATE OR REPLACE FUNCTION ibex_ops.bump(p_worker text, p_counter text, p_by bigint) RETURNS void
    LANGUAGE sql AS $$
    INSERT INTO ibex_ops.worker_counters AS c (worker, counter, value) VALUES (p_worker, p_counter, p_by)
    ON CONFLICT (worker, counter) DO UPDATE SET value = c.value + excluded.value, updated_at = now()
$$;

-- Links one new memory to its closest active neighbours of the same agent that are related but
-- neither near-duplicates nor conflicts (those edges are drawn by remember itself).
CREATE OR REPLACE FUNCTION ibex_ops.link_related(p_org uuid, p_memory uuid) RETURNS integer
    LANGUAGE plpgsql
    SET ivfflat.probes = 10
    SET ivfflat.iterative_scan = relaxed_order
AS $$
DECLARE
    v_related float8 := current_setting('ibex.related_threshold')::float8;
    v_conflict float8 := current_setting('ibex.conflict_threshold')::float8;
    v_linked integer;
BEGIN
    INSERT INTO ibex_core.memory_relationships (org_id, source_memory_id, target_memory_id, kind, similarity)
    SELECT m.org_id, m.id, n.id, 'related_to', n.sim
    FROM ibex_core.memories m
    CROSS JOIN LATERAL (
        SELECT o.id, (1 - (o.embedding <=> m.embedding))::real AS sim
        FROM ibex_core.memories o
        WHERE o.org_id = m.org_id AND o.agent_id = m.agent_id AND o.status = 'active' AND o.id <> m.id
        ORDER BY o.embedding <=> m.embedding
        LIMIT 5) n
    WHERE m.org_id = p_org AND m.id = p_memory AND m.status = 'active'
      AND n.sim >= v_related AND n.sim <= v_conflict
      -- related_to is symmetric: one edge per pair, whichever memory came first.
      AND NOT EXISTS (SELECT 1 FROM ibex_core.memory_relationships r
                      WHERE r.org_id = m.org_id AND r.kind = 'related_to'
                        AND r.source_memory_id = n.id AND r.target_memory_id = m.id)
    ON CONFLICT (org_id, source_memory_id, target_memory_id, kind) DO NOTHING;
    GET DIAGNOSTICS v_linked = ROW_COUNT;
    RETURN v_linked;
END
$$;

-- Processes up to p_limit pending index events. Each event runs in its own subtransaction: a
-- failing event is retried with exponential backoff (5 attempts), then dead-lettered; the others
-- go on. Claimed with SKIP LOCKED so a second worker (or a manual call) never blocks. An event
-- that waits on a row lock of its org's transactions gives up after lock_timeout and is retried
-- later, so an idle transaction of one org never stops the indexer for the others.
CREATE OR REPLACE FUNCTION ibex_ops.process_index_events(p_limit integer) RETURNS integer
    LANGUAGE plpgsql SET lock_timeout = '1s' AS $$
DECLARE
    e record;
    v_done integer := 0;
    v_linked integer := 0;
BEGIN
    FOR e IN
        SELECT o.org_id, o.id, o.event, o.aggregate_id, o.attempts, o.payload
        FROM ibex_core.outbox o
        WHERE o.topic = 'index' AND o.processed_at IS NULL AND o.available_at <= now()
        ORDER BY o.id
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED
    LOOP
        BEGIN
            IF e.event = 'memory.created' THEN
                v_linked := v_linked + ibex_ops.link_related(e.org_id, e.aggregate_id);
            ELSE
                RAISE EXCEPTION 'unknown index event: %', e.event;
            END IF;
            UPDATE ibex_core.outbox SET processed_at = now(), attempts = e.attempts + 1
            WHERE org_id = e.org_id AND id = e.id;
        EXCEPTION WHEN OTHERS THEN
            IF e.attempts + 1 >= 5 THEN
                INSERT INTO ibex_core.dead_letters (org_id, source, reference_id, payload, error, attempts)
                VALUES (e.org_id, 'index', e.id::text, e.payload, SQLERRM, e.attempts + 1);
                UPDATE ibex_core.outbox SET processed_at = now(), attempts = e.attempts + 1, last_error = SQLERRM
                WHERE org_id = e.org_id AND id = e.id;
                PERFORM ibex_ops.bump('indexer', 'events_dead_lettered', 1);
            ELSE
                UPDATE ibex_core.outbox
                SET attempts = e.attempts + 1, last_error = SQLERRM,
                    available_at = now() + make_interval(secs => 2 ^ (e.attempts + 1))
                WHERE org_id = e.org_id AND id = e.id;
                PERFORM ibex_ops.bump('indexer', 'event_failures', 1);
            END IF;
        END;
        v_done := v_done + 1;
    END LOOP;
    IF v_done > 0 THEN
        PERFORM ibex_ops.bump('indexer', 'events_processed', v_done);
        PERFORM ibex_ops.bump('indexer', 'related_links', v_linked);
    END IF;
    RETURN v_done;
END
$$;

-- Folds recorded reads into access_count and last_accessed_at, one UPDATE per memory per batch
-- (one writer, so reads never wait on row locks), and asks the hot cache to re-rank the agents.
-- A memory whose row another transaction holds (any org's, maybe idle on purpose) is skipped with
-- its reads, which stay queued for a later batch: one tenant's lock never stops the fold for the
-- others. lock_timeout is the backstop for any lock not taken with SKIP LOCKED.
CREATE OR REPLACE FUNCTION ibex_ops.fold_memory_access(p_limit integer) RETURNS integer
    LANGUAGE plpgsql SET lock_timeout = '1s' AS $$
DECLARE
    v_rows integer;
BEGIN
    WITH claimed AS (
        SELECT x.org_id, x.id
        FROM ibex_core.memory_access x
        JOIN ibex_core.memories m ON m.org_id = x.org_id AND m.id = x.memory_id
        ORDER BY x.id
        LIMIT p_limit
        FOR UPDATE OF x SKIP LOCKED
        FOR NO KEY UPDATE OF m SKIP LOCKED),
    batch AS (
        DELETE FROM ibex_core.memory_access a
        WHERE (a.org_id, a.id) IN (SELECT c.org_id, c.id FROM claimed c)
        RETURNING a.org_id, a.memory_id, a.accessed_at),
    per_memory AS (
        SELECT org_id, memory_id, count(*) AS n, max(accessed_at) AS last FROM batch GROUP BY 1, 2),
    updated AS (
        UPDATE ibex_core.memories m
        SET access_count = m.access_count + p.n,
            last_accessed_at = greatest(m.last_accessed_at, p.last)
        FROM per_memory p
        WHERE m.org_id = p.org_id AND m.id = p.memory_id
        RETURNING m.org_id, m.agent_id),
    agents AS (
        INSERT INTO ibex_core.outbox (org_id, topic, event, aggregate_id, payload)
        SELECT DISTINCT org_id, 'hot_cache', 'agent.rescored', agent_id, jsonb_build_object('agent_id', agent_id)
        FROM updated
        RETURNING 1)
    SELECT count(*) INTO v_rows FROM batch;
    IF v_rows > 0 THEN
        PERFORM pg_notify('ibex_outbox', 'hot_cache');
        PERFORM ibex_ops.bump('indexer', 'accesses_folded', v_rows);
    END IF;
    RETURN v_rows;
END
$$;

-- Whether the IVFFlat index should be rebuilt, and with how many lists.
--   * lists grow with the table: target = rows / 1000 (pgvector's guidance up to 1M rows),
--     never below 100 and never above ibex.ivfflat_max_lists;
--   * centroids are trained on the rows present at build time, so the index is rebuilt when
--     the table has grown to twice the rows it was built on (the migration builds it on an
--     empty table), once there are at least 10 rows per list to train on.
CREATE OR REPLACE FUNCTION ibex_ops.ivfflat_plan()
RETURNS TABLE (rebuild boolean, live_rows bigint, current_lists integer, target_lists integer,
               rows_at_build bigint, reason text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_max integer := current_setting('ibex.ivfflat_max_lists')::integer;
BEGIN
    SELECT greatest(c.reltuples, 0)::bigint INTO live_rows FROM pg_class c WHERE c.oid = 'ibex_core.memories'::regclass;
    SELECT coalesce(substring(array_to_string(i.reloptions, ',') FROM 'lists=(\d+)')::integer, 100) INTO current_lists
    FROM pg_class i WHERE i.oid = 'ibex_core.memories_embedding_ivfflat'::regclass;
    SELECT coalesce((l.detail->>'rows')::bigint, 0) INTO rows_at_build
    FROM (SELECT 1) one
    LEFT JOIN LATERAL (SELECT detail FROM ibex_ops.maintenance_log
                       WHERE action = 'ivfflat_rebuild' AND error IS NULL AND finished_at IS NOT NULL
                       ORDER BY id DESC LIMIT 1) l ON true;
    target_lists := least(v_max, greatest(100, (live_rows / 1000)::integer));
    IF live_rows < 10 * target_lists THEN
        rebuild := false; reason := 'too few rows to train centroids';
    ELSIF target_lists >= 2 * current_lists THEN
        rebuild := true; reason := format('table outgrew %s lists', current_lists);
    ELSIF live_rows >= 2 * rows_at_build THEN
        rebuild := true; reason := format('centroids trained on %s rows, table has %s', rows_at_build, live_rows);
    ELSE
        rebuild := false; reason := 'index fits the table';
    END IF;
    RETURN NEXT;
END
$$;

-- Deletes processed outbox rows older than the retention.
CREATE OR REPLACE FUNCTION ibex_ops.cleanup_outbox(p_hours integer) RETURNS integer
    LANGUAGE plpgsql AS $$
DECLARE
    v_deleted integer;
BEGIN
    DELETE FROM ibex_core.outbox WHERE processed_at < now() - make_interval(hours => p_hours);
    GET DIAGNOSTICS v_deleted = ROW_COUNT;
    RETURN v_deleted;
END
$$;

-- What the indexer has done and what is pending (for operators; superuser or ibex_system).
-- security_invoker: the caller's RLS applies, so superusers and ibex_system (BYPASSRLS) see
-- every org while the owner role, bound by FORCE ROW LEVEL SECURITY, would see none.
CREATE OR REPLACE VIEW ibex_ops.indexer_status WITH (security_invoker = true) AS
SELECT
    (SELECT count(*) FROM ibex_core.outbox WHERE topic = 'index' AND processed_at IS NULL) AS pending_index_events,
    (SELECT count(*) FROM ibex_core.outbox WHERE topic = 'index' AND processed_at IS NULL AND attempts > 0) AS retrying_index_events,
    (SELECT count(*) FROM ibex_core.outbox WHERE topic = 'hot_cache' AND processed_at IS NULL) AS pending_hot_cache_events,
    (SELECT count(*) FROM ibex_core.memory_access) AS pending_access_rows,
    (SELECT count(*) FROM ibex_core.dead_letters WHERE source = 'index' AND resolved_at IS NULL) AS index_dead_letters,
    (SELECT coalesce(jsonb_object_agg(counter, value), '{}') FROM ibex_ops.worker_counters WHERE worker = 'indexer') AS counters,
    (SELECT max(updated_at) FROM ibex_ops.worker_counters WHERE worker = 'indexer') AS last_activity_at,
    p.live_rows, p.current_lists, p.target_lists, p.rows_at_build, p.rebuild AS rebuild_due, p.reason AS rebuild_reason,
    (SELECT to_jsonb(l) - 'worker' FROM ibex_ops.maintenance_log l WHERE l.action = 'ivfflat_rebuild'
     ORDER BY l.id DESC LIMIT 1) AS last_rebuild,
    (SELECT to_jsonb(l) - 'worker' FROM ibex_ops.maintenance_log l WHERE l.error IS NOT NULL
     ORDER BY l.id DESC LIMIT 1) AS last_error
FROM ibex_ops.ivfflat_plan() p;

GRANT EXECUTE ON FUNCTION ibex_ops.ivfflat_plan() TO ibex_system;
GRANT SELECT ON ibex_ops.indexer_status TO ibex_system;
