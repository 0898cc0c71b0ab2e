-- The memory write pipeline and the memory API, path by path: created, duplicate, superseded,
-- conflict; validation errors; search with filters; feedback; forget; history; conflicts;
-- cross-org attempts; and no PII in stored rows. Searches pass p_record_access => false and
-- scores are rounded, so the output does not depend on the indexing worker or the clock.

INSERT INTO ibex_core.orgs (id, name, slug) VALUES
    ('00000000-0000-0000-0000-0000000000c1', 'Pipeline Org', 'pipeline-org'),
    ('00000000-0000-0000-0000-0000000000c2', 'Other Org', 'other-org');
INSERT INTO ibex_core.agents (org_id, id, name, status) VALUES
    ('00000000-0000-0000-0000-0000000000c1', '00000000-0000-0000-0000-0000000c1a01', 'assistant', 'active'),
    ('00000000-0000-0000-0000-0000000000c1', '00000000-0000-0000-0000-0000000c1a02', 'retired', 'archived'),
    ('00000000-0000-0000-0000-0000000000c2', '00000000-0000-0000-0000-0000000c2a01', 'assistant', 'active');

SET ROLE ibex_app;
SET ibex.org_id = '00000000-0000-0000-0000-0000000000c1';
\set org '''00000000-0000-0000-0000-0000000000c1'''
\set agent '''00000000-0000-0000-0000-0000000c1a01'''

-- created: PII is redacted before anything else sees the text; tags are normalised.
SELECT path, superseded_ids, conflicts
FROM ibex_core.remember(:org, :agent, 'Contact the user at jane.doe@example.com or 555-123-4567, SSN 123-45-6789.',
                        'declarative', 0.9, ARRAY['Contact', ' PERSONAL ', 'contact']);
SELECT content, category, confidence, status, version FROM ibex_core.memories ORDER BY created_at;
SELECT t.name FROM ibex_core.memory_tags mt JOIN ibex_core.tags t ON t.id = mt.tag_id ORDER BY t.name;

-- duplicate: the same text up to case, spacing and PII values returns the existing memory.
SELECT r.path, r.memory_id = m.id AS same_memory
FROM ibex_core.remember(:org, :agent, 'contact the USER at bob@example.org   or (555) 987-6543, SSN 234-56-7890.') r,
     ibex_core.memories m WHERE m.status = 'active';
SELECT count(*) AS memories FROM ibex_core.memories;

SELECT path FROM ibex_core.remember(:org, :agent, 'The user prefers green tea over coffee.', 'declarative', 0.9, ARRAY['drinks']);

-- superseded: a near-duplicate (cosine > 0.92) replaces the older memory; nothing is lost.
SELECT path FROM ibex_core.remember(:org, :agent, 'The user has a dentist appointment on Friday.', 'episodic', 0.8);
SELECT path, cardinality(superseded_ids) AS superseded, conflicts
FROM ibex_core.remember(:org, :agent, 'The user has a dentist appointment on Monday.', 'episodic', 0.8);
SELECT content, status, superseded_by IS NOT NULL AS has_successor, version
FROM ibex_core.memories WHERE category = 'episodic' ORDER BY created_at;
SELECT r.kind, round(r.similarity::numeric, 2) AS similarity, s.content AS newer, t.content AS older
FROM ibex_core.memory_relationships r
JOIN ibex_core.memories s ON s.id = r.source_memory_id JOIN ibex_core.memories t ON t.id = r.target_memory_id
WHERE r.kind = 'supersedes';

-- A similar memory (cosine between 0.85 and 0.92) in another category is no conflict.
SELECT path FROM ibex_core.remember(:org, :agent, 'The user is 34 years old.');
SELECT path, jsonb_array_length(conflicts) AS conflicts
FROM ibex_core.remember(:org, :agent, 'The user is 43 years old.', 'episodic');
-- forget: soft delete with a version record; forgetting twice changes nothing.
SELECT id AS age43 FROM ibex_core.memories WHERE content = 'The user is 43 years old.' \gset
SELECT status, version FROM ibex_core.forget(:org, :'age43', 'recorded in the wrong category');
SELECT status, version FROM ibex_core.forget(:org, :'age43');
SELECT version, change, status, reason FROM ibex_core.memory_history(:org, :'age43');

-- conflict: the same text again, now declarative like the other: a conflicts_with edge and an
-- open conflict (a forgotten memory does not count as a duplicate).
SELECT path, cardinality(superseded_ids) AS superseded, jsonb_array_length(conflicts) AS conflicts,
       (conflicts->0->>'similarity')::numeric BETWEEN 0.85 AND 0.92 AS similarity_in_conflict_band
FROM ibex_core.remember(:org, :agent, 'The user is 43 years old.');
SELECT memory_content, conflicting_content, status FROM ibex_core.list_conflicts(:org);
SELECT count(*) AS conflict_edges FROM ibex_core.memory_relationships WHERE kind = 'conflicts_with';

-- Standing instruction with a tag, for the filters below.
SELECT path FROM ibex_core.remember(:org, :agent, 'Always answer in formal English and cite sources.', 'procedural', 0.95, ARRAY['style']);

