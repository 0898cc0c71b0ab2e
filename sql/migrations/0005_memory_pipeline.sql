-- IBEX 0005: the memory write pipeline (remember), search, feedback, forget, history, conflicts.
--
-- The pipeline is SQL (plpgsql) calling ibex_pg's Rust primitives (ibex_embed, ibex_redact_pii,
-- ibex_content_hash, ibex_relevance, ibex_score_components): it runs inside the caller's
-- transaction, under the caller's privileges and row-level security (SECURITY INVOKER), and a
-- DBA can read it. Thresholds are ibex.* settings (docs/sql.md).

-- btree_gin lets one GIN index serve "this agent's memories that contain these words".
CREATE EXTENSION IF NOT EXISTS btree_gin;
-- Operational state of the background workers: not tenant data, not visible to applications.
CREATE SCHEMA IF NOT EXISTS ibex_ops AUTHORIZATION ibex_owner;
REVOKE ALL ON SCHEMA ibex_ops FROM PUBLIC;

-- Load pgvector so its settings (ivfflat.*) are known when functions below SET them; as a
-- placeholder the owner role could not set them.
LOAD 'vector';
SET LOCAL ROLE ibex_owner;

------------------------------------------------------------------------------------------------
-- Tables
------------------------------------------------------------------------------------------------

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

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['memory_access', 'lexeme_stats', 'agent_memory_stats'] LOOP
        EXECUTE format('ALTER TABLE ibex_core.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE ibex_core.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY org_isolation ON ibex_core.%I
                            USING (org_id = ibex_core.current_org())
                            WITH CHECK (org_id = ibex_core.current_org())', t);
    END LOOP;
END
$$;

-- One GIN index for full-text search within an agent (btree_gin makes agent_id a GIN key);
-- GIN multi-column indexes also serve conditions on content_tsv alone.
DROP INDEX ibex_core.memories_content_fts;
CREATE INDEX memories_content_fts ON ibex_core.memories USING gin (agent_id, content_tsv);

-- updated_at means "the memory changed", not "someone read it": access folding does not touch it.
DROP TRIGGER memories_touch ON ibex_core.memories;
CREATE TRIGGER memories_touch BEFORE UPDATE OF content, category, confidence, status, superseded_by,
    metadata, useful_count, not_useful_count ON ibex_core.memories
    FOR EACH ROW EXECUTE FUNCTION ibex_core.touch_updated_at();

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

------------------------------------------------------------------------------------------------
-- Lexical statistics
------------------------------------------------------------------------------------------------

CREATE TYPE ibex_core.memory_stat_delta AS (org_id uuid, agent_id uuid, content_tsv tsvector, delta integer);

CREATE FUNCTION ibex_core.apply_memory_stat_deltas(p_rows ibex_core.memory_stat_delta[]) RETURNS void
    LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(cardinality(p_rows), 0) = 0 THEN
        RETURN;
    END IF;
    -- Rows are written in key order so concurrent writers always lock them in the same order.
    INSERT INTO ibex_core.agent_memory_stats AS s (org_id, agent_id, active_memories)
    SELECT org_id, agent_id, sum(delta) FROM unnest(p_rows) GROUP BY 1, 2 HAVING sum(delta) > 0 ORDER BY 1, 2
    ON CONFLICT (org_id, agent_id) DO UPDATE SET active_memories = s.active_memories + excluded.active_memories;
    UPDATE ibex_core.agent_memory_stats s SET active_memories = greatest(0, s.active_memories + d.delta)
    FROM (SELECT org_id, agent_id, sum(delta) AS delta FROM unnest(p_rows) GROUP BY 1, 2 HAVING sum(delta) < 0) d
    WHERE s.org_id = d.org_id AND s.agent_id = d.agent_id;

    INSERT INTO ibex_core.lexeme_stats AS s (org_id, agent_id, lexeme, doc_count)
    SELECT r.org_id, r.agent_id, l.lexeme, sum(r.delta)
    FROM unnest(p_rows) r, unnest(tsvector_to_array(r.content_tsv)) AS l(lexeme)
    GROUP BY 1, 2, 3 HAVING sum(r.delta) > 0 ORDER BY 1, 2, 3
    ON CONFLICT (org_id, agent_id, lexeme) DO UPDATE SET doc_count = s.doc_count + excluded.doc_count;
    UPDATE ibex_core.lexeme_stats s SET doc_count = greatest(0, s.doc_count + d.delta)
    FROM (SELECT r.org_id, r.agent_id, l.lexeme, sum(r.delta) AS delta
          FROM unnest(p_rows) r, unnest(tsvector_to_array(r.content_tsv)) AS l(lexeme)
          GROUP BY 1, 2, 3 HAVING sum(r.delta) < 0) d
    WHERE s.org_id = d.org_id AND s.agent_id = d.agent_id AND s.lexeme = d.lexeme;
END
$$;

CREATE FUNCTION ibex_core.memories_stats_after_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ibex_core.apply_memory_stat_deltas(ARRAY(
        SELECT ROW(org_id, agent_id, content_tsv, 1)::ibex_core.memory_stat_delta
        FROM new_rows WHERE status = 'active'));
    RETURN NULL;
END
$$;

CREATE FUNCTION ibex_core.memories_stats_after_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- Only rows that entered or left the active set, or changed their text, move the counts.
    PERFORM ibex_core.apply_memory_stat_deltas(ARRAY(
        SELECT ROW(o.org_id, o.agent_id, o.content_tsv, -1)::ibex_core.memory_stat_delta
        FROM old_rows o JOIN new_rows n ON n.org_id = o.org_id AND n.id = o.id
        WHERE o.status = 'active' AND (n.status <> 'active' OR n.content IS DISTINCT FROM o.content)
        UNION ALL
        SELECT ROW(n.org_id, n.agent_id, n.content_tsv, 1)::ibex_core.memory_stat_delta
        FROM old_rows o JOIN new_rows n ON n.org_id = o.org_id AND n.id = o.id
        WHERE n.status = 'active' AND (o.status <> 'active' OR n.content IS DISTINCT FROM o.content)));
    RETURN NULL;
END
$$;

CREATE FUNCTION ibex_core.memories_stats_after_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ibex_core.apply_memory_stat_deltas(ARRAY(
        SELECT ROW(org_id, agent_id, content_tsv, -1)::ibex_core.memory_stat_delta
        FROM old_rows WHERE status = 'active'));
    RETURN NULL;
END
$$;

CREATE TRIGGER memories_stats_insert AFTER INSERT ON ibex_core.memories
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ibex_core.memories_stats_after_insert();
CREATE TRIGGER memories_stats_update AFTER UPDATE ON ibex_core.memories
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ibex_core.memories_stats_after_update();
CREATE TRIGGER memories_stats_delete AFTER DELETE ON ibex_core.memories
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION ibex_core.memories_stats_after_delete();

-- A tsquery matching exactly one lexeme, as stored (no re-parsing or re-stemming).
CREATE FUNCTION ibex_core.lexeme_query(p_lexeme text) RETURNS tsquery
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT ('''' || replace(replace(p_lexeme, '\', '\\'), '''', '''''') || '''')::tsquery $$;

------------------------------------------------------------------------------------------------
-- Guards shared by every API function
------------------------------------------------------------------------------------------------

-- Double enforcement: the org named in the call must be the session's org (ibex.org_id). RLS
-- alone would turn a mismatch into an empty result; a mismatch is a bug or an attack, so it is
-- an error.
CREATE FUNCTION ibex_core.assert_org(p_org uuid) RETURNS void
    LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_current uuid := ibex_core.current_org();
BEGIN
    IF p_org IS NULL THEN
        RAISE EXCEPTION 'org must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF v_current IS NULL THEN
        RAISE EXCEPTION 'ibex.org_id is not set'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Start the transaction with SELECT set_config(''ibex.org_id'', ''<org uuid>'', true).';
    END IF;
    IF v_current <> p_org THEN
        RAISE EXCEPTION 'org % is not the org of this session', p_org
            USING ERRCODE = 'insufficient_privilege',
                  DETAIL = format('ibex.org_id is %s.', v_current),
                  HINT = 'Pass the org the session acts for, or set ibex.org_id to it.';
    END IF;
END
$$;

CREATE FUNCTION ibex_core.assert_category(p_category text) RETURNS void
    LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF p_category IS NULL OR p_category NOT IN ('procedural', 'declarative', 'episodic') THEN
        RAISE EXCEPTION 'invalid memory category: %', coalesce(p_category, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use one of: procedural, declarative, episodic.';
    END IF;
END
$$;

-- Tags: trimmed, lower-case, 1 to 64 characters, at most 32, no duplicates.
CREATE FUNCTION ibex_core.normalise_tags(p_tags text[]) RETURNS text[]
    LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    v_tags text[];
BEGIN
    IF p_tags IS NULL THEN
        RETURN '{}';
    END IF;
    IF array_position(p_tags, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'tags must not contain NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    SELECT coalesce(array_agg(DISTINCT lower(btrim(t)) ORDER BY lower(btrim(t))), '{}') INTO v_tags
    FROM unnest(p_tags) t WHERE btrim(t) <> '';
    IF cardinality(v_tags) > 32 THEN
        RAISE EXCEPTION 'too many tags: %', cardinality(v_tags)
            USING ERRCODE = 'program_limit_exceeded', HINT = 'A memory takes at most 32 tags.';
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(v_tags) t WHERE length(t) > 64) THEN
        RAISE EXCEPTION 'tag too long' USING ERRCODE = 'string_data_right_truncation',
            HINT = 'Tags are at most 64 characters.';
    END IF;
    RETURN v_tags;
END
$$;

CREATE FUNCTION ibex_core.notify_outbox(p_org uuid, p_topic text, p_event text, p_aggregate uuid, p_payload jsonb)
    RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO ibex_core.outbox (org_id, topic, event, aggregate_id, payload)
    VALUES (p_org, p_topic, p_event, p_aggregate, p_payload);
    -- A wake-up only: consumers read the outbox table, so a missed notification loses nothing.
    PERFORM pg_notify('ibex_outbox', p_topic);
END
$$;

------------------------------------------------------------------------------------------------
-- remember: the 9-step write pipeline
------------------------------------------------------------------------------------------------

CREATE FUNCTION ibex_core.remember(
    p_org             uuid,
    p_agent           uuid,
    p_content         text,
    p_category        text DEFAULT 'declarative',
    p_confidence      real DEFAULT 0.8,
    p_tags            text[] DEFAULT '{}',
    p_source_session  uuid DEFAULT NULL,
    p_source_turn     integer DEFAULT NULL,
    p_metadata        jsonb DEFAULT '{}')
RETURNS TABLE (memory_id uuid, path text, superseded_ids uuid[], conflicts jsonb)
LANGUAGE plpgsql
AS $$
DECLARE
    v_max_chars   integer := current_setting('ibex.max_memory_chars')::integer;
    v_near        float8 := current_setting('ibex.near_duplicate_threshold')::float8;
    v_conflict    float8 := current_setting('ibex.conflict_threshold')::float8;
    v_agent_status text;
    v_tags        text[];
    v_content     text;
    v_hash        text;
    v_existing    uuid;
    v_embedding   vector;
    v_id          uuid := gen_random_uuid();
    v_superseded  uuid[] := '{}';
    v_sims        real[] := '{}';
    v_conflicts   jsonb := '[]';
    r             record;
BEGIN
    -- 1. Validate.
    PERFORM ibex_core.assert_org(p_org);
    IF p_agent IS NULL THEN
        RAISE EXCEPTION 'agent must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF p_content IS NULL OR btrim(p_content) = '' THEN
        RAISE EXCEPTION 'memory content is empty' USING ERRCODE = 'invalid_parameter_value',
            HINT = 'A memory needs some text.';
    END IF;
    IF length(p_content) > v_max_chars THEN
        RAISE EXCEPTION 'memory content is too long' USING ERRCODE = 'string_data_right_truncation',
            DETAIL = format('%s characters; the limit (ibex.max_memory_chars) is %s.', length(p_content), v_max_chars),
            HINT = 'Store shorter, self-contained facts; split long text into several memories.';
    END IF;
    PERFORM ibex_core.assert_category(p_category);
    IF p_confidence IS NULL OR NOT (p_confidence BETWEEN 0 AND 1) THEN
        RAISE EXCEPTION 'confidence must be between 0 and 1, got %', coalesce(p_confidence::text, 'NULL')
            USING ERRCODE = 'numeric_value_out_of_range';
    END IF;
    IF p_metadata IS NULL OR jsonb_typeof(p_metadata) <> 'object' THEN
        RAISE EXCEPTION 'metadata must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_tags := ibex_core.normalise_tags(p_tags);
    SELECT a.status INTO v_agent_status FROM ibex_core.agents a WHERE a.org_id = p_org AND a.id = p_agent;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'agent % does not exist in this org', p_agent USING ERRCODE = 'foreign_key_violation';
    END IF;
    IF v_agent_status = 'archived' THEN
        RAISE EXCEPTION 'agent % is archived', p_agent USING ERRCODE = 'object_not_in_prerequisite_state',
            HINT = 'Reactivate the agent before giving it new memories.';
    END IF;

    -- 2. PII redaction: nothing below ever sees the raw text.
    v_content := ibex_redact_pii(btrim(p_content));
    v_hash := ibex_content_hash(v_content);

    -- 3. Exact de-duplication. Writers of one agent are serialised from here to commit, so two
    --    sessions storing the same content at once end with one memory (the second sees the
    --    first's row once it holds the lock: each statement takes a new snapshot).
    PERFORM pg_advisory_xact_lock(hashtextextended('ibex.remember/' || p_org || '/' || p_agent, 0));
    SELECT m.id INTO v_existing FROM ibex_core.memories m
    WHERE m.org_id = p_org AND m.agent_id = p_agent AND m.content_hash = v_hash AND m.status = 'active';
    IF FOUND THEN
        RETURN QUERY SELECT v_existing, 'duplicate'::text, '{}'::uuid[], '[]'::jsonb;
        RETURN;
    END IF;

    -- 4. Embed.
    v_embedding := ibex_embed(v_content);

    -- 5 and 6. Near-duplicates (supersession) and conflicts, by exact cosine over the agent's
    --    active memories: an approximate index could miss the one memory that matters here.
    --    (MATERIALIZED keeps the planner from answering with the IVFFlat index.)
    FOR r IN
        WITH c AS MATERIALIZED (
            SELECT m.id, m.category, 1 - (m.embedding <=> v_embedding) AS sim
            FROM ibex_core.memories m
            WHERE m.org_id = p_org AND m.agent_id = p_agent AND m.status = 'active')
        SELECT c.id, c.category, c.sim FROM c WHERE c.sim > least(v_near, v_conflict) ORDER BY c.sim DESC, c.id
    LOOP
        IF r.sim > v_near THEN
            v_superseded := v_superseded || r.id;
            v_sims := v_sims || r.sim::real;
        ELSIF r.category = p_category THEN
            v_conflicts := v_conflicts || jsonb_build_object('memory_id', r.id, 'similarity', round(r.sim::numeric, 4));
        END IF;
    END LOOP;

    -- 7. Insert the memory, its tags and its first version.
    INSERT INTO ibex_core.memories (org_id, id, agent_id, content, content_hash, embedding, category, confidence,
                                    source_session_id, source_turn, metadata)
    VALUES (p_org, v_id, p_agent, v_content, v_hash, v_embedding, p_category, p_confidence,
            p_source_session, p_source_turn, p_metadata);
    INSERT INTO ibex_core.memory_versions (org_id, memory_id, version, change, content, content_hash, category,
                                           confidence, status, reason)
    VALUES (p_org, v_id, 1, 'created', v_content, v_hash, p_category, p_confidence, 'active',
            CASE WHEN cardinality(v_superseded) > 0 THEN 'supersedes ' || array_to_string(v_superseded, ', ') END);
    IF cardinality(v_tags) > 0 THEN
        INSERT INTO ibex_core.tags (org_id, name) SELECT p_org, t FROM unnest(v_tags) t
        ON CONFLICT (org_id, name) DO NOTHING;
        INSERT INTO ibex_core.memory_tags (org_id, memory_id, tag_id)
        SELECT p_org, v_id, t.id FROM ibex_core.tags t WHERE t.org_id = p_org AND t.name = ANY (v_tags);
    END IF;

    -- Supersession: the old memories stay, marked superseded, with an edge and a version record.
    IF cardinality(v_superseded) > 0 THEN
        WITH old AS (
            UPDATE ibex_core.memories m SET status = 'superseded', superseded_by = v_id, version = m.version + 1
            WHERE m.org_id = p_org AND m.id = ANY (v_superseded)
            RETURNING m.*)
        INSERT INTO ibex_core.memory_versions (org_id, memory_id, version, change, content, content_hash, category,
                                               confidence, status, superseded_by, reason)
        SELECT old.org_id, old.id, old.version, 'superseded', old.content, old.content_hash, old.category,
               old.confidence, old.status, v_id, 'near-duplicate of a newer memory'
        FROM old;
        INSERT INTO ibex_core.memory_relationships (org_id, source_memory_id, target_memory_id, kind, similarity)
        SELECT p_org, v_id, s.id, 'supersedes', s.sim FROM unnest(v_superseded, v_sims) AS s(id, sim);
    END IF;

    -- Conflicts: an edge and an open record each, for later resolution.
    IF jsonb_array_length(v_conflicts) > 0 THEN
        INSERT INTO ibex_core.memory_relationships (org_id, source_memory_id, target_memory_id, kind, similarity)
        SELECT p_org, v_id, (c->>'memory_id')::uuid, 'conflicts_with', (c->>'similarity')::real
        FROM jsonb_array_elements(v_conflicts) c;
        INSERT INTO ibex_core.memory_conflicts (org_id, memory_id, conflicting_memory_id, similarity)
        SELECT p_org, v_id, (c->>'memory_id')::uuid, (c->>'similarity')::real
        FROM jsonb_array_elements(v_conflicts) c;
    END IF;

    -- 8. Hot cache and 9. index work: durable outbox events in this transaction.
    PERFORM ibex_core.notify_outbox(p_org, 'hot_cache', 'memory.upserted', v_id,
        jsonb_build_object('agent_id', p_agent, 'memory_id', v_id, 'removed', to_jsonb(v_superseded)));
    PERFORM ibex_core.notify_outbox(p_org, 'index', 'memory.created', v_id,
        jsonb_build_object('agent_id', p_agent, 'memory_id', v_id));

    RETURN QUERY SELECT v_id, CASE WHEN cardinality(v_superseded) > 0 THEN 'superseded' ELSE 'created' END,
                        v_superseded, v_conflicts;
END
$$;

------------------------------------------------------------------------------------------------
-- search
------------------------------------------------------------------------------------------------

-- Probes and iterative scans are function settings (ALTER FUNCTION ... SET ivfflat.probes = n
-- tunes them); relaxed order is fine because candidates are re-scored exactly afterwards.
CREATE FUNCTION ibex_core.search(
    p_org             uuid,
    p_agent           uuid,
    p_query           text,
    p_k               integer DEFAULT 10,
    p_categories      text[] DEFAULT NULL,
    p_tags            text[] DEFAULT NULL,
    p_created_after   timestamptz DEFAULT NULL,
    p_created_before  timestamptz DEFAULT NULL,
    p_record_access   boolean DEFAULT true)
RETURNS TABLE (memory_id uuid, content text, category text, confidence real, tags text[], created_at timestamptz,
               score float8, relevance float8, semantic float8, lexical float8, recency float8,
               usefulness float8, access_frequency float8)
LANGUAGE plpgsql
-- Planning the candidate query costs more than running it; one generic plan serves every call
-- (the exact/IVFFlat choice is a run-time filter, so a generic plan loses nothing).
SET plan_cache_mode = force_generic_plan
SET ivfflat.probes = 10
SET ivfflat.iterative_scan = relaxed_order
SET ivfflat.max_probes = 100
AS $$
DECLARE
    v_query     vector;
    v_pool      integer;
    v_tags      text[];
    v_n         integer;
    v_terms     text[];
    v_idf       float8[];
    v_idf_total float8;
    v_any       tsquery;
    v_exact     boolean;
BEGIN
    PERFORM ibex_core.assert_org(p_org);
    IF p_agent IS NULL THEN
        RAISE EXCEPTION 'agent must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF p_query IS NULL OR btrim(p_query) = '' THEN
        RAISE EXCEPTION 'search query is empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_k IS NULL OR p_k NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'k must be between 1 and 200, got %', coalesce(p_k::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_categories IS NOT NULL THEN
        PERFORM ibex_core.assert_category(c) FROM unnest(p_categories) c;
    END IF;
    v_tags := CASE WHEN p_tags IS NULL THEN NULL ELSE ibex_core.normalise_tags(p_tags) END;
    -- Candidates from each source: enough that the re-ranking has room, few enough to stay fast.
    v_pool := greatest(4 * p_k, 40);

    v_query := ibex_embed(p_query);

    -- Query terms (stemmed, stop words dropped) with their inverse document frequency among the
    -- agent's active memories, as in BM25: idf = ln(1 + (N - df + 0.5) / (df + 0.5)).
    SELECT coalesce(s.active_memories, 0) INTO v_n
    FROM (SELECT 1) one LEFT JOIN ibex_core.agent_memory_stats s ON s.org_id = p_org AND s.agent_id = p_agent;
    SELECT array_agg(l.lexeme ORDER BY l.lexeme),
           array_agg(ln(1 + (v_n - coalesce(st.doc_count, 0) + 0.5) / (coalesce(st.doc_count, 0) + 0.5)) ORDER BY l.lexeme)
    INTO v_terms, v_idf
    FROM unnest(tsvector_to_array(to_tsvector('english', p_query))) AS l(lexeme)
    LEFT JOIN ibex_core.lexeme_stats st ON st.org_id = p_org AND st.agent_id = p_agent AND st.lexeme = l.lexeme;
    v_idf_total := (SELECT sum(x) FROM unnest(v_idf) x);
    -- Lexical candidates come from terms that occur but are not everywhere: a term in most of the
    -- agent's memories would make every memory a candidate and carries little weight anyway.
    SELECT string_agg(ibex_core.lexeme_query(t)::text, ' | ')::tsquery INTO v_any
    FROM unnest(v_terms) t
    JOIN ibex_core.lexeme_stats st ON st.org_id = p_org AND st.agent_id = p_agent AND st.lexeme = t
    WHERE st.doc_count > 0 AND st.doc_count <= greatest(50, v_n / 5);

    -- Semantic candidates: an agent with few memories is searched exactly (its rows come from
    -- the agent index; a full cosine scan of a few thousand vectors is cheaper than probing
    -- IVFFlat lists shared with every other agent, and misses nothing). Larger agents go through
    -- the IVFFlat index, with iterative scans so the agent filter cannot starve the result.
    v_exact := v_n <= current_setting('ibex.exact_search_max_memories')::integer;

    RETURN QUERY
    WITH semantic_candidates AS (
        (SELECT m.id
         FROM ibex_core.memories m
         WHERE v_exact AND m.org_id = p_org AND m.agent_id = p_agent AND m.status = 'active'
           AND (p_categories IS NULL OR m.category = ANY (p_categories))
           AND (p_created_after IS NULL OR m.created_at >= p_created_after)
           AND (p_created_before IS NULL OR m.created_at < p_created_before)
           AND (v_tags IS NULL OR EXISTS (
                 SELECT 1 FROM ibex_core.memory_tags mt JOIN ibex_core.tags t ON t.org_id = mt.org_id AND t.id = mt.tag_id
                 WHERE mt.org_id = m.org_id AND mt.memory_id = m.id AND t.name = ANY (v_tags)))
         -- "+ 0" keeps the planner from answering this branch with the approximate index.
         ORDER BY (m.embedding <=> v_query) + 0
         LIMIT v_pool)
        UNION ALL
        (SELECT m.id
         FROM ibex_core.memories m
         WHERE NOT v_exact AND m.org_id = p_org AND m.agent_id = p_agent AND m.status = 'active'
           AND (p_categories IS NULL OR m.category = ANY (p_categories))
           AND (p_created_after IS NULL OR m.created_at >= p_created_after)
           AND (p_created_before IS NULL OR m.created_at < p_created_before)
           AND (v_tags IS NULL OR EXISTS (
                 SELECT 1 FROM ibex_core.memory_tags mt JOIN ibex_core.tags t ON t.org_id = mt.org_id AND t.id = mt.tag_id
                 WHERE mt.org_id = m.org_id AND mt.memory_id = m.id AND t.name = ANY (v_tags)))
         ORDER BY m.embedding <=> v_query
         LIMIT v_pool)),
    lexical_candidates AS (
        SELECT m.id
        FROM ibex_core.memories m
        WHERE v_any IS NOT NULL
          AND m.org_id = p_org AND m.agent_id = p_agent AND m.content_tsv @@ v_any AND m.status = 'active'
          AND (p_categories IS NULL OR m.category = ANY (p_categories))
          AND (p_created_after IS NULL OR m.created_at >= p_created_after)
          AND (p_created_before IS NULL OR m.created_at < p_created_before)
          AND (v_tags IS NULL OR EXISTS (
                SELECT 1 FROM ibex_core.memory_tags mt JOIN ibex_core.tags t ON t.org_id = mt.org_id AND t.id = mt.tag_id
                WHERE mt.org_id = m.org_id AND mt.memory_id = m.id AND t.name = ANY (v_tags)))
        ORDER BY (SELECT sum(w.idf) FROM unnest(v_terms, v_idf) AS w(term, idf)
                  WHERE m.content_tsv @@ ibex_core.lexeme_query(w.term)) DESC, m.id
        LIMIT v_pool),
    candidates AS (
        SELECT id FROM semantic_candidates UNION SELECT id FROM lexical_candidates),
    signals AS (
        SELECT m.*,
               greatest(0, 1 - (m.embedding <=> v_query)) AS sem,
               CASE WHEN coalesce(v_idf_total, 0) > 0 THEN
                   coalesce((SELECT sum(w.idf) FROM unnest(v_terms, v_idf) AS w(term, idf)
                             WHERE m.content_tsv @@ ibex_core.lexeme_query(w.term)), 0) / v_idf_total
               ELSE 0 END AS lex
        FROM candidates c JOIN ibex_core.memories m ON m.org_id = p_org AND m.id = c.id),
    ranked AS (
        SELECT s.id, s.content, s.category, s.confidence, s.created_at, s.sem, s.lex,
               sc.relevance, sc.recency, sc.usefulness, sc.access_frequency, sc.total
        FROM signals s,
             LATERAL ibex_score_components(ibex_relevance(s.sem, s.lex), s.confidence, s.useful_count,
                                           s.not_useful_count, s.access_count,
                                           coalesce(s.last_accessed_at, s.created_at), now()) sc
        ORDER BY sc.total DESC, s.id
        LIMIT p_k),
    logged AS (
        INSERT INTO ibex_core.memory_access (org_id, memory_id)
        SELECT p_org, ranked.id FROM ranked WHERE p_record_access
        RETURNING 1)
    SELECT r.id, r.content, r.category, r.confidence,
           ARRAY(SELECT t.name FROM ibex_core.memory_tags mt JOIN ibex_core.tags t ON t.org_id = mt.org_id AND t.id = mt.tag_id
                 WHERE mt.org_id = p_org AND mt.memory_id = r.id ORDER BY t.name),
           r.created_at, r.total, r.relevance, r.sem, r.lex, r.recency, r.usefulness, r.access_frequency
    FROM ranked r
    ORDER BY r.total DESC, r.id;
END
$$;

------------------------------------------------------------------------------------------------
-- feedback, forget, history, conflicts
------------------------------------------------------------------------------------------------

CREATE FUNCTION ibex_core.feedback(p_org uuid, p_memory uuid, p_useful boolean)
RETURNS TABLE (memory_id uuid, useful_count integer, not_useful_count integer)
LANGUAGE plpgsql AS $$
DECLARE
    v_agent uuid;
BEGIN
    PERFORM ibex_core.assert_org(p_org);
    IF p_memory IS NULL OR p_useful IS NULL THEN
        RAISE EXCEPTION 'memory and useful must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    UPDATE ibex_core.memories m
    SET useful_count = m.useful_count + p_useful::int, not_useful_count = m.not_useful_count + (NOT p_useful)::int
    WHERE m.org_id = p_org AND m.id = p_memory AND m.status <> 'deleted'
    RETURNING m.agent_id INTO v_agent;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'memory % not found', p_memory USING ERRCODE = 'no_data_found';
    END IF;
    PERFORM ibex_core.notify_outbox(p_org, 'hot_cache', 'memory.upserted', p_memory,
        jsonb_build_object('agent_id', v_agent, 'memory_id', p_memory, 'removed', '[]'::jsonb));
    RETURN QUERY SELECT m.id, m.useful_count, m.not_useful_count FROM ibex_core.memories m
                 WHERE m.org_id = p_org AND m.id = p_memory;
END
$$;

-- Soft delete: the row stays (status deleted) with a version record, and leaves every ranking.
CREATE FUNCTION ibex_core.forget(p_org uuid, p_memory uuid, p_reason text DEFAULT NULL)
RETURNS TABLE (memory_id uuid, status text, version integer)
LANGUAGE plpgsql AS $$
DECLARE
    m ibex_core.memories%ROWTYPE;
BEGIN
    PERFORM ibex_core.assert_org(p_org);
    SELECT * INTO m FROM ibex_core.memories x WHERE x.org_id = p_org AND x.id = p_memory FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'memory % not found', p_memory USING ERRCODE = 'no_data_found';
    END IF;
    IF m.status <> 'deleted' THEN
        UPDATE ibex_core.memories x SET status = 'deleted', deleted_at = now(), superseded_by = NULL,
                                        version = x.version + 1
        WHERE x.org_id = p_org AND x.id = p_memory
        RETURNING * INTO m;
        INSERT INTO ibex_core.memory_versions (org_id, memory_id, version, change, content, content_hash, category,
                                               confidence, status, reason)
        VALUES (p_org, m.id, m.version, 'forgotten', m.content, m.content_hash, m.category, m.confidence,
                m.status, p_reason);
        UPDATE ibex_core.memory_conflicts c SET status = 'resolved', resolution = 'memory forgotten', resolved_at = now()
        WHERE c.org_id = p_org AND c.status = 'open' AND (c.memory_id = p_memory OR c.conflicting_memory_id = p_memory);
        PERFORM ibex_core.notify_outbox(p_org, 'hot_cache', 'memory.deleted', m.id,
            jsonb_build_object('agent_id', m.agent_id, 'memory_id', m.id, 'removed', jsonb_build_array(m.id)));
    END IF;
    RETURN QUERY SELECT m.id, m.status, m.version;
END
$$;

CREATE FUNCTION ibex_core.memory_history(p_org uuid, p_memory uuid)
RETURNS SETOF ibex_core.memory_versions
LANGUAGE plpgsql STABLE AS $$
BEGIN
    PERFORM ibex_core.assert_org(p_org);
    IF NOT EXISTS (SELECT 1 FROM ibex_core.memories m WHERE m.org_id = p_org AND m.id = p_memory) THEN
        RAISE EXCEPTION 'memory % not found', p_memory USING ERRCODE = 'no_data_found';
    END IF;
    RETURN QUERY SELECT * FROM ibex_core.memory_versions v
                 WHERE v.org_id = p_org AND v.memory_id = p_memory ORDER BY v.version, v.created_at;
END
$$;

CREATE FUNCTION ibex_core.list_conflicts(p_org uuid, p_agent uuid DEFAULT NULL, p_status text DEFAULT 'open')
RETURNS TABLE (conflict_id uuid, agent_id uuid, memory_id uuid, memory_content text, conflicting_memory_id uuid,
               conflicting_content text, similarity real, status text, created_at timestamptz)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    PERFORM ibex_core.assert_org(p_org);
    IF p_status IS NOT NULL AND p_status NOT IN ('open', 'resolved', 'dismissed') THEN
        RAISE EXCEPTION 'invalid conflict status: %', p_status USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Use open, resolved, dismissed, or NULL for all.';
    END IF;
    RETURN QUERY
    SELECT c.id, a.agent_id, a.id, a.content, b.id, b.content, c.similarity, c.status, c.created_at
    FROM ibex_core.memory_conflicts c
    JOIN ibex_core.memories a ON a.org_id = c.org_id AND a.id = c.memory_id
    JOIN ibex_core.memories b ON b.org_id = c.org_id AND b.id = c.conflicting_memory_id
    WHERE c.org_id = p_org AND (p_agent IS NULL OR a.agent_id = p_agent) AND (p_status IS NULL OR c.status = p_status)
    ORDER BY c.created_at, c.id;
END
$$;

-- Closes a conflict; optionally forgets the memory that lost.
CREATE FUNCTION ibex_core.resolve_conflict(p_org uuid, p_conflict uuid, p_status text DEFAULT 'resolved',
                                           p_resolution text DEFAULT NULL, p_forget_memory uuid DEFAULT NULL)
RETURNS TABLE (conflict_id uuid, status text)
LANGUAGE plpgsql AS $$
DECLARE
    c ibex_core.memory_conflicts%ROWTYPE;
BEGIN
    PERFORM ibex_core.assert_org(p_org);
    IF p_status NOT IN ('resolved', 'dismissed') THEN
        RAISE EXCEPTION 'invalid resolution status: %', p_status USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Use resolved or dismissed.';
    END IF;
    SELECT * INTO c FROM ibex_core.memory_conflicts x WHERE x.org_id = p_org AND x.id = p_conflict FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'conflict % not found', p_conflict USING ERRCODE = 'no_data_found';
    END IF;
    IF p_forget_memory IS NOT NULL AND p_forget_memory NOT IN (c.memory_id, c.conflicting_memory_id) THEN
        RAISE EXCEPTION 'memory % is not part of conflict %', p_forget_memory, p_conflict
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE ibex_core.memory_conflicts x SET status = p_status, resolution = p_resolution, resolved_at = now()
    WHERE x.org_id = p_org AND x.id = p_conflict AND x.status = 'open';
    IF p_forget_memory IS NOT NULL THEN
        PERFORM ibex_core.forget(p_org, p_forget_memory, coalesce(p_resolution, 'lost a conflict'));
    END IF;
    RETURN QUERY SELECT x.id, x.status FROM ibex_core.memory_conflicts x WHERE x.org_id = p_org AND x.id = p_conflict;
END
$$;

------------------------------------------------------------------------------------------------
-- Privileges
------------------------------------------------------------------------------------------------

REVOKE ALL ON FUNCTION ibex_core.remember, ibex_core.search, ibex_core.feedback, ibex_core.forget,
    ibex_core.memory_history, ibex_core.list_conflicts, ibex_core.resolve_conflict FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ibex_core.remember, ibex_core.search, ibex_core.feedback, ibex_core.forget,
    ibex_core.memory_history, ibex_core.list_conflicts, ibex_core.resolve_conflict TO ibex_app;
GRANT INSERT ON ibex_core.memory_access TO ibex_app;
GRANT SELECT, INSERT, UPDATE ON ibex_core.lexeme_stats, ibex_core.agent_memory_stats TO ibex_app;

RESET ROLE;
