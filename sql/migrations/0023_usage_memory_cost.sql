-- IBEX 0023: what the memories of each proxied call's context cost (issue 16).
--   * memory_tokens and memory_count: the packed memories' tokens in the context message and
--     how many were packed; memory_source: where they came from ('hot', 'cold', 'both', or
--     'none' when no memory was packed: a greeting, a shed or a degraded call);
--   * NULL in all three: a call recorded before this release;
--   * record_usage gains them as parameters, so its old signature goes (sql/api re-creates it).
SET LOCAL ROLE ibex_owner;

ALTER TABLE ibex_core.usage_events
    ADD COLUMN memory_tokens integer CHECK (memory_tokens >= 0),
    ADD COLUMN memory_count integer CHECK (memory_count >= 0),
    ADD COLUMN memory_source text CHECK (memory_source IN ('none', 'hot', 'cold', 'both'));

DROP FUNCTION IF EXISTS ibex_core.record_usage(uuid, uuid, uuid, uuid, text, integer, integer, integer, integer, boolean);
RESET ROLE;
