-- ibex_core.record_usage: one row of `usage_events` per proxied chat completion, successful or
-- not. The sidecar's proxy calls it inside the org's transaction (`ibex.org_id` set), after the
-- turns were appended, so a call and its accounting commit together.
--
-- Usage is what the proxy metered, so only the sidecar records it: an application could
-- otherwise forge or inflate its own usage. SECURITY DEFINER (applications and the sidecar hold
-- no INSERT on tenant tables, migration 0016); row-level security still confines the row to the
-- org of the transaction. The function adds the checks a bare INSERT would report as a
-- constraint name.
SET LOCAL ROLE ibex_owner;

CREATE OR REPLACE FUNCTION ibex_core.record_usage(
    p_org               uuid,
    p_agent             uuid,
    p_session           uuid,
    p_token             uuid,
    p_model             text,
    p_prompt_tokens     integer,
    p_completion_tokens integer,
    p_latency_ms        integer,
    p_status_code       integer,
    p_streamed          boolean,
    -- What the context's memories cost (NULL: unknown); see migration 0023.
    p_memory_tokens     integer DEFAULT NULL,
    p_memory_count      integer DEFAULT NULL,
    p_memory_source     text DEFAULT NULL,
    -- The row's id when the caller chose it (NULL: a new one): the proxy retries a recording
    -- cut off by a database restart and checks first whether its row exists (migration 0025).
    p_id                uuid DEFAULT NULL
) RETURNS uuid
LANGUAGE plpgsql SECURITY INVOKER AS $$
DECLARE
    v_id uuid;
BEGIN
    PERFORM ibex_core.assert_org(p_org);
    IF p_model IS NULL OR length(p_model) NOT BETWEEN 1 AND 200 THEN
        RAISE EXCEPTION 'model must be 1 to 200 characters'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('model is %s characters.', coalesce(length(p_model), 0));
    END IF;
    IF coalesce(p_prompt_tokens, 0) < 0 OR coalesce(p_completion_tokens, 0) < 0 OR coalesce(p_latency_ms, 0) < 0 THEN
        RAISE EXCEPTION 'token counts and latency must not be negative'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('prompt_tokens %s, completion_tokens %s, latency_ms %s.',
                                  p_prompt_tokens, p_completion_tokens, p_latency_ms);
    END IF;
    -- NULL is allowed: a call that never reached the upstream has no HTTP status of its own.
    IF p_status_code IS NOT NULL AND p_status_code NOT BETWEEN 100 AND 599 THEN
        RAISE EXCEPTION 'status code % is not an HTTP status', p_status_code
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass a status between 100 and 599, or NULL.';
    END IF;
    IF coalesce(p_memory_tokens, 0) < 0 OR coalesce(p_memory_count, 0) < 0 THEN
        RAISE EXCEPTION 'memory tokens and count must not be negative'
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = format('memory_tokens %s, memory_count %s.', p_memory_tokens, p_memory_count);
    END IF;
    IF p_memory_source IS NOT NULL AND p_memory_source NOT IN ('none', 'hot', 'cold', 'both') THEN
        RAISE EXCEPTION 'memory source % is not one of none, hot, cold, both', p_memory_source
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Pass none, hot, cold or both, or NULL.';
    END IF;
    INSERT INTO ibex_core.usage_events (id, org_id, agent_id, session_id, token_id, model, prompt_tokens,
                                        completion_tokens, latency_ms, status_code, streamed,
                                        memory_tokens, memory_count, memory_source)
    VALUES (coalesce(p_id, gen_random_uuid()), p_org, p_agent, p_session, p_token, p_model, coalesce(p_prompt_tokens, 0),
            coalesce(p_completion_tokens, 0), coalesce(p_latency_ms, 0), p_status_code,
            coalesce(p_streamed, false), p_memory_tokens, p_memory_count, p_memory_source)
    RETURNING id INTO v_id;
    RETURN v_id;
END
$$;

ALTER FUNCTION ibex_core.record_usage(uuid, uuid, uuid, uuid, text, integer, integer, integer, integer, boolean,
                               integer, integer, text, uuid) SECURITY DEFINER SET search_path = pg_catalog, public, pg_temp;
REVOKE ALL ON FUNCTION ibex_core.record_usage(uuid, uuid, uuid, uuid, text, integer, integer, integer, integer, boolean,
                               integer, integer, text, uuid)
    FROM PUBLIC, ibex_app;
GRANT EXECUTE ON FUNCTION ibex_core.record_usage(uuid, uuid, uuid, uuid, text, integer, integer, integer, integer, boolean,
                               integer, integer, text, uuid)
    TO ibex_sidecar;
