-- search: hybrid (semantic + lexical) retrieval ranked by the composite score.
--
-- One ranking, one body: search_by_vector takes the query's vector from the caller (the sidecar
-- embeds the query once per AssembleContext call and must not pay for a second embedding here);
-- search() is a thin wrapper that passes none, and search_by_vector embeds the query itself.
--
-- Access is recorded by its own INSERT after the read, not by a data-modifying CTE inside it: a
-- statement with a data-modifying CTE is refused in a read-only transaction even when it inserts
-- nothing, and search(..., p_record_access => false) must run on a hot standby. The sidecar
-- searches without recording and records only what it packed into an answer (record_access).

-- pgvector's settings (ivfflat.*, set on search_by_vector() below) exist once its library is
-- loaded, and ibex_owner may not set a placeholder; LOAD needs the runner's own (superuser) role.
LOAD 'vector';
SET LOCAL ROLE ibex_owner;

-- Probes and iterative scans are function settings (ALTER FUNCTION ... SET ivfflat.probes = n
-- tunes them); relaxed order is fine because candidates are re-scored exactly afterwards.
CREATE OR REPLACE FUNCTION ibex_core.search_by_vector(
    p_org             uuid,
    p_agent           uuid,
    p_query           text,
    p_query_vector    vector,
    p_k               integer DEFAULT 10,
    p_categories      text[] DEFAULT NULL,
    p_tags            text[] DEFAULT NULL,
    p_created_after   timestamptz DEFAULT NULL,
    p_created_before  timestamptz DEFAULT NULL,
    p_record_access   boolean DEFAULT true,
    p_occurred_after  timestamptz DEFAULT NULL,
    p_occurred_before timestamptz DEFAULT NULL)
RETURNS TABLE (memory_id uuid, content text, category text, confidence real, tags text[], created_at timestamptz,
               occurred_at timestamptz, score float8, relevance float8, semantic float8, lexical float8, recency float8,
               usefulness float8, access_frequency float8)
LANGUAGE plpgsql
-- Planning the candidate query costs more than running it; one generic plan serves every call
-- (the exact/IVFFlat choice is a run-time filter, so a generic plan loses nothing).
SET plan_cache_mode = force_generic_plan
-- A search runs in milliseconds; JIT compiling its plan (chosen when row estimates of the scoring
-- functions add up) costs over a second.
SET jit = off
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
    v_found     uuid[] := '{}';
    -- Bridging (below): how many first-pass results lend their terms, and how many of the
    -- agent's memories a name may be in (more is a common word, not a name).
    v_bridge_parents  integer := CASE WHEN current_setting('ibex.search_bridging')::boolean THEN 3 ELSE 0 END;
    v_bridge_max_docs integer := 8;
