-- memory_versions is append-only: UPDATE and DELETE are rejected by trigger (for everyone,
-- superusers included) and by privilege (the application role has only SELECT and INSERT).

INSERT INTO ibex_core.memory_versions (org_id, memory_id, version, change, content, content_hash, category, confidence, status)
SELECT org_id, id, 1, 'created', content, content_hash, category, confidence, status
FROM ibex_core.memories WHERE id = '00000000-0000-0000-0000-0000aaaa0001';

-- As superuser: the trigger refuses.
UPDATE ibex_core.memory_versions SET content = 'rewritten';
DELETE FROM ibex_core.memory_versions;
TRUNCATE ibex_core.memory_versions;

-- As the application role: no privilege to begin with, not even to add a version (history is
-- written by the functions, migration 0016).
SET ROLE ibex_app;
SET ibex.org_id = '00000000-0000-0000-0000-0000000000aa';
SELECT version, change, content FROM ibex_core.memory_versions ORDER BY version;
INSERT INTO ibex_core.memory_versions (org_id, memory_id, version, change, content, content_hash, category, confidence, status)
SELECT org_id, id, 2, 'updated', content, content_hash, category, confidence, status
FROM ibex_core.memories WHERE id = '00000000-0000-0000-0000-0000aaaa0001';
UPDATE ibex_core.memory_versions SET content = 'rewritten';
DELETE FROM ibex_core.memory_versions;
-- The purge switch is superuser-only.
SET ibex.allow_history_purge = on;
RESET ibex.org_id;
RESET ROLE;

-- Directive history behaves the same.
INSERT INTO ibex_core.directives (org_id, id, agent_id, name, content)
VALUES ('00000000-0000-0000-0000-0000000000aa', '00000000-0000-0000-0000-0000aaaad001', '00000000-0000-0000-0000-00000000aa01', 'tone', 'Be brief.');
INSERT INTO ibex_core.directive_versions (org_id, directive_id, version, name, content, status)
VALUES ('00000000-0000-0000-0000-0000000000aa', '00000000-0000-0000-0000-0000aaaad001', 1, 'tone', 'Be brief.', 'active');
UPDATE ibex_core.directive_versions SET content = 'Be verbose.';

SELECT count(*) AS versions_kept FROM ibex_core.memory_versions;