-- Validation: each failure is a SQLSTATE error with a hint where one helps.
\set VERBOSITY default
SELECT * FROM ibex_core.remember(:org, :agent, '   ');
SELECT * FROM ibex_core.remember(:org, :agent, repeat('x', 9000));
SELECT * FROM ibex_core.remember(:org, :agent, 'ok', 'opinion');
SELECT * FROM ibex_core.remember(:org, :agent, 'ok', 'declarative', 1.5);
SELECT * FROM ibex_core.remember(:org, :agent, 'ok', 'declarative', 0.5, ARRAY['fine', NULL]);
SELECT * FROM ibex_core.remember(:org, :agent, 'ok', 'declarative', 0.5, '{}', NULL, NULL, '[1, 2]');
SELECT * FROM ibex_core.remember(:org, '00000000-0000-0000-0000-0000000c1aff', 'ok');
SELECT * FROM ibex_core.remember(:org, '00000000-0000-0000-0000-0000000c1a02', 'ok');
SELECT * FROM ibex_core.search(:org, :agent, 'tea', 0);
SELECT * FROM ibex_core.search(:org, :agent, 'tea', 5, ARRAY['gossip']);
\set VERBOSITY terse

-- search: ranked by the composite score, with its components.
SELECT content, category, round(score::numeric, 2) AS score, round(relevance::numeric, 2) AS relevance,
       round(recency::numeric, 2) AS recency, round(usefulness::numeric, 2) AS usefulness, tags
FROM ibex_core.search(:org, :agent, 'What does the user like to drink?', 3, p_record_access => false);
-- Filters: categories, tags, time range.
SELECT content FROM ibex_core.search(:org, :agent, 'How old is the user?', 10, p_categories => ARRAY['episodic'], p_record_access => false);
SELECT content FROM ibex_core.search(:org, :agent, 'how to answer', 10, p_tags => ARRAY['STYLE'], p_record_access => false);
SELECT count(*) AS future FROM ibex_core.search(:org, :agent, 'tea', 10, p_created_after => now() + interval '1 day', p_record_access => false);
-- Superseded memories never come back.
SELECT count(*) AS superseded_found FROM ibex_core.search(:org, :agent, 'dentist appointment Friday', 10, p_record_access => false)
WHERE content LIKE '%Friday%';
-- A search that records no access writes nothing, so it runs read-only (on a hot standby).
BEGIN READ ONLY;
SELECT count(*) AS read_only_found FROM ibex_core.search(:org, :agent, 'tea', 3, p_record_access => false);
COMMIT;
-- The access log is statistics: unlogged, so recording an access never waits for a WAL flush.
SELECT relpersistence FROM pg_class WHERE oid = 'ibex_core.memory_access'::regclass;
-- search_by_vector is the same ranking with the caller's query vector (the sidecar embeds once).
SELECT (SELECT array_agg(memory_id ORDER BY score DESC, memory_id)
        FROM ibex_core.search(:org, :agent, 'What does the user like to drink?', 5, p_record_access => false))
     = (SELECT array_agg(memory_id ORDER BY score DESC, memory_id)
        FROM ibex_core.search_by_vector(:org, :agent, 'What does the user like to drink?',
                                        ibex_embed('What does the user like to drink?'), 5, p_record_access => false))
       AS same_ranking;
-- record_access: only the org's memories are logged (rolled back: later scores stay as they are).
BEGIN;
SELECT ibex_core.record_access(:org, ARRAY(SELECT id FROM ibex_core.memories WHERE content LIKE '%green tea%')
                                     || '00000000-0000-0000-0000-000000000bad'::uuid) AS recorded;
ROLLBACK;
-- One home for the idf and the categories (ibex_engine).
SELECT round(ibex_idf(100, 1)::numeric, 4) AS idf_rare, round(ibex_idf(100, 100)::numeric, 4) AS idf_everywhere,
       ibex_memory_categories() AS categories;

-- feedback moves usefulness: (useful + 1) / (useful + not_useful + 2).
SELECT id AS tea FROM ibex_core.memories WHERE content LIKE '%green tea%' \gset
SELECT useful_count, not_useful_count FROM ibex_core.feedback(:org, :'tea', true);
SELECT useful_count, not_useful_count FROM ibex_core.feedback(:org, :'tea', true);
SELECT useful_count, not_useful_count FROM ibex_core.feedback(:org, :'tea', false);
SELECT round(usefulness::numeric, 4) AS usefulness
FROM ibex_core.search(:org, :agent, 'green tea over coffee', 1, p_record_access => false);
SELECT * FROM ibex_core.feedback(:org, '00000000-0000-0000-0000-000000000bad', true);

