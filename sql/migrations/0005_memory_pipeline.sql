-- IBEX 0005: the tables behind the memory write pipeline (remember), search, feedback, forget,
-- history and conflicts. The functions themselves are in sql/api/ (remember.sql, search.sql, ...).

-- btree_gin lets one GIN index serve "this agent's memories that contain these words".
CREATE EXTENSION IF NOT EXISTS btree_gin;
-- Operational state of the background workers: not tenant data, not visible to applications.
CREATE SCHEMA IF NOT EXISTS ibex_ops AUTHORIZATION ibex_owner;
REVOKE ALL ON SCHEMA ibex_ops FROM PUBLIC;

SET LOCAL ROLE ibex_owner;

-- Reads record access by appending here, never by updating the memory row: searches do not
-- contend on row locks. The indexing worker folds these rows into access_count and
-- last_accessed_at. No foreign key on purpose: a key check would lock the memory row.
CREATE TABLE ibex_core.memory_access (
    org_id       uuid NOT NULL REFERENCES ibex_core.orgs (id) ON DELETE CASCADE,
    id           bigint GENERATED ALWAYS AS IDENTITY,
    memory_id    uuid NOT NULL,
    accessed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id)
);

-- Document frequencies per agent for the lexical part of relevance (IDF, as in BM25): how many
-- of an agent's active memories contain each lexeme, and how many active memories it has.
-- Maintained by statement triggers on memories.
CREATE TABLE ibex_core.lexeme_stats (
    org_id     uuid NOT NULL,
    agent_id   uuid NOT NULL,
    lexeme     text NOT NULL,
    doc_count  integer NOT NULL CHECK (doc_count >= 0),
    PRIMARY KEY (org_id, agent_id, lexeme),
    FOREIGN KEY (org_id, agent_id) REFERENCES ibex_core.agents (org_id, id) ON DELETE CASCADE
);
CREATE TABLE ibex_core.agent_memory_stats (
    org_id           uuid NOT NULL,
    agent_id         uuid NOT NULL,
    active_memories  integer NOT NULL CHECK (active_memories >= 0),
    PRIMARY KEY (org_id, agent_id),
    FOREIGN KEY (org_id, agent_id) REFERENCES ibex_core.agents (org_id, id) ON DELETE CASCADE
);

-- Row-level security as on every tenant table (0004).
ALTER TABLE ibex_core.memory_access ENABLE ROW LEVEL SECURITY;
ALTER TABLE ibex_core.memory_access FORCE ROW LEVEL SECURITY;
CREATE POLICY org_isolation ON ibex_core.memory_access
    USING (org_id = ibex_core.current_org()) WITH CHECK (org_id = ibex_core.current_org());
ALTER TABLE ibex_core.lexeme_stats ENABLE ROW LEVEL SECURITY;
ALTER TABLE ibex_core.lexeme_stats FORCE ROW LEVEL SECURITY;
CREATE POLICY org_isolation ON ibex_core.lexeme_stats
    USING (org_id = ibex_core.current_org()) WITH CHECK (org_id = ibex_core.current_org());
ALTER TABLE ibex_core.agent_memory_stats ENABLE ROW LEVEL SECURITY;
ALTER TABLE ibex_core.agent_memory_stats FORCE ROW LEVEL SECURITY;
CREATE POLICY org_isolation ON ibex_core.agent_memory_stats
    USING (org_id = ibex_core.current_org()) WITH CHECK (org_id = ibex_core.current_org());

-- One GIN index for full-text search within an agent (btree_gin makes agent_id a GIN key);
-- GIN multi-column indexes also serve conditions on content_tsv alone.
DROP INDEX ibex_core.memories_content_fts;
CREATE INDEX memories_content_fts ON ibex_core.memories USING gin (agent_id, content_tsv);

-- What the workers did, for operators (ibex_ops.indexer_status).
CREATE TABLE ibex_ops.maintenance_log (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    worker       text NOT NULL,
    action       text NOT NULL,
    detail       jsonb NOT NULL DEFAULT '{}',
    error        text,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz
);
CREATE INDEX maintenance_log_action ON ibex_ops.maintenance_log (action, id DESC);

-- One row of lexical statistics to add or remove (sql/api/lexical_stats.sql).
CREATE TYPE ibex_core.memory_stat_delta AS (org_id uuid, agent_id uuid, content_tsv tsvector, delta integer);

GRANT INSERT ON ibex_core.memory_access TO ibex_app;
GRANT SELECT, INSERT, UPDATE ON ibex_core.lexeme_stats, ibex_core.agent_memory_stats TO ibex_app;

RESET ROLE;
