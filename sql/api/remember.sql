-- remember: the 9-step write pipeline (DESIGN.md).
SET LOCAL ROLE ibex_owner;

CREATE OR REPLACE FUNCTION ibex_core.remember(
    p_org             uuid,
    p_agent           uuid,
    p_content         text,
    p_category        text DEFAULT 'declarative',
    p_confidence      real DEFAULT 0.8,
    p_tags            text[] DEFAULT '{}',
    p_source_session  uuid DEFAULT NULL,
    p_source_turn     integer DEFAULT NULL,
    p_metadata        jsonb DEFAULT '{}',
    -- When what it says happened (a learned memory: its turn's time); NULL: when it is stored.
    p_occurred_at     timestamptz DEFAULT NULL,
    -- The session turns it came from; NULL: p_source_turn alone, when given.
    p_source_turns    integer[] DEFAULT NULL)
RETURNS TABLE (memory_id uuid, path text, superseded_ids uuid[], conflicts jsonb)
LANGUAGE plpgsql
AS $$
DECLARE
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
    v_turns       integer[];
    r             record;
BEGIN
    -- 1. Validate.
    PERFORM ibex_core.assert_org(p_org);
    IF p_agent IS NULL THEN
        RAISE EXCEPTION 'agent must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    PERFORM ibex_core.assert_memory_content(p_content);
    PERFORM ibex_core.assert_category(p_category);
    IF p_confidence IS NULL OR NOT (p_confidence BETWEEN 0 AND 1) THEN
        RAISE EXCEPTION 'confidence must be between 0 and 1, got %', coalesce(p_confidence::text, 'NULL')
            USING ERRCODE = 'numeric_value_out_of_range';
    END IF;
    PERFORM ibex_core.assert_metadata(p_metadata);
    PERFORM ibex_core.assert_occurred_at(p_occurred_at);
    v_turns := ibex_core.source_turns(p_source_turns, p_source_turn);
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
    --    first's row once it holds the lock: each statement takes a new snapshot). The lock is
    --    the agent's row (NO KEY UPDATE: foreign-key checks of other writers still pass), which
    --    only sessions of this org can see and so lock; an advisory lock key could be computed
    --    and held by any session of any org.
    PERFORM 1 FROM ibex_core.agents a WHERE a.org_id = p_org AND a.id = p_agent FOR NO KEY UPDATE;
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
                                    source_session_id, source_turn, source_turns, occurred_at, metadata)
    VALUES (p_org, v_id, p_agent, v_content, v_hash, v_embedding, p_category, p_confidence,
            p_source_session, v_turns[1], v_turns, p_occurred_at, p_metadata);
    INSERT INTO ibex_core.memory_versions (org_id, memory_id, version, change, content, content_hash, category,
                                           confidence, status, reason, source_session_id, source_turns, occurred_at)
    VALUES (p_org, v_id, 1, 'created', v_content, v_hash, p_category, p_confidence, 'active',
            CASE WHEN cardinality(v_superseded) > 0 THEN 'supersedes ' || array_to_string(v_superseded, ', ') END,
            p_source_session, v_turns, p_occurred_at);
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

    -- 8. Hot cache: the memories' triggers wrote its outbox events (sql/api/hot_cache_invalidation.sql).
    -- 9. Index work: a durable outbox event in this transaction.
    PERFORM ibex_core.notify_outbox(p_org, 'index', 'memory.created', v_id,
        jsonb_build_object('agent_id', p_agent, 'memory_id', v_id));

    RETURN QUERY SELECT v_id, CASE WHEN cardinality(v_superseded) > 0 THEN 'superseded' ELSE 'created' END,
                        v_superseded, v_conflicts;
END
$$;

-- Applications write only through functions (migration 0016): this one runs with its owner's
-- privileges, for the caller's org alone (assert_org, and row-level security forced on the owner).
ALTER FUNCTION ibex_core.remember SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp;
REVOKE ALL ON FUNCTION ibex_core.remember FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ibex_core.remember TO ibex_app;
