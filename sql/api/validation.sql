-- Input checks shared by the memory functions: content, category, tags and metadata.
SET LOCAL ROLE ibex_owner;

-- The categories come from ibex_engine (ibex_memory_categories()), where the sidecar and the
-- extractor get them too: the list exists once.
CREATE OR REPLACE FUNCTION ibex_core.assert_category(p_category text) RETURNS void
    LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF p_category IS NULL OR p_category <> ALL (ibex_memory_categories()) THEN
        RAISE EXCEPTION 'invalid memory category: %', coalesce(p_category, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = format('Use one of: %s.', array_to_string(ibex_memory_categories(), ', '));
    END IF;
END
$$;

-- Tags: trimmed, PII-redacted, lower-case, 1 to 64 characters, at most 32, no duplicates. The
-- redaction happens before lower-casing, which would turn a placeholder into "[email]" anyway;
-- tags are labels, not data.
CREATE OR REPLACE FUNCTION ibex_core.normalise_tags(p_tags text[]) RETURNS text[]
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
    IF cardinality(p_tags) > 1000 THEN
        RAISE EXCEPTION 'too many tags: %', cardinality(p_tags)
            USING ERRCODE = 'program_limit_exceeded', HINT = 'A memory takes at most 32 tags.';
    END IF;
    -- Bounded before the redactor reads them.
    IF EXISTS (SELECT 1 FROM unnest(p_tags) t WHERE length(btrim(t)) > 64) THEN
        RAISE EXCEPTION 'tag too long' USING ERRCODE = 'string_data_right_truncation',
            HINT = 'Tags are at most 64 characters.';
    END IF;
    SELECT coalesce(array_agg(DISTINCT r.tag ORDER BY r.tag), '{}') INTO v_tags
    FROM unnest(p_tags) t, LATERAL (SELECT lower(ibex_redact_pii(btrim(t))) AS tag) r
    WHERE btrim(t) <> '';
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


-- Metadata: a JSON object of at most ibex.max_metadata_bytes (as JSON text), checked before any
-- work reads it (remember checks it before embedding; the metadata triggers before redacting).
CREATE OR REPLACE FUNCTION ibex_core.assert_metadata(p_metadata jsonb) RETURNS void
    LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_max   integer := current_setting('ibex.max_metadata_bytes')::integer;
    v_bytes integer;
BEGIN
    IF p_metadata IS NULL OR jsonb_typeof(p_metadata) <> 'object' THEN
        RAISE EXCEPTION 'metadata must be a JSON object' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    v_bytes := octet_length(p_metadata::text);
    IF v_bytes > v_max THEN
        RAISE EXCEPTION 'metadata is too large' USING ERRCODE = 'program_limit_exceeded',
            DETAIL = format('%s bytes of JSON; the limit (ibex.max_metadata_bytes) is %s.', v_bytes, v_max),
            HINT = 'Keep metadata to small keys and values; store documents elsewhere and reference them.';
    END IF;
END
$$;

-- Memory content, checked before anything reads it further (redaction, hashing, embedding): not
-- empty, at most ibex.max_memory_chars, and not only invisible characters (zero-width, format
-- and control characters, Unicode spaces: a memory nobody could read, whose embedding would sit
-- near everything). remember and learn both start with it.
CREATE OR REPLACE FUNCTION ibex_core.assert_memory_content(p_content text) RETURNS void
    LANGUAGE plpgsql STABLE AS $$
DECLARE
    v_max integer := current_setting('ibex.max_memory_chars')::integer;
BEGIN
    IF p_content IS NULL OR btrim(p_content) = '' THEN
        RAISE EXCEPTION 'memory content is empty' USING ERRCODE = 'invalid_parameter_value',
            HINT = 'A memory needs some text.';
    END IF;
    IF length(p_content) > v_max THEN
        RAISE EXCEPTION 'memory content is too long' USING ERRCODE = 'string_data_right_truncation',
            DETAIL = format('%s characters; the limit (ibex.max_memory_chars) is %s.', length(p_content), v_max),
            HINT = 'Store shorter, self-contained facts; split long text into several memories.';
    END IF;
    IF p_content !~ '[^[:space:][:cntrl:]\u00A0\u00AD\u034F\u061C\u115F\u1160\u17B4\u17B5\u180E\u2000-\u200F\u2028-\u202F\u205F-\u206F\u3000\u3164\uFEFF\uFFA0]' THEN
        RAISE EXCEPTION 'memory content has no visible characters' USING ERRCODE = 'invalid_parameter_value',
            DETAIL = format('%s characters, all of them spaces, zero-width, format or control characters.', length(p_content)),
            HINT = 'A memory needs some text.';
    END IF;
END
$$;

-- When a memory's content happened: not in the future (a day of clock skew allowed, for the
-- writer's time zone) and not before 1900. NULL is fine: then it is when it was stored.
CREATE OR REPLACE FUNCTION ibex_core.assert_occurred_at(p_occurred_at timestamptz) RETURNS void
    LANGUAGE plpgsql STABLE AS $$
BEGIN
    IF p_occurred_at IS NOT NULL
       AND (p_occurred_at > now() + interval '1 day' OR p_occurred_at < '1900-01-01'::timestamptz) THEN
        RAISE EXCEPTION 'occurred_at is out of range: %', p_occurred_at USING ERRCODE = 'datetime_field_overflow',
            DETAIL = 'It must be between 1900-01-01 and a day from now.',
            HINT = 'occurred_at is when what the memory says happened; a planned event keeps its date in the text.';
    END IF;
END
$$;

-- The turns a memory came from: sorted, distinct, each at least 1, at most 256 of them; or the
-- single p_turn when no list is given; NULL when neither is.
CREATE OR REPLACE FUNCTION ibex_core.source_turns(p_turns integer[], p_turn integer) RETURNS integer[]
    LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF p_turns IS NULL THEN
        IF p_turn IS NOT NULL AND p_turn < 1 THEN
            RAISE EXCEPTION 'source turn must be at least 1, got %', p_turn USING ERRCODE = 'invalid_parameter_value';
        END IF;
        RETURN CASE WHEN p_turn IS NULL THEN NULL ELSE ARRAY[p_turn] END;
    END IF;
    IF cardinality(p_turns) NOT BETWEEN 1 AND 256 OR array_position(p_turns, NULL) IS NOT NULL
       OR EXISTS (SELECT 1 FROM unnest(p_turns) t WHERE t < 1) THEN
        RAISE EXCEPTION 'source turns must be 1 to 256 turn numbers, each at least 1'
            USING ERRCODE = 'invalid_parameter_value', DETAIL = format('Got %s.', left(p_turns::text, 200));
    END IF;
    RETURN ARRAY(SELECT DISTINCT t FROM unnest(p_turns) t ORDER BY t);
END
$$;
