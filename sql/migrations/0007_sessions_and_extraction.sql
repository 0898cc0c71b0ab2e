-- IBEX 0007: recording sessions, and the queue the extraction workers (ibex_pg) take work from.
-- The functions are in sql/api/sessions.sql and sql/api/extraction_queue.sql.
SET LOCAL ROLE ibex_owner;

-- Extraction state per session: the worker holding a lease on it, its attempts and the error of
-- the last failure. last_extracted_turn (0002) is the checkpoint: turns up to it are learned.
ALTER TABLE ibex_core.sessions
    ADD COLUMN extraction_attempts integer NOT NULL DEFAULT 0 CHECK (extraction_attempts >= 0),
    ADD COLUMN extraction_lease_until timestamptz,
    ADD COLUMN extraction_next_at timestamptz,
    ADD COLUMN extraction_error text,
    ADD COLUMN extraction_dead boolean NOT NULL DEFAULT false;
DROP INDEX ibex_core.sessions_extraction_queue;
CREATE INDEX sessions_extraction_queue ON ibex_core.sessions (completed_at)
    WHERE status = 'completed' AND last_extracted_turn < turn_count AND NOT extraction_dead;

GRANT SELECT ON ibex_core.sessions TO ibex_system;

RESET ROLE;
