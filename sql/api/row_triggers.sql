-- Row triggers shared by many tables: updated_at upkeep and append-only history.
SET LOCAL ROLE ibex_owner;

CREATE OR REPLACE FUNCTION ibex_core.touch_updated_at() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

-- History tables are append-only: rows are facts about the past. They go only with what they
-- describe: a delete cascaded from their memory or directive (an agent or org deleted; the
-- cascade runs inside the foreign key's trigger, so pg_trigger_depth() > 1), or a superuser purge
-- after `SET ibex.allow_history_purge = on`. Nothing may update them.
CREATE OR REPLACE FUNCTION ibex_core.reject_history_change() RETURNS trigger
    LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND (pg_trigger_depth() > 1 OR current_setting('ibex.allow_history_purge', true) = 'on') THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION '%.% is append-only', TG_TABLE_SCHEMA, TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation',
              DETAIL = format('%s is not allowed on history rows.', TG_OP),
              HINT = 'Record a new version instead of changing an old one.';
END
$$;

CREATE OR REPLACE TRIGGER orgs_touch BEFORE UPDATE ON ibex_core.orgs FOR EACH ROW EXECUTE FUNCTION ibex_core.touch_updated_at();

CREATE OR REPLACE TRIGGER users_touch BEFORE UPDATE ON ibex_core.users FOR EACH ROW EXECUTE FUNCTION ibex_core.touch_updated_at();

CREATE OR REPLACE TRIGGER agents_touch BEFORE UPDATE ON ibex_core.agents FOR EACH ROW EXECUTE FUNCTION ibex_core.touch_updated_at();

CREATE OR REPLACE TRIGGER directives_touch BEFORE UPDATE ON ibex_core.directives FOR EACH ROW EXECUTE FUNCTION ibex_core.touch_updated_at();

CREATE OR REPLACE TRIGGER sessions_touch BEFORE UPDATE ON ibex_core.sessions FOR EACH ROW EXECUTE FUNCTION ibex_core.touch_updated_at();

-- updated_at means "the memory changed", not "someone read it": access folding does not touch it.
CREATE OR REPLACE TRIGGER memories_touch BEFORE UPDATE OF content, category, confidence, status, superseded_by,
    metadata, useful_count, not_useful_count ON ibex_core.memories
    FOR EACH ROW EXECUTE FUNCTION ibex_core.touch_updated_at();

CREATE OR REPLACE TRIGGER directive_versions_append_only BEFORE UPDATE OR DELETE ON ibex_core.directive_versions
    FOR EACH ROW EXECUTE FUNCTION ibex_core.reject_history_change();

CREATE OR REPLACE TRIGGER memory_versions_append_only BEFORE UPDATE OR DELETE ON ibex_core.memory_versions
    FOR EACH ROW EXECUTE FUNCTION ibex_core.reject_history_change();

CREATE OR REPLACE TRIGGER directive_versions_no_truncate BEFORE TRUNCATE ON ibex_core.directive_versions
    FOR EACH STATEMENT EXECUTE FUNCTION ibex_core.reject_history_change();

CREATE OR REPLACE TRIGGER memory_versions_no_truncate BEFORE TRUNCATE ON ibex_core.memory_versions
    FOR EACH STATEMENT EXECUTE FUNCTION ibex_core.reject_history_change();

