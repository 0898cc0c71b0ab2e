-- PII never at rest: every column that holds text from users or applications, other than
-- memory content (which remember redacts before it hashes and embeds it), is redacted by a
-- trigger on its table, so it does not matter which function or statement wrote it. Session
-- turns, metadata string values (memories, sessions, agents), history and conflict reasons.
-- Tags are redacted in ibex_core.normalise_tags (a trigger would change the name remember then
-- looks up).
--
-- The functions only rewrite NEW; search_path is pinned so that a session cannot shadow
-- ibex_redact_pii (extension schema public) with a function of its own.
SET LOCAL ROLE ibex_owner;

-- Every string value in a JSON document redacted, keys and structure kept.
CREATE OR REPLACE FUNCTION ibex_core.redact_json(p_doc jsonb) RETURNS jsonb
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET search_path = public, pg_catalog, pg_temp AS $$
BEGIN
    CASE jsonb_typeof(p_doc)
    WHEN 'string' THEN
        RETURN to_jsonb(ibex_redact_pii(p_doc #>> '{}'));
    WHEN 'object' THEN
        RETURN coalesce((SELECT jsonb_object_agg(e.key, ibex_core.redact_json(e.value))
                         FROM jsonb_each(p_doc) e), '{}'::jsonb);
    WHEN 'array' THEN
        RETURN coalesce((SELECT jsonb_agg(ibex_core.redact_json(a.value) ORDER BY a.i)
                         FROM jsonb_array_elements(p_doc) WITH ORDINALITY a(value, i)), '[]'::jsonb);
    ELSE
        RETURN p_doc;
    END CASE;
END
$$;

-- Metadata: bounded before the walk (ibex_core.assert_metadata), then redacted.
CREATE OR REPLACE FUNCTION ibex_core.redact_metadata_column() RETURNS trigger
    LANGUAGE plpgsql SET search_path = public, pg_catalog, pg_temp AS $$
BEGIN
    IF NEW.metadata IS NULL OR NEW.metadata = '{}'::jsonb THEN
        RETURN NEW;
    END IF;
    PERFORM ibex_core.assert_metadata(NEW.metadata);
    NEW.metadata := ibex_core.redact_json(NEW.metadata);
    RETURN NEW;
END
$$;

-- Turns: the table's own bound (1,000,000 characters) is checked after BEFORE triggers, so it is
-- checked here first: the redactor never reads more.
CREATE OR REPLACE FUNCTION ibex_core.redact_turn_content() RETURNS trigger
    LANGUAGE plpgsql SET search_path = public, pg_catalog, pg_temp AS $$
BEGIN
    IF length(NEW.content) > 1000000 THEN
        RAISE EXCEPTION 'session turn is too long' USING ERRCODE = 'string_data_right_truncation',
            DETAIL = format('%s characters; a turn holds at most 1000000.', length(NEW.content));
    END IF;
    NEW.content := ibex_redact_pii(NEW.content);
    RETURN NEW;
END
$$;

-- The text column named by the trigger's argument (a reason, a resolution, a decision), redacted.
-- The triggers fire only when it is not NULL.
CREATE OR REPLACE FUNCTION ibex_core.redact_text_column() RETURNS trigger
    LANGUAGE plpgsql SET search_path = public, pg_catalog, pg_temp AS $$
BEGIN
    NEW := jsonb_populate_record(NEW, jsonb_build_object(TG_ARGV[0], ibex_redact_pii(to_jsonb(NEW) ->> TG_ARGV[0])));
    RETURN NEW;
END
$$;

CREATE OR REPLACE TRIGGER session_turns_redact BEFORE INSERT OR UPDATE OF content ON ibex_core.session_turns
    FOR EACH ROW EXECUTE FUNCTION ibex_core.redact_turn_content();

CREATE OR REPLACE TRIGGER memories_redact_metadata BEFORE INSERT OR UPDATE OF metadata ON ibex_core.memories
    FOR EACH ROW EXECUTE FUNCTION ibex_core.redact_metadata_column();

CREATE OR REPLACE TRIGGER sessions_redact_metadata BEFORE INSERT OR UPDATE OF metadata ON ibex_core.sessions
    FOR EACH ROW EXECUTE FUNCTION ibex_core.redact_metadata_column();

CREATE OR REPLACE TRIGGER agents_redact_metadata BEFORE INSERT OR UPDATE OF metadata ON ibex_core.agents
    FOR EACH ROW EXECUTE FUNCTION ibex_core.redact_metadata_column();

CREATE OR REPLACE TRIGGER memory_versions_redact_reason BEFORE INSERT ON ibex_core.memory_versions
    FOR EACH ROW WHEN (NEW.reason IS NOT NULL) EXECUTE FUNCTION ibex_core.redact_text_column('reason');

CREATE OR REPLACE TRIGGER memory_conflicts_redact_resolution
    BEFORE INSERT OR UPDATE OF resolution ON ibex_core.memory_conflicts
    FOR EACH ROW WHEN (NEW.resolution IS NOT NULL) EXECUTE FUNCTION ibex_core.redact_text_column('resolution');

CREATE OR REPLACE TRIGGER memory_reviews_redact_metadata BEFORE INSERT OR UPDATE OF metadata ON ibex_core.memory_reviews
    FOR EACH ROW EXECUTE FUNCTION ibex_core.redact_metadata_column();

CREATE OR REPLACE TRIGGER memory_reviews_redact_decision BEFORE INSERT OR UPDATE OF decision ON ibex_core.memory_reviews
    FOR EACH ROW WHEN (NEW.decision IS NOT NULL) EXECUTE FUNCTION ibex_core.redact_text_column('decision');
