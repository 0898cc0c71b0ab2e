-- IBEX 0019: session archives on S3 (the sidecar's archive worker, sql/api/archives.sql).
--   * a completed session's conversation is written once to object storage as NDJSON, one line
--     per checkpoint (one append_turns call, i.e. one proxied model call); the session row keeps
--     the object's key, size, line count and SHA-256;
--   * once archived (and fully extracted), turn contents are cleared after a retention; the
--     turn keeps its role, tokens, timestamps and the SHA-256 of what it said;
--   * deleting a session, an agent or an org queues the deletion of its objects in
--     ibex_ops.archive_deletions, which has no foreign key: the record must outlive the org whose
--     objects it deletes, and is retried until S3 confirms.
SET LOCAL ROLE ibex_owner;

ALTER TABLE ibex_core.session_turns
    ADD COLUMN checkpoint integer CHECK (checkpoint >= 1),
    -- Set when the content is cleared after archiving: the hash of what the turn said.
    ADD COLUMN content_sha256 bytea CHECK (length(content_sha256) = 32);

ALTER TABLE ibex_core.sessions
    ADD COLUMN checkpoint_count integer NOT NULL DEFAULT 0 CHECK (checkpoint_count >= 0),
    ADD COLUMN archive_bytes bigint CHECK (archive_bytes >= 0),
    ADD COLUMN archive_lines integer CHECK (archive_lines >= 0),
    ADD COLUMN archive_sha256 text CHECK (archive_sha256 ~ '^[0-9a-f]{64}$'),
    ADD COLUMN turns_cleared_at timestamptz,
    ADD CONSTRAINT sessions_cleared_only_archived CHECK (turns_cleared_at IS NULL OR archived_at IS NOT NULL);

-- The retention sweep: archived sessions whose turns still hold their contents.
CREATE INDEX sessions_archived_uncleared ON ibex_core.sessions (archived_at)
    WHERE archived_at IS NOT NULL AND turns_cleared_at IS NULL;

CREATE TABLE ibex_ops.archive_deletions (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id          uuid NOT NULL,
    -- What was deleted: a session, an agent's sessions, or the whole org (both NULL).
    agent_id        uuid,
    session_id      uuid,
    -- Every object under this key prefix goes ("{org}/", "{org}/{agent}/" or "{org}/{agent}/{session}/").
    prefix          text NOT NULL CHECK (prefix ~ '^[0-9a-f-]{36}/([0-9a-f-]{36}/([0-9a-f-]{36}/)?)?$'),
    reason          text NOT NULL CHECK (reason IN ('session deleted', 'agent deleted', 'org deleted')),
    requested_at    timestamptz NOT NULL DEFAULT now(),
    available_at    timestamptz NOT NULL DEFAULT now(),
    attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error      text,
    -- Set once S3 confirmed: the keys that were deleted (the receipt).
    confirmed_at    timestamptz,
    deleted_keys    text[]
);
CREATE INDEX archive_deletions_pending ON ibex_ops.archive_deletions (available_at) WHERE confirmed_at IS NULL;
REVOKE ALL ON ibex_ops.archive_deletions FROM PUBLIC;
-- Org deletion (ibex_ops.platform_delete_org, owned by ibex_system) queues its objects' deletion.
GRANT INSERT ON ibex_ops.archive_deletions TO ibex_system;
-- The archive worker records what it archived and clears turn contents after the retention
-- (sql/api/archives.sql, functions owned by ibex_system, which bypasses row-level security).
GRANT UPDATE (archive_key, archived_at, archive_bytes, archive_lines, archive_sha256, turns_cleared_at, updated_at)
    ON ibex_core.sessions TO ibex_system;
GRANT UPDATE (content, content_sha256) ON ibex_core.session_turns TO ibex_system;
GRANT SELECT, UPDATE ON ibex_ops.archive_deletions TO ibex_system;
RESET ROLE;

-- Existing turns: the turns of one append_turns call were inserted in one statement and share
-- their transaction's timestamp, which numbers the checkpoints of sessions recorded before this
-- migration. Run as the migration's superuser: row-level security is forced on the owner.
UPDATE ibex_core.session_turns t SET checkpoint = c.n
FROM (SELECT org_id, id, dense_rank() OVER (PARTITION BY org_id, session_id ORDER BY created_at)::integer AS n
      FROM ibex_core.session_turns) c
WHERE t.org_id = c.org_id AND t.id = c.id;
UPDATE ibex_core.sessions s SET checkpoint_count = c.n
FROM (SELECT org_id, session_id, max(checkpoint) AS n FROM ibex_core.session_turns GROUP BY 1, 2) c
WHERE s.org_id = c.org_id AND s.id = c.session_id;
ALTER TABLE ibex_core.session_turns ALTER COLUMN checkpoint SET NOT NULL;

-- Sessions completed before archives existed are archived too.
INSERT INTO ibex_core.outbox (org_id, topic, event, aggregate_id, payload)
SELECT s.org_id, 'archive', 'session.completed', s.id, jsonb_build_object('agent_id', s.agent_id)
FROM ibex_core.sessions s WHERE s.status = 'completed' AND s.archived_at IS NULL;

GRANT USAGE ON SCHEMA ibex_ops TO ibex_system;
