-- Per-agent document frequencies behind the lexical part of relevance (the IDF of search),
-- kept by statement triggers on memories.
SET LOCAL ROLE ibex_owner;

CREATE OR REPLACE FUNCTION ibex_core.apply_memory_stat_deltas(p_rows ibex_core.memory_stat_delta[]) RETURNS void
    LANGUAGE plpgsql AS $$
DECLARE
    -- A write that only adds (remember) or only removes (forget) skips the other direction's
    -- statements: each costs an executor start and a row-level security check even when it
    -- touches nothing. No row of one sign means no group sum of that sign.
    v_adds    boolean := false;
    v_removes boolean := false;
BEGIN
    IF coalesce(cardinality(p_rows), 0) = 0 THEN
        RETURN;
    END IF;
    SELECT coalesce(bool_or(r.delta > 0), false), coalesce(bool_or(r.delta < 0), false)
    INTO v_adds, v_removes FROM unnest(p_rows) r;
    -- Rows are written in key order so concurrent writers always lock them in the same order,
    -- and every agent row before any lexeme row (so the guarded blocks below are not merged).
    IF v_adds THEN
        INSERT INTO ibex_core.agent_memory_stats AS s (org_id, agent_id, active_memories)
        SELECT org_id, agent_id, sum(delta) FROM unnest(p_rows) GROUP BY 1, 2 HAVING sum(delta) > 0 ORDER BY 1, 2
        ON CONFLICT (org_id, agent_id) DO UPDATE SET active_memories = s.active_memories + excluded.active_memories;
    END IF;
    IF v_removes THEN
        UPDATE ibex_core.agent_memory_stats s SET active_memories = greatest(0, s.active_memories + d.delta)
        FROM (SELECT org_id, agent_id, sum(delta) AS delta FROM unnest(p_rows) GROUP BY 1, 2 HAVING sum(delta) < 0) d
        WHERE s.org_id = d.org_id AND s.agent_id = d.agent_id;
    END IF;

    IF v_adds THEN
        INSERT INTO ibex_core.lexeme_stats AS s (org_id, agent_id, lexeme, doc_count)
        SELECT r.org_id, r.agent_id, l.lexeme, sum(r.delta)
        FROM unnest(p_rows) r, unnest(tsvector_to_array(r.content_tsv)) AS l(lexeme)
        GROUP BY 1, 2, 3 HAVING sum(r.delta) > 0 ORDER BY 1, 2, 3
        ON CONFLICT (org_id, agent_id, lexeme) DO UPDATE SET doc_count = s.doc_count + excluded.doc_count;
    END IF;
    IF v_removes THEN
        UPDATE ibex_core.lexeme_stats s SET doc_count = greatest(0, s.doc_count + d.delta)
        FROM (SELECT r.org_id, r.agent_id, l.lexeme, sum(r.delta) AS delta
              FROM unnest(p_rows) r, unnest(tsvector_to_array(r.content_tsv)) AS l(lexeme)
              GROUP BY 1, 2, 3 HAVING sum(r.delta) < 0) d
        WHERE s.org_id = d.org_id AND s.agent_id = d.agent_id AND s.lexeme = d.lexeme;
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION ibex_core.memories_stats_after_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ibex_core.apply_memory_stat_deltas(ARRAY(
        SELECT ROW(org_id, agent_id, content_tsv, 1)::ibex_core.memory_stat_delta
        FROM new_rows WHERE status = 'active'));
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION ibex_core.memories_stats_after_update() RETURNS trigger LANGUAGE plpgsql AS $$
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

CREATE OR REPLACE FUNCTION ibex_core.memories_stats_after_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM ibex_core.apply_memory_stat_deltas(ARRAY(
        SELECT ROW(org_id, agent_id, content_tsv, -1)::ibex_core.memory_stat_delta
        FROM old_rows WHERE status = 'active'));
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER memories_stats_insert AFTER INSERT ON ibex_core.memories
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ibex_core.memories_stats_after_insert();

CREATE OR REPLACE TRIGGER memories_stats_update AFTER UPDATE ON ibex_core.memories
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION ibex_core.memories_stats_after_update();

CREATE OR REPLACE TRIGGER memories_stats_delete AFTER DELETE ON ibex_core.memories
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION ibex_core.memories_stats_after_delete();

-- A tsquery matching exactly one lexeme, as stored (no re-parsing or re-stemming).
CREATE OR REPLACE FUNCTION ibex_core.lexeme_query(p_lexeme text) RETURNS tsquery
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT ('''' || replace(replace(p_lexeme, '\', '\\'), '''', '''''') || '''')::tsquery $$;

