-- Input checks shared by the memory functions: category and tags.
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

-- Tags: trimmed, lower-case, 1 to 64 characters, at most 32, no duplicates.
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

