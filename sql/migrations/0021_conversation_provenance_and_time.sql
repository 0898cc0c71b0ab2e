-- IBEX 0021: learning from conversations keeps where and when (issue 14).
--   * source_turns: the exact session turns a memory (or a learned instruction waiting for
--     review) came from; source_turn stays, the first of them, for older readers;
--   * occurred_at: when what the memory says happened (the turn's time for learned memories,
--     given by the writer for remember); NULL means "when it was stored" (created_at);
--   * remember, learn and search gain these as parameters, so their old signatures go
--     (sql/api re-creates them).
SET LOCAL ROLE ibex_owner;

ALTER TABLE ibex_core.memories
    ADD COLUMN source_turns integer[]
        CHECK (cardinality(source_turns) BETWEEN 1 AND 256 AND 1 <= ALL (source_turns)),
    ADD COLUMN occurred_at timestamptz;
ALTER TABLE ibex_core.memory_reviews
    ADD COLUMN source_turns integer[]
        CHECK (cardinality(source_turns) BETWEEN 1 AND 256 AND 1 <= ALL (source_turns)),
    ADD COLUMN occurred_at timestamptz;

-- memory_history shows where a memory came from: its 'created' version carries it too.
ALTER TABLE ibex_core.memory_versions
    ADD COLUMN source_session_id uuid,
    ADD COLUMN source_turns integer[]
        CHECK (cardinality(source_turns) BETWEEN 1 AND 256 AND 1 <= ALL (source_turns)),
    ADD COLUMN occurred_at timestamptz;

-- Memories learned before this release keep source_turn alone: it named the last turn of their
-- extraction batch, not the turn they came from, so it is not copied into source_turns (and
-- memory_versions is append-only).

-- Memory -> turns is the column; turns -> memories is this index (the session's learned memories).
CREATE INDEX memories_source_session ON ibex_core.memories (org_id, source_session_id)
    WHERE source_session_id IS NOT NULL;

DROP FUNCTION IF EXISTS ibex_core.remember(uuid, uuid, text, text, real, text[], uuid, integer, jsonb);
DROP FUNCTION IF EXISTS ibex_core.learn(uuid, uuid, text, text, real, uuid, integer, jsonb);
DROP FUNCTION IF EXISTS ibex_core.search(uuid, uuid, text, integer, text[], text[], timestamptz, timestamptz, boolean);
DROP FUNCTION IF EXISTS ibex_core.search_by_vector(uuid, uuid, text, vector, integer, text[], text[], timestamptz,
                                         timestamptz, boolean);

RESET ROLE;