-- Resolving the conflict by forgetting the older claim; forgotten memories leave search.
SELECT conflict_id AS c FROM ibex_core.list_conflicts(:org) \gset
SELECT id AS age34 FROM ibex_core.memories WHERE content = 'The user is 34 years old.' \gset
SELECT status FROM ibex_core.resolve_conflict(:org, :'c', 'resolved', 'the user is 43', :'age34');
SELECT memory_content, status FROM ibex_core.list_conflicts(:org, NULL, NULL);
SELECT count(*) AS found FROM ibex_core.search(:org, :agent, 'How old is the user?', 10, p_record_access => false)
WHERE content LIKE '%34%';
SELECT version, change, status, reason FROM ibex_core.memory_history(:org, :'age34');
SELECT * FROM ibex_core.resolve_conflict(:org, :'c', 'maybe');

-- History of a superseded memory and of its successor.
SELECT m.content, v.version, v.change, v.status
FROM ibex_core.memory_versions v JOIN ibex_core.memories m ON m.id = v.memory_id
WHERE m.content LIKE '%dentist%' ORDER BY m.created_at, v.version;

-- Cross-org attempts: the org argument must be the session's org, and another org's agents
-- and memories do not exist from here.
SELECT * FROM ibex_core.remember('00000000-0000-0000-0000-0000000000c2', '00000000-0000-0000-0000-0000000c2a01', 'planted');
SELECT * FROM ibex_core.remember(:org, '00000000-0000-0000-0000-0000000c2a01', 'planted');
SELECT * FROM ibex_core.search('00000000-0000-0000-0000-0000000000c2', '00000000-0000-0000-0000-0000000c2a01', 'tea');
RESET ibex.org_id;
SELECT * FROM ibex_core.remember(:org, :agent, 'no org set');
RESET ROLE;

-- Org C2's memory, written by its own session, is invisible to and untouchable by org C1.
SET ROLE ibex_app;
SET ibex.org_id = '00000000-0000-0000-0000-0000000000c2';
SELECT path FROM ibex_core.remember('00000000-0000-0000-0000-0000000000c2', '00000000-0000-0000-0000-0000000c2a01', 'Org two keeps its own secrets.');
SELECT id AS other FROM ibex_core.memories \gset
SET ibex.org_id = '00000000-0000-0000-0000-0000000000c1';
-- (the memory id is random, so only the SQLSTATE is shown: P0002, no_data_found)
\set VERBOSITY sqlstate
SELECT * FROM ibex_core.feedback(:org, :'other', true);
SELECT * FROM ibex_core.forget(:org, :'other');
SELECT * FROM ibex_core.memory_history(:org, :'other');
SELECT count(*) AS visible FROM ibex_core.memories WHERE id = :'other';
\set VERBOSITY terse
RESET ibex.org_id;
RESET ROLE;

-- Bridging: the question names the relation ("cousin"), the news only the person. The
-- introduction ranks first and lends "cousin" to the memories that share the name Zeno, so
-- Zeno's course ranks above the other courses, which share nothing with the question.
INSERT INTO ibex_core.agents (org_id, id, name, status) VALUES
    ('00000000-0000-0000-0000-0000000000c1', '00000000-0000-0000-0000-0000000c1a03', 'friend', 'active');
SET ROLE ibex_app;
SET ibex.org_id = '00000000-0000-0000-0000-0000000000c1';
\set friend '''00000000-0000-0000-0000-0000000c1a03'''
SELECT r.path, count(*) FROM unnest(ARRAY[
    'You haven''t met my cousin yet: Zeno, a pastry chef with a very loud laugh.',
    'Tessa started a course in pottery in Bergen.',
    'Bruno started a course in French in Lyon.',
    'Zeno started a course in marine biology in Accra.',
    'Zeno sent me a funny video about a dog.',
    'The weather in Lisbon was lovely all week.']) c,
    LATERAL ibex_core.remember(:org, :friend, c, 'episodic') r GROUP BY 1;
SELECT content, round(lexical::numeric, 3) AS lexical
FROM ibex_core.search(:org, :friend, 'What is the user''s cousin studying?', 4, p_record_access => false);
-- ibex.search_bridging = off: the news keeps its own lexical evidence (none).
SET ibex.search_bridging = off;
SELECT content, round(lexical::numeric, 3) AS lexical
FROM ibex_core.search(:org, :friend, 'What is the user''s cousin studying?', 2, p_record_access => false);
RESET ibex.search_bridging;
RESET ibex.org_id;
RESET ROLE;

-- No PII reached the stored rows: neither memories nor their history.
SELECT count(*) AS memories_with_pii FROM ibex_core.memories
WHERE content ~ '[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+' OR content ~ '\d{3}\D{0,2}\d{3}-\d{4}' OR content ~ '\d{3}-\d{2}-\d{4}';
SELECT count(*) AS versions_with_pii FROM ibex_core.memory_versions
WHERE content ~ '[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+' OR content ~ '\d{3}\D{0,2}\d{3}-\d{4}' OR content ~ '\d{3}-\d{2}-\d{4}';
SELECT content FROM ibex_core.memory_versions WHERE content LIKE '%[EMAIL]%';

-- Every write left its outbox events, for the hot cache and the indexer.
SELECT topic, event, count(*) FROM ibex_core.outbox
WHERE org_id IN ('00000000-0000-0000-0000-0000000000c1', '00000000-0000-0000-0000-0000000000c2')
GROUP BY 1, 2 ORDER BY 1, 2;
