-- Tenant isolation: as the application role (RLS applies, no BYPASSRLS), with org A set, org B's
-- rows are invisible and writes into org B fail; with no org set nothing is visible.

-- Fixtures, written as superuser (superusers bypass RLS).
INSERT INTO ibex_core.orgs (id, name, slug) VALUES
    ('00000000-0000-0000-0000-0000000000aa', 'Org A', 'org-a'),
    ('00000000-0000-0000-0000-0000000000bb', 'Org B', 'org-b');
INSERT INTO ibex_core.agents (org_id, id, name) VALUES
    ('00000000-0000-0000-0000-0000000000aa', '00000000-0000-0000-0000-00000000aa01', 'assistant'),
    ('00000000-0000-0000-0000-0000000000bb', '00000000-0000-0000-0000-00000000bb01', 'assistant');
INSERT INTO ibex_core.memories (org_id, id, agent_id, content, content_hash, embedding, category) VALUES
    ('00000000-0000-0000-0000-0000000000aa', '00000000-0000-0000-0000-0000aaaa0001', '00000000-0000-0000-0000-00000000aa01',
     'A likes tea', ibex_content_hash('A likes tea'), array_fill(0.1, ARRAY[384])::vector, 'declarative'),
    ('00000000-0000-0000-0000-0000000000bb', '00000000-0000-0000-0000-0000bbbb0001', '00000000-0000-0000-0000-00000000bb01',
     'B likes coffee', ibex_content_hash('B likes coffee'), array_fill(0.2, ARRAY[384])::vector, 'declarative');
INSERT INTO ibex_core.sessions (org_id, id, agent_id) VALUES
    ('00000000-0000-0000-0000-0000000000aa', '00000000-0000-0000-0000-0000aaaa5001', '00000000-0000-0000-0000-00000000aa01'),
    ('00000000-0000-0000-0000-0000000000bb', '00000000-0000-0000-0000-0000bbbb5001', '00000000-0000-0000-0000-00000000bb01');

SET ROLE ibex_app;

-- No org set: nothing is visible, nothing can be written (and no table takes a direct write from
-- the application role at all: it writes through functions, migration 0016).
SELECT count(*) AS memories, (SELECT count(*) FROM ibex_core.orgs) AS orgs,
       (SELECT count(*) FROM ibex_core.agents) AS agents FROM ibex_core.memories;
INSERT INTO ibex_core.agents (org_id, name) VALUES ('00000000-0000-0000-0000-0000000000aa', 'sneaky');

-- Acting for org A.
SET ibex.org_id = '00000000-0000-0000-0000-0000000000aa';
SELECT org_id, content FROM ibex_core.memories ORDER BY content;
SELECT name FROM ibex_core.orgs ORDER BY name;
SELECT count(*) AS sessions FROM ibex_core.sessions;

-- Reading org B by its id finds nothing.
SELECT count(*) FROM ibex_core.memories WHERE id = '00000000-0000-0000-0000-0000bbbb0001';

-- Writing into org B fails (directly: no privilege; through a function: not the session's org).
INSERT INTO ibex_core.agents (org_id, name) VALUES ('00000000-0000-0000-0000-0000000000bb', 'intruder');
INSERT INTO ibex_core.memories (org_id, agent_id, content, content_hash, embedding, category) VALUES
    ('00000000-0000-0000-0000-0000000000bb', '00000000-0000-0000-0000-00000000bb01', 'planted',
     ibex_content_hash('planted'), array_fill(0.3, ARRAY[384])::vector, 'declarative');
-- Moving an own row into org B fails too.
UPDATE ibex_core.memories SET org_id = '00000000-0000-0000-0000-0000000000bb'
WHERE id = '00000000-0000-0000-0000-0000aaaa0001';
-- Updates and deletes aimed at org B are refused.
WITH u AS (UPDATE ibex_core.memories SET content = 'hijacked' WHERE id = '00000000-0000-0000-0000-0000bbbb0001' RETURNING 1)
SELECT count(*) AS updated FROM u;
WITH d AS (DELETE FROM ibex_core.memories WHERE id = '00000000-0000-0000-0000-0000bbbb0001' RETURNING 1)
SELECT count(*) AS deleted FROM d;
WITH d AS (DELETE FROM ibex_core.sessions WHERE org_id = '00000000-0000-0000-0000-0000000000bb' RETURNING 1)
SELECT count(*) AS deleted FROM d;
\set VERBOSITY terse
SELECT ibex_core.create_agent('00000000-0000-0000-0000-0000000000bb', 'intruder');
\set VERBOSITY default
-- Writing inside org A works, through a function.
INSERT INTO ibex_core.agents (org_id, name) VALUES ('00000000-0000-0000-0000-0000000000aa', 'second');
SELECT ibex_core.create_agent('00000000-0000-0000-0000-0000000000aa', 'second') IS NOT NULL AS created;
SELECT name FROM ibex_core.agents ORDER BY name;

-- Switching the session to org B shows B's rows only, untouched.
SET ibex.org_id = '00000000-0000-0000-0000-0000000000bb';
SELECT org_id, content FROM ibex_core.memories ORDER BY content;
SELECT count(*) AS sessions FROM ibex_core.sessions;

-- RESET leaves an empty setting behind: still nothing visible.
RESET ibex.org_id;
SELECT count(*) FROM ibex_core.memories;

-- A malformed org id is an error, not a silent empty result.
SET ibex.org_id = 'not-a-uuid';
SELECT count(*) FROM ibex_core.memories;
RESET ibex.org_id;

-- The application role cannot escape: no BYPASSRLS, no ownership, no way to disable RLS.
ALTER TABLE ibex_core.memories DISABLE ROW LEVEL SECURITY;
SET row_security = off;
SELECT count(*) FROM ibex_core.memories;
RESET row_security;

RESET ROLE;

-- The table owner is subject to RLS as well (FORCE ROW LEVEL SECURITY).
SET ROLE ibex_owner;
SELECT count(*) AS owner_sees_without_org FROM ibex_core.memories;
SET ibex.org_id = '00000000-0000-0000-0000-0000000000aa';
SELECT count(*) AS owner_sees_org_a FROM ibex_core.memories;
RESET ibex.org_id;
RESET ROLE;
