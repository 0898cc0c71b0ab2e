-- The dashboard benchmark's data (make bench-dashboard): one org with 100 agents, 100,000
-- memories, 10,000 sessions of 4 turns and 1,000,000 usage events spread over 60 days (usage
-- and sessions over 30). Run once per bench database, as the superuser, with psql -v org=<uuid>.
--
-- Rows are written straight into the tables with triggers off (session_replication_role =
-- replica): the benchmark measures reading pages, and a million rows through the write
-- functions would take most of an hour. What the triggers would add (outbox events, memory
-- versions, statistics) is not on any page's path but the memory history, which stays short.
SET session_replication_role = replica;
SET synchronous_commit = off;

INSERT INTO ibex_core.agents (org_id, id, name, description, status)
SELECT :'org', gen_random_uuid(), format('Agent %s', i), format('Benchmark agent number %s', i),
       CASE WHEN i % 10 = 0 THEN 'paused' ELSE 'active' END
FROM generate_series(1, 100) i;

CREATE TEMP TABLE bench_agents AS
SELECT id, row_number() OVER (ORDER BY name) - 1 AS n FROM ibex_core.agents WHERE org_id = :'org';

-- 64 unit-length directions, reused: search ranks them, their content differs.
CREATE TEMP TABLE bench_vectors AS
SELECT v.n, (SELECT array_agg(x / norm)::vector(384) FROM (
            SELECT x, sqrt(sum(x * x) OVER ()) AS norm FROM (
                SELECT sin(v.n * 7.13 + d * 1.37) AS x FROM generate_series(1, 384) d) raw) unit) AS embedding
FROM generate_series(0, 63) v(n);

INSERT INTO ibex_core.memories (org_id, agent_id, content, content_hash, embedding, category, confidence,
                                created_at, updated_at, access_count)
SELECT :'org', a.id, c.content, encode(sha256(convert_to(c.content, 'UTF8')), 'hex'), v.embedding,
       (ARRAY['procedural', 'declarative', 'episodic'])[1 + i % 3], 0.5 + (i % 50) / 100.0,
       now() - make_interval(secs => i * 51), now() - make_interval(secs => i * 51), i % 17
FROM generate_series(1, 100000) i
JOIN bench_agents a ON a.n = i % 100
JOIN bench_vectors v ON v.n = i % 64
CROSS JOIN LATERAL (SELECT format('Fact %s: the user prefers %s for %s, noted in conversation %s.', i,
        (ARRAY['tea', 'coffee', 'metric units', 'short answers', 'French', 'dark mode', 'email'])[1 + i % 7],
        (ARRAY['mornings', 'work', 'travel', 'reports', 'weekends'])[1 + i % 5], i % 997) AS content) c;

INSERT INTO ibex_core.sessions (org_id, id, agent_id, external_id, status, turn_count, last_extracted_turn,
                                checkpoint_count, started_at, completed_at, created_at, updated_at)
SELECT :'org', gen_random_uuid(), a.id, format('conv-%s', i), CASE WHEN i % 20 = 0 THEN 'active' ELSE 'completed' END,
       4, 4, 2, now() - make_interval(secs => (i * 259) % 2592000),
       CASE WHEN i % 20 = 0 THEN NULL ELSE now() - make_interval(secs => (i * 259) % 2592000) + interval '5 minutes' END,
       now() - make_interval(secs => (i * 259) % 2592000), now()
FROM generate_series(1, 10000) i
JOIN bench_agents a ON a.n = i % 100;

INSERT INTO ibex_core.session_turns (org_id, session_id, turn_index, role, content, tokens, model, checkpoint, created_at)
SELECT s.org_id, s.id, t, CASE WHEN t % 2 = 1 THEN 'user' ELSE 'assistant' END,
       format('Turn %s of %s: %s', t, s.external_id, repeat('words of the conversation ', 8)), 40 + t,
       CASE WHEN t % 2 = 0 THEN 'gpt-4o-mini' END, (t + 1) / 2, s.started_at + make_interval(secs => t * 20)
FROM ibex_core.sessions s CROSS JOIN generate_series(1, 4) t
WHERE s.org_id = :'org';

INSERT INTO ibex_core.usage_events (org_id, agent_id, model, prompt_tokens, completion_tokens, latency_ms,
                                    status_code, streamed, created_at)
SELECT :'org', a.id, (ARRAY['gpt-4o-mini', 'gpt-4o', 'claude-3-5-sonnet', 'llama-3.1-70b'])[1 + (i % 11) % 4],
       200 + i % 1800, 50 + i % 400, 80 + (i * 37) % 2400, CASE WHEN i % 97 = 0 THEN 500 ELSE 200 END, i % 3 = 0,
       now() - make_interval(secs => (i * 2.592)::bigint % 2592000)
FROM generate_series(1, 1000000) i
JOIN bench_agents a ON a.n = i % 100;

SET session_replication_role = origin;
-- The usage events went in backdated: roll their closed hours up now, as the sidecar's worker
-- would have hour by hour (a worker that met this org before the seed left a mark past them).
DELETE FROM ibex_core.usage_rollup_marks WHERE org_id = :'org';
DELETE FROM ibex_core.usage_hourly WHERE org_id = :'org';
SELECT ibex_core.roll_up_usage(:'org', 1, 24 * 31, 300) AS orgs_rolled_up;
VACUUM (ANALYZE) ibex_core.agents, ibex_core.memories, ibex_core.sessions, ibex_core.session_turns, ibex_core.usage_events,
    ibex_core.usage_hourly;
