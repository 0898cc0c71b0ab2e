-- IBEX 0013: the hot cache forgets what was forgotten, however it was forgotten.
--
-- Every change of a memory that the hot cache holds (status, content, scores' inputs) now
-- writes an outbox event from a trigger (sql/api/hot_cache_invalidation.sql), so a DBA's UPDATE
-- or a conflict resolution reaches Redis like a forget does. Deletions cannot use the outbox:
-- when an org is purged its outbox rows go with it (ON DELETE CASCADE), and a new row would
-- reference an org that no longer exists. They go to this queue instead, which has no foreign
-- key: a row with an agent recomputes that agent's hot set, a row without one removes every key
-- of the org from Redis. Only the sidecar reads it.
SET LOCAL ROLE ibex_owner;

CREATE TABLE ibex_ops.hot_cache_evictions (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id        uuid NOT NULL,
    agent_id      uuid,
    reason        text NOT NULL CHECK (reason IN ('memories deleted', 'org deleted', 'org purged')),
    requested_at  timestamptz NOT NULL DEFAULT now()
);

REVOKE ALL ON ibex_ops.hot_cache_evictions FROM PUBLIC;
RESET ROLE;

GRANT USAGE ON SCHEMA ibex_ops TO ibex_sidecar;
-- UPDATE only for the row locks the consumer takes (SELECT ... FOR UPDATE SKIP LOCKED).
GRANT SELECT, UPDATE, DELETE ON ibex_ops.hot_cache_evictions TO ibex_sidecar;
