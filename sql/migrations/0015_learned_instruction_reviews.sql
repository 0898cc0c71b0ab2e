-- IBEX 0015: a standing instruction learned from one user's turn waits for review.
--
-- Extraction turns "always answer in Portuguese" into a procedural memory, and procedural
-- memories are injected for every user of the agent. One user could so steer what the agent
-- does for all the others. Procedural memories that extraction learns are queued here instead;
-- an operator or the application approves one (it then goes through remember) or rejects it
-- (sql/api/reviews.sql). Declarative and episodic memories are stored as before.
SET LOCAL ROLE ibex_owner;

CREATE TABLE ibex_core.memory_reviews (
    org_id          uuid NOT NULL REFERENCES ibex_core.orgs (id) ON DELETE CASCADE,
    id              uuid NOT NULL DEFAULT gen_random_uuid(),
    agent_id        uuid NOT NULL,
    -- Redacted, like memory content.
    content         text NOT NULL CHECK (length(content) BETWEEN 1 AND 32768),
    category        text NOT NULL CHECK (category IN ('procedural', 'declarative', 'episodic')),
    confidence      real NOT NULL CHECK (confidence BETWEEN 0 AND 1),
    source_session_id uuid,
    source_turn     integer CHECK (source_turn >= 1),
    -- The user whose turn it was (the session's user), when known.
    user_id         uuid,
    metadata        jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    status          text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'approved', 'rejected')),
    decision        text,
    decided_at      timestamptz,
    memory_id       uuid,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id),
    FOREIGN KEY (org_id, agent_id) REFERENCES ibex_core.agents (org_id, id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, source_session_id) REFERENCES ibex_core.sessions (org_id, id) ON DELETE SET NULL (source_session_id),
    CHECK ((status = 'open') = (decided_at IS NULL))
);
CREATE INDEX memory_reviews_open ON ibex_core.memory_reviews (org_id, agent_id, created_at) WHERE status = 'open';

ALTER TABLE ibex_core.memory_reviews ENABLE ROW LEVEL SECURITY;
ALTER TABLE ibex_core.memory_reviews FORCE ROW LEVEL SECURITY;
CREATE POLICY org_isolation ON ibex_core.memory_reviews
    USING (org_id = (SELECT ibex_core.current_org()))
    WITH CHECK (org_id = (SELECT ibex_core.current_org()));

-- Read only: reviews are written by extraction and decided through the functions.
GRANT SELECT ON ibex_core.memory_reviews TO ibex_app;

RESET ROLE;
