-- The hot cache hears of every change to what it holds, however the change was made: remember,
-- forget, feedback, a conflict resolution, an extraction worker, or an operator's UPDATE or
-- DELETE in psql. The functions no longer announce their own changes; these triggers do.
--
-- The triggers run as whoever changed the row: an IBEX function (SECURITY DEFINER as ibex_owner,
-- which owns the outbox and the eviction queue; row-level security confines it to the caller's
-- org, the org of the row) or a superuser (workers, a DBA in psql, a purge). Applications write
-- no table directly (migration 0016). Not SECURITY DEFINER themselves: as ibex_owner, a DBA's
-- UPDATE without ibex.org_id set would be refused by the outbox's row-level security.
SET LOCAL ROLE ibex_owner;

-- A new memory, or a change of one of the columns a hot-cache entry is made of (updated_at
-- and the access counters are not among them: the access fold would otherwise announce every
-- read; `agent.rescored` covers it).
CREATE OR REPLACE FUNCTION ibex_core.announce_memory_change() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM ibex_core.notify_outbox(NEW.org_id, 'hot_cache',
        CASE WHEN TG_OP = 'INSERT' THEN 'memory.created' ELSE 'memory.changed' END, NEW.id,
        jsonb_build_object('agent_id', NEW.agent_id, 'memory_id', NEW.id, 'status', NEW.status));
    IF TG_OP = 'UPDATE' AND OLD.agent_id <> NEW.agent_id THEN
        PERFORM ibex_core.notify_outbox(OLD.org_id, 'hot_cache', 'memory.changed', OLD.id,
            jsonb_build_object('agent_id', OLD.agent_id, 'memory_id', OLD.id, 'status', NEW.status));
    END IF;
    RETURN NULL;
END
$$;

-- Deleted rows (an operator's DELETE, an agent's or org's purge): one eviction per agent, in a
-- queue without a foreign key, so that it outlives the org (migration 0013).
CREATE OR REPLACE FUNCTION ibex_core.announce_memories_deleted() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO ibex_ops.hot_cache_evictions (org_id, agent_id, reason)
    SELECT DISTINCT g.org_id, g.agent_id, 'memories deleted' FROM gone g;
    PERFORM pg_notify('ibex_outbox', 'hot_cache');
    RETURN NULL;
END
$$;

-- An org marked deleted or removed: every key of the org leaves Redis (hot sets and embedding
-- cache entries).
CREATE OR REPLACE FUNCTION ibex_core.announce_org_gone() RETURNS trigger
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO ibex_ops.hot_cache_evictions (org_id, agent_id, reason)
    VALUES (OLD.id, NULL, CASE WHEN TG_OP = 'DELETE' THEN 'org purged' ELSE 'org deleted' END);
    PERFORM pg_notify('ibex_outbox', 'hot_cache');
    RETURN NULL;
END
$$;

REVOKE ALL ON FUNCTION ibex_core.announce_memory_change(), ibex_core.announce_memories_deleted(),
    ibex_core.announce_org_gone() FROM PUBLIC;

CREATE OR REPLACE TRIGGER memories_announce_insert AFTER INSERT ON ibex_core.memories
    FOR EACH ROW EXECUTE FUNCTION ibex_core.announce_memory_change();

CREATE OR REPLACE TRIGGER memories_announce_update
    AFTER UPDATE OF status, content, category, confidence, useful_count, not_useful_count, embedding, agent_id
    ON ibex_core.memories FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.content IS DISTINCT FROM NEW.content
          OR OLD.category IS DISTINCT FROM NEW.category OR OLD.confidence IS DISTINCT FROM NEW.confidence
          OR OLD.useful_count IS DISTINCT FROM NEW.useful_count
          OR OLD.not_useful_count IS DISTINCT FROM NEW.not_useful_count
          OR OLD.embedding IS DISTINCT FROM NEW.embedding OR OLD.agent_id IS DISTINCT FROM NEW.agent_id)
    EXECUTE FUNCTION ibex_core.announce_memory_change();

CREATE OR REPLACE TRIGGER memories_announce_delete AFTER DELETE ON ibex_core.memories
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT
    EXECUTE FUNCTION ibex_core.announce_memories_deleted();

CREATE OR REPLACE TRIGGER orgs_announce_deleted AFTER UPDATE OF status ON ibex_core.orgs FOR EACH ROW
    WHEN (NEW.status = 'deleted' AND OLD.status <> 'deleted')
    EXECUTE FUNCTION ibex_core.announce_org_gone();

CREATE OR REPLACE TRIGGER orgs_announce_purged AFTER DELETE ON ibex_core.orgs FOR EACH ROW
    EXECUTE FUNCTION ibex_core.announce_org_gone();
