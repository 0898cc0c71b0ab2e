-- The schema as migrated from zero: migrations recorded, tables, row-level security, indexes,
-- constraints.

-- Every migration applied, successfully, once.
SELECT version, description, success FROM _sqlx_migrations ORDER BY version;

-- Every file of sql/api applied (functions, triggers and views live there, not in migrations).
SELECT file, length(sha256) AS hash_length FROM ibex_ops.sql_api_files ORDER BY file;

-- Extensions the schema depends on.
SELECT extname, extversion FROM pg_extension WHERE extname IN ('vector', 'ibex_pg') ORDER BY extname;

-- Every table of ibex_core: RLS enabled and forced, at least one policy, owned by ibex_owner.
SELECT c.relname,
       c.relrowsecurity AS rls,
       c.relforcerowsecurity AS forced,
       (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid) AS policies,
       pg_get_userbyid(c.relowner) AS owner
FROM pg_class c
WHERE c.relnamespace = 'ibex_core'::regnamespace AND c.relkind = 'r'
ORDER BY c.relname;

-- Every tenant table carries org_id uuid NOT NULL and its primary key starts with org_id.
SELECT c.relname,
       format_type(a.atttypid, a.atttypmod) AS org_id_type,
       a.attnotnull AS not_null,
       (SELECT a2.attname FROM pg_index i JOIN pg_attribute a2 ON a2.attrelid = i.indrelid AND a2.attnum = i.indkey[0]
        WHERE i.indrelid = c.oid AND i.indisprimary) AS pk_first_column
FROM pg_class c
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'org_id'
WHERE c.relnamespace = 'ibex_core'::regnamespace AND c.relkind = 'r'
ORDER BY c.relname;

-- The policies compare org_id (orgs: id) with the session's org for reads and writes.
SELECT c.relname, p.polname, p.polcmd,
       pg_get_expr(p.polqual, p.polrelid) AS using_expr,
       pg_get_expr(p.polwithcheck, p.polrelid) AS check_expr
FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
WHERE c.relname IN ('orgs', 'memories')
ORDER BY c.relname;

-- Roles: only the sidecar's login logs in (applications use logins of their own, bound to an
-- org, members of the ibex_app group); nothing but ibex_system bypasses RLS.
SELECT rolname, rolcanlogin, rolbypassrls, rolsuper,
       pg_has_role('ibex_sidecar', rolname, 'MEMBER') AS sidecar_is_member
FROM pg_roles WHERE rolname IN ('ibex_owner', 'ibex_app', 'ibex_system', 'ibex_sidecar') ORDER BY rolname;

-- The vector column and its indexes: IVFFlat with vector_cosine_ops and lists=100, GIN full text.
SELECT format_type(atttypid, atttypmod) FROM pg_attribute
WHERE attrelid = 'ibex_core.memories'::regclass AND attname = 'embedding';
SELECT i.relname AS index, pg_get_indexdef(x.indexrelid) AS definition
FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
WHERE x.indrelid = 'ibex_core.memories'::regclass
ORDER BY i.relname;
SELECT pg_get_expr(adbin, adrelid) AS content_tsv_expr FROM pg_attrdef
WHERE adrelid = 'ibex_core.memories'::regclass
  AND adnum = (SELECT attnum FROM pg_attribute WHERE attrelid = 'ibex_core.memories'::regclass AND attname = 'content_tsv');

-- Constraints keep bad data out (as superuser, so RLS is not what stops these rows). Terse
-- errors: the failing-row details carry generated ids and timestamps.
\set VERBOSITY terse
INSERT INTO ibex_core.orgs (id, name, slug) VALUES ('00000000-0000-0000-0000-00000000000a', 'Schema Org', 'schema-org');
INSERT INTO ibex_core.agents (org_id, id, name) VALUES ('00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1', 'agent');
INSERT INTO ibex_core.memories (org_id, agent_id, content, content_hash, embedding, category)
VALUES ('00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1', 'x',
        ibex_content_hash('x'), array_fill(0.1, ARRAY[384])::vector, 'opinion');
INSERT INTO ibex_core.memories (org_id, agent_id, content, content_hash, embedding, category, confidence)
VALUES ('00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1', 'x',
        ibex_content_hash('x'), array_fill(0.1, ARRAY[384])::vector, 'declarative', 1.5);
INSERT INTO ibex_core.memories (org_id, agent_id, content, content_hash, embedding, category, status)
VALUES ('00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1', 'x',
        ibex_content_hash('x'), array_fill(0.1, ARRAY[384])::vector, 'declarative', 'archived');
INSERT INTO ibex_core.memories (org_id, agent_id, content, content_hash, embedding, category)
VALUES ('00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1', 'x',
        'not-a-hash', array_fill(0.1, ARRAY[384])::vector, 'declarative');
INSERT INTO ibex_core.memories (org_id, agent_id, content, content_hash, embedding, category)
VALUES ('00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1', 'x',
        ibex_content_hash('x'), array_fill(0.1, ARRAY[3])::vector, 'declarative');
-- An agent id of another org (or none) is refused by the composite foreign key.
INSERT INTO ibex_core.memories (org_id, agent_id, content, content_hash, embedding, category)
VALUES ('00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000ff', 'x',
        ibex_content_hash('x'), array_fill(0.1, ARRAY[384])::vector, 'declarative');
-- A valid row goes in; the same content again for the same agent is refused while active.
INSERT INTO ibex_core.memories (org_id, agent_id, content, content_hash, embedding, category)
VALUES ('00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1', 'x',
        ibex_content_hash('x'), array_fill(0.1, ARRAY[384])::vector, 'declarative');
INSERT INTO ibex_core.memories (org_id, agent_id, content, content_hash, embedding, category)
VALUES ('00000000-0000-0000-0000-00000000000a', '00000000-0000-0000-0000-0000000000a1', 'X',
        ibex_content_hash('X'), array_fill(0.1, ARRAY[384])::vector, 'declarative');
SELECT count(*) FROM ibex_core.memories;
\set VERBOSITY default