BEGIN
    PERFORM ibex_core.assert_org(p_org);
    IF p_agent IS NULL THEN
        RAISE EXCEPTION 'agent must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    IF p_query IS NULL OR btrim(p_query) = '' THEN
        RAISE EXCEPTION 'search query is empty' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Bounded before it is embedded or parsed into terms.
    IF length(p_query) > current_setting('ibex.max_query_chars')::integer THEN
        RAISE EXCEPTION 'search query is too long' USING ERRCODE = 'program_limit_exceeded',
            DETAIL = format('%s characters; the limit (ibex.max_query_chars) is %s.',
                            length(p_query), current_setting('ibex.max_query_chars')),
            HINT = 'Search with the question itself, not a whole document.';
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

    -- The caller's vector (the sidecar embeds the query once and passes it), or, from search(),
    -- none: embedded here, after validation, so a refused call costs no inference.
    v_query := coalesce(p_query_vector, ibex_embed(p_query));

    -- Query terms (stemmed, stop words dropped) with their inverse document frequency among the
    -- agent's active memories, BM25's idf (ibex_idf, the engine's formula). Lexical candidates
    -- come from terms that occur but are not everywhere: a term in most of the agent's memories
    -- would make every memory a candidate and carries little weight anyway. One statement for
    -- all of it: each statement costs its own executor start and row-level security check.
    WITH agent AS (
        SELECT coalesce((SELECT s.active_memories FROM ibex_core.agent_memory_stats s
                         WHERE s.org_id = p_org AND s.agent_id = p_agent), 0) AS n),
    terms AS (
        SELECT l.lexeme, coalesce(st.doc_count, 0) AS df
        FROM unnest(tsvector_to_array(to_tsvector('english', p_query))) AS l(lexeme)
        LEFT JOIN ibex_core.lexeme_stats st ON st.org_id = p_org AND st.agent_id = p_agent AND st.lexeme = l.lexeme)
    SELECT agent.n,
           (SELECT array_agg(t.lexeme ORDER BY t.lexeme) FROM terms t),
           (SELECT array_agg(ibex_idf(agent.n, t.df) ORDER BY t.lexeme) FROM terms t),
           (SELECT string_agg(ibex_core.lexeme_query(t.lexeme)::text, ' | ' ORDER BY t.lexeme)::tsquery FROM terms t
            WHERE t.df > 0 AND t.df <= greatest(50, agent.n / 5))
    INTO v_n, v_terms, v_idf, v_any
    FROM agent;
    v_idf_total := (SELECT sum(x) FROM unnest(v_idf) x);

    -- Candidates. An agent with few memories is searched exactly: one pass over its rows (from
    -- the agent index) yields both the nearest vectors and the full-text matches. A full cosine
    -- scan of a few thousand vectors is cheaper than probing IVFFlat lists shared with every
    -- other agent and misses nothing, and testing each row's tsvector on the way is cheaper than
    -- a GIN scan whose posting lists span every agent. Larger agents go through the IVFFlat index
    -- (iterative scans, so the agent filter cannot starve the result) and the GIN index. The
    -- branch not taken is cut by a one-time filter at run time.
    v_exact := v_n <= current_setting('ibex.exact_search_max_memories')::integer;

    FOR memory_id, content, category, confidence, tags, created_at, occurred_at, score, relevance, semantic,
        lexical, recency, usefulness, access_frequency IN
    WITH agent_rows AS MATERIALIZED (
        SELECT m.id, m.embedding <=> v_query AS distance,
               CASE WHEN v_any IS NOT NULL AND m.content_tsv @@ v_any THEN
                   (SELECT sum(w.idf) FROM unnest(v_terms, v_idf) AS w(term, idf)
                    WHERE m.content_tsv @@ ibex_core.lexeme_query(w.term))
               END AS lexical_score
        FROM ibex_core.memories m
        WHERE v_exact AND m.org_id = p_org AND m.agent_id = p_agent AND m.status = 'active'
           AND (p_categories IS NULL OR m.category = ANY (p_categories))
           AND (p_created_after IS NULL OR m.created_at >= p_created_after)
           AND (p_created_before IS NULL OR m.created_at < p_created_before)
           AND (p_occurred_after IS NULL OR coalesce(m.occurred_at, m.created_at) >= p_occurred_after)
           AND (p_occurred_before IS NULL OR coalesce(m.occurred_at, m.created_at) < p_occurred_before)
           AND (v_tags IS NULL OR EXISTS (
                 SELECT 1 FROM ibex_core.memory_tags mt JOIN ibex_core.tags t ON t.org_id = mt.org_id AND t.id = mt.tag_id
                 WHERE mt.org_id = m.org_id AND mt.memory_id = m.id AND t.name = ANY (v_tags)))),
    semantic_candidates AS (
        (SELECT r.id FROM agent_rows r ORDER BY r.distance LIMIT v_pool)
        UNION ALL
        (SELECT m.id
         FROM ibex_core.memories m
         WHERE NOT v_exact AND m.org_id = p_org AND m.agent_id = p_agent AND m.status = 'active'
           AND (p_categories IS NULL OR m.category = ANY (p_categories))
           AND (p_created_after IS NULL OR m.created_at >= p_created_after)
           AND (p_created_before IS NULL OR m.created_at < p_created_before)
           AND (p_occurred_after IS NULL OR coalesce(m.occurred_at, m.created_at) >= p_occurred_after)
           AND (p_occurred_before IS NULL OR coalesce(m.occurred_at, m.created_at) < p_occurred_before)
           AND (v_tags IS NULL OR EXISTS (
                 SELECT 1 FROM ibex_core.memory_tags mt JOIN ibex_core.tags t ON t.org_id = mt.org_id AND t.id = mt.tag_id
                 WHERE mt.org_id = m.org_id AND mt.memory_id = m.id AND t.name = ANY (v_tags)))
         ORDER BY m.embedding <=> v_query
         LIMIT v_pool)),
    lexical_candidates AS (
        (SELECT r.id FROM agent_rows r WHERE r.lexical_score IS NOT NULL
         ORDER BY r.lexical_score DESC, r.id LIMIT v_pool)
        UNION ALL
        (SELECT m.id
         FROM ibex_core.memories m
         WHERE NOT v_exact AND v_any IS NOT NULL
           AND m.org_id = p_org AND m.agent_id = p_agent AND m.content_tsv @@ v_any AND m.status = 'active'
           AND (p_categories IS NULL OR m.category = ANY (p_categories))
           AND (p_created_after IS NULL OR m.created_at >= p_created_after)
           AND (p_created_before IS NULL OR m.created_at < p_created_before)
           AND (p_occurred_after IS NULL OR coalesce(m.occurred_at, m.created_at) >= p_occurred_after)
           AND (p_occurred_before IS NULL OR coalesce(m.occurred_at, m.created_at) < p_occurred_before)
           AND (v_tags IS NULL OR EXISTS (
                 SELECT 1 FROM ibex_core.memory_tags mt JOIN ibex_core.tags t ON t.org_id = mt.org_id AND t.id = mt.tag_id
                 WHERE mt.org_id = m.org_id AND mt.memory_id = m.id AND t.name = ANY (v_tags)))
         ORDER BY (SELECT sum(w.idf) FROM unnest(v_terms, v_idf) AS w(term, idf)
                   WHERE m.content_tsv @@ ibex_core.lexeme_query(w.term)) DESC, m.id
         LIMIT v_pool)),
    candidates AS (
        SELECT id FROM semantic_candidates UNION SELECT id FROM lexical_candidates),
    signals AS (
        SELECT m.*, greatest(0, 1 - (m.embedding <=> v_query)) AS sem, lx.lex
        FROM candidates c JOIN ibex_core.memories m ON m.org_id = p_org AND m.id = c.id,
             -- OFFSET 0 keeps the coverage a subquery run once per candidate: pulled up, the
             -- planner would copy the sum into each place first_pass reads it.
             LATERAL (SELECT CASE WHEN coalesce(v_idf_total, 0) > 0 THEN
                                  coalesce((SELECT sum(w.idf) FROM unnest(v_terms, v_idf) AS w(term, idf)
                                            WHERE m.content_tsv @@ ibex_core.lexeme_query(w.term)), 0) / v_idf_total
                             ELSE 0 END AS lex
                      OFFSET 0) lx),
    first_pass AS MATERIALIZED (
        SELECT s.id, s.content, s.category, s.confidence, s.created_at, s.occurred_at, s.content_tsv, s.sem, s.lex,
               s.useful_count, s.not_useful_count, s.access_count, s.last_accessed_at,
               sc.relevance, sc.recency, sc.usefulness, sc.access_frequency, sc.total
        FROM signals s,
             LATERAL ibex_score_components(ibex_relevance(s.sem, s.lex), s.confidence, s.useful_count,
                                           s.not_useful_count, s.access_count,
                                           coalesce(s.last_accessed_at, s.occurred_at, s.created_at), now()) sc),
    -- Bridging (docs/ARCHITECTURE.md, "Search"): a conversation names a person or a place once
    -- with what a question asks about ("my cousin Zeno") and later by name alone ("Zeno started a
    -- course"). The best first-pass results lend the query terms they contain to the candidates
    -- that share a name with them (a capitalised word, not a query term, in few of the agent's
    -- memories): such a candidate's lexical coverage counts the terms it or that result has.
    parents AS (
        SELECT f.id, f.content, f.content_tsv FROM first_pass f ORDER BY f.total DESC, f.id LIMIT v_bridge_parents),
    -- The parents' names first, materialised: joined with the agent's statistics inside one
    -- query, the planner may walk every statistics row and re-parse the parents for each.
    parent_names AS MATERIALIZED (
        SELECT p.id AS parent, p.content_tsv AS parent_tsv, l.lexeme
        FROM parents p,
             LATERAL (SELECT DISTINCT unnest(tsvector_to_array(to_tsvector('english', string_agg(w[1], ' ')))) AS lexeme
                      FROM regexp_matches(p.content, '\m[[:upper:]][[:alnum:]]+', 'g') AS w) l
        WHERE l.lexeme <> ALL (coalesce(v_terms, '{}'))),
    bridge_words AS (
        SELECT n.parent, n.parent_tsv, ibex_core.lexeme_query(n.lexeme) AS word
        FROM parent_names n
        JOIN ibex_core.lexeme_stats st ON st.org_id = p_org AND st.agent_id = p_agent AND st.lexeme = n.lexeme
        WHERE st.doc_count BETWEEN 2 AND v_bridge_max_docs),
    bridged AS (
        SELECT f.id,
               max((SELECT sum(w.idf) FROM unnest(v_terms, v_idf) AS w(term, idf)
                    WHERE f.content_tsv @@ ibex_core.lexeme_query(w.term)
                       OR b.parent_tsv @@ ibex_core.lexeme_query(w.term)) / v_idf_total) AS lex
        FROM first_pass f JOIN bridge_words b ON f.id <> b.parent AND f.content_tsv @@ b.word
        WHERE coalesce(v_idf_total, 0) > 0
        GROUP BY f.id),
    -- Only a bridged candidate is scored again.
    ranked AS (
        SELECT f.id, f.content, f.category, f.confidence, f.created_at, f.occurred_at, f.sem,
               coalesce(b.lex, f.lex) AS lex, coalesce(r.relevance, f.relevance) AS relevance,
               coalesce(r.recency, f.recency) AS recency, coalesce(r.usefulness, f.usefulness) AS usefulness,
               coalesce(r.access_frequency, f.access_frequency) AS access_frequency,
               coalesce(r.total, f.total) AS total
        FROM first_pass f
        LEFT JOIN bridged b ON b.id = f.id AND b.lex > f.lex
        LEFT JOIN LATERAL (
            SELECT sc.* FROM ibex_score_components(ibex_relevance(f.sem, b.lex), f.confidence, f.useful_count,
                                                   f.not_useful_count, f.access_count,
                                                   coalesce(f.last_accessed_at, f.occurred_at, f.created_at), now()) sc
            WHERE b.id IS NOT NULL) r ON true
        ORDER BY total DESC, f.id
        LIMIT p_k)
    SELECT r.id, r.content, r.category, r.confidence,
           ARRAY(SELECT t.name FROM ibex_core.memory_tags mt JOIN ibex_core.tags t ON t.org_id = mt.org_id AND t.id = mt.tag_id
                 WHERE mt.org_id = p_org AND mt.memory_id = r.id ORDER BY t.name),
           r.created_at, r.occurred_at, r.total, r.relevance, r.sem, r.lex, r.recency, r.usefulness, r.access_frequency
    FROM ranked r
    ORDER BY r.total DESC, r.id
    LOOP
        v_found := v_found || memory_id;
        RETURN NEXT;
    END LOOP;

    -- Recorded after the read, by a statement of its own, so that a search without recording
    -- writes nothing and runs in a read-only transaction (a hot standby).
    IF p_record_access AND cardinality(v_found) > 0 THEN
        INSERT INTO ibex_core.memory_access (org_id, memory_id) SELECT p_org, unnest(v_found);
    END IF;
END
$$;

-- The same ranking with the query embedded in the database.
CREATE OR REPLACE FUNCTION ibex_core.search(
    p_org             uuid,
    p_agent           uuid,
    p_query           text,
    p_k               integer DEFAULT 10,
    p_categories      text[] DEFAULT NULL,
    p_tags            text[] DEFAULT NULL,
    p_created_after   timestamptz DEFAULT NULL,
    p_created_before  timestamptz DEFAULT NULL,
    p_record_access   boolean DEFAULT true,
    p_occurred_after  timestamptz DEFAULT NULL,
    p_occurred_before timestamptz DEFAULT NULL)
RETURNS TABLE (memory_id uuid, content text, category text, confidence real, tags text[], created_at timestamptz,
               occurred_at timestamptz, score float8, relevance float8, semantic float8, lexical float8, recency float8,
               usefulness float8, access_frequency float8)
LANGUAGE plpgsql AS $$
BEGIN
    RETURN QUERY SELECT * FROM ibex_core.search_by_vector(p_org, p_agent, p_query, NULL, p_k, p_categories, p_tags,
                                                           p_created_after, p_created_before, p_record_access,
                                                           p_occurred_after, p_occurred_before);
END
$$;

-- Records that memories were read (shown to a model): the sidecar calls it after packing, for
-- the packed memories only. Ids of memories the org cannot see are ignored.
CREATE OR REPLACE FUNCTION ibex_core.record_access(p_org uuid, p_memory_ids uuid[]) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    v_count integer;
BEGIN
    PERFORM ibex_core.assert_org(p_org);
    IF cardinality(p_memory_ids) > 1000 THEN
        RAISE EXCEPTION 'at most 1000 memory ids per call, got %', cardinality(p_memory_ids)
            USING ERRCODE = 'program_limit_exceeded';
    END IF;
    INSERT INTO ibex_core.memory_access (org_id, memory_id)
    SELECT p_org, m.id FROM ibex_core.memories m
    WHERE m.org_id = p_org AND m.id = ANY (p_memory_ids);
    GET DIAGNOSTICS v_count = ROW_COUNT;
    RETURN v_count;
END
$$;

-- Applications write only through functions (migration 0016): this one runs with its owner's
-- privileges, for the caller's org alone (assert_org, and row-level security forced on the owner).
ALTER FUNCTION ibex_core.search_by_vector SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp;
ALTER FUNCTION ibex_core.search SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp;
ALTER FUNCTION ibex_core.record_access SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp;
REVOKE ALL ON FUNCTION ibex_core.search_by_vector FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ibex_core.search_by_vector TO ibex_app;
REVOKE ALL ON FUNCTION ibex_core.search FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ibex_core.search TO ibex_app;
REVOKE ALL ON FUNCTION ibex_core.record_access FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ibex_core.record_access TO ibex_app;
