-- Standing instructions learned by extraction wait for review (migration 0015): one user's turn
-- must not become a procedural memory injected for every user of the agent.
SET LOCAL ROLE ibex_owner;

-- What extraction calls for each memory it learned, instead of remember: a procedural memory is
-- queued for review ('queued', or 'duplicate' when the same instruction already waits or is
-- already a memory); any other goes through remember (its path). Superusers only (the
-- extraction workers); an application has remember.
-- p_turns are the turns it came from, p_occurred_at the time of the first of them.
CREATE OR REPLACE FUNCTION ibex_core.learn(p_org uuid, p_agent uuid, p_content text, p_category text,
                                           p_confidence real, p_session uuid, p_turns integer[],
                                           p_occurred_at timestamptz, p_metadata jsonb DEFAULT '{}')
RETURNS TABLE (learned_path text, learned_id uuid)
LANGUAGE plpgsql AS $$
DECLARE
    v_content text;
    v_existing uuid;
    v_user uuid;
    v_id uuid;
    v_turns integer[];
BEGIN
    PERFORM ibex_core.assert_org(p_org);
    IF p_category IS DISTINCT FROM 'procedural' THEN
        RETURN QUERY SELECT r.path, r.memory_id
                     FROM ibex_core.remember(p_org, p_agent, p_content, p_category, p_confidence, '{}',
                                             p_session, NULL, p_metadata, p_occurred_at, p_turns) r;
        RETURN;
    END IF;
    PERFORM ibex_core.assert_memory_content(p_content);
    PERFORM ibex_core.assert_metadata(p_metadata);
    PERFORM ibex_core.assert_occurred_at(p_occurred_at);
    v_turns := ibex_core.source_turns(p_turns, NULL);
    v_content := ibex_redact_pii(btrim(p_content));
    SELECT m.id INTO v_existing FROM ibex_core.memories m
    WHERE m.org_id = p_org AND m.agent_id = p_agent AND m.status = 'active'
      AND m.content_hash = ibex_content_hash(v_content);
    IF NOT FOUND THEN
        SELECT r.id INTO v_existing FROM ibex_core.memory_reviews r
        WHERE r.org_id = p_org AND r.agent_id = p_agent AND r.status = 'open' AND r.content = v_content;
    END IF;
    IF v_existing IS NOT NULL THEN
        RETURN QUERY SELECT 'duplicate'::text, v_existing;
        RETURN;
    END IF;
    SELECT s.user_id INTO v_user FROM ibex_core.sessions s WHERE s.org_id = p_org AND s.id = p_session;
    INSERT INTO ibex_core.memory_reviews (org_id, agent_id, content, category, confidence, source_session_id,
                                          source_turn, source_turns, occurred_at, user_id, metadata)
    VALUES (p_org, p_agent, v_content, p_category, p_confidence, p_session, v_turns[1], v_turns, p_occurred_at,
            v_user, p_metadata)
    RETURNING id INTO v_id;
    RETURN QUERY SELECT 'queued'::text, v_id;
END
$$;

CREATE OR REPLACE FUNCTION ibex_core.list_reviews(p_org uuid, p_agent uuid DEFAULT NULL, p_status text DEFAULT 'open')
RETURNS TABLE (review_id uuid, agent_id uuid, content text, category text, confidence real,
               source_session_id uuid, user_id uuid, status text, created_at timestamptz)
LANGUAGE plpgsql STABLE AS $$
BEGIN
    PERFORM ibex_core.assert_org(p_org);
    IF p_status IS NOT NULL AND p_status NOT IN ('open', 'approved', 'rejected') THEN
        RAISE EXCEPTION 'invalid review status: %', p_status USING ERRCODE = 'invalid_parameter_value',
            HINT = 'Use open, approved, rejected, or NULL for all.';
    END IF;
    RETURN QUERY
    SELECT r.id, r.agent_id, r.content, r.category, r.confidence, r.source_session_id, r.user_id, r.status,
           r.created_at
    FROM ibex_core.memory_reviews r
    WHERE r.org_id = p_org AND (p_agent IS NULL OR r.agent_id = p_agent) AND (p_status IS NULL OR r.status = p_status)
    ORDER BY r.created_at, r.id;
END
$$;

-- The open review, locked; an error when there is none.
CREATE OR REPLACE FUNCTION ibex_core.open_review(p_org uuid, p_review uuid)
RETURNS ibex_core.memory_reviews
LANGUAGE plpgsql AS $$
DECLARE
    r ibex_core.memory_reviews%ROWTYPE;
BEGIN
    SELECT * INTO r FROM ibex_core.memory_reviews x WHERE x.org_id = p_org AND x.id = p_review FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'review % not found', p_review USING ERRCODE = 'no_data_found';
    END IF;
    IF r.status <> 'open' THEN
        RAISE EXCEPTION 'review % is already %', p_review, r.status
            USING ERRCODE = 'object_not_in_prerequisite_state', HINT = 'Only open reviews can be decided.';
    END IF;
    RETURN r;
END
$$;

-- Approves a queued memory: it goes through remember (de-duplication, supersession, the hot
-- cache) as the agent's memory, with `reviewed` in its metadata.
CREATE OR REPLACE FUNCTION ibex_core.approve_review(p_org uuid, p_review uuid, p_decision text DEFAULT NULL)
RETURNS TABLE (review_id uuid, memory_id uuid, path text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_catalog, pg_temp AS $$
DECLARE
    r ibex_core.memory_reviews%ROWTYPE;
    m record;
BEGIN
    PERFORM ibex_core.assert_org(p_org);
    r := ibex_core.open_review(p_org, p_review);
    SELECT x.memory_id, x.path INTO m
    FROM ibex_core.remember(p_org, r.agent_id, r.content, r.category, r.confidence, '{}', r.source_session_id,
                            r.source_turn, r.metadata || jsonb_build_object('reviewed', true, 'review_id', r.id),
                            r.occurred_at, r.source_turns) x;
    UPDATE ibex_core.memory_reviews x SET status = 'approved', decision = p_decision, decided_at = now(),
                                          memory_id = m.memory_id
    WHERE x.org_id = p_org AND x.id = p_review;
    RETURN QUERY SELECT p_review, m.memory_id, m.path;
END
$$;

CREATE OR REPLACE FUNCTION ibex_core.reject_review(p_org uuid, p_review uuid, p_decision text DEFAULT NULL)
RETURNS TABLE (review_id uuid, status text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_catalog, pg_temp AS $$
BEGIN
    PERFORM ibex_core.assert_org(p_org);
    PERFORM ibex_core.open_review(p_org, p_review);
    UPDATE ibex_core.memory_reviews x SET status = 'rejected', decision = p_decision, decided_at = now()
    WHERE x.org_id = p_org AND x.id = p_review;
    RETURN QUERY SELECT p_review, 'rejected'::text;
END
$$;

REVOKE ALL ON FUNCTION ibex_core.learn(uuid, uuid, text, text, real, uuid, integer[], timestamptz, jsonb),
    ibex_core.open_review(uuid, uuid), ibex_core.list_reviews(uuid, uuid, text),
    ibex_core.approve_review(uuid, uuid, text), ibex_core.reject_review(uuid, uuid, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION ibex_core.list_reviews(uuid, uuid, text), ibex_core.approve_review(uuid, uuid, text),
    ibex_core.reject_review(uuid, uuid, text) TO ibex_app;
