-- IBEX 0004: row-level security on every tenant table, and the application role's privileges.
--
-- Each table gets RLS enabled AND forced (the owner is filtered too) and one policy comparing
-- org_id with ibex.org_id for reads (USING) and writes (WITH CHECK). With ibex.org_id unset,
-- current_org() is NULL and no row matches: nothing is visible and nothing can be written.
SET LOCAL ROLE ibex_owner;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['users', 'agents', 'api_tokens', 'directives', 'directive_versions',
                             'sessions', 'session_turns', 'usage_events', 'outbox', 'dead_letters',
                             'memories', 'memory_versions', 'memory_relationships',
                             'memory_conflicts', 'tags', 'memory_tags']
    LOOP
        EXECUTE format('ALTER TABLE ibex_core.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE ibex_core.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY org_isolation ON ibex_core.%I
                            USING (org_id = ibex_core.current_org())
                            WITH CHECK (org_id = ibex_core.current_org())', t);
    END LOOP;
END
$$;

-- The org row itself: its id is the tenant key.
ALTER TABLE ibex_core.orgs ENABLE ROW LEVEL SECURITY;
ALTER TABLE ibex_core.orgs FORCE ROW LEVEL SECURITY;
CREATE POLICY org_isolation ON ibex_core.orgs
    USING (id = ibex_core.current_org())
    WITH CHECK (id = ibex_core.current_org());

GRANT SELECT, UPDATE ON ibex_core.orgs TO ibex_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON
    ibex_core.users, ibex_core.agents, ibex_core.api_tokens, ibex_core.directives,
    ibex_core.sessions, ibex_core.session_turns, ibex_core.memories,
    ibex_core.memory_relationships, ibex_core.memory_conflicts, ibex_core.tags,
    ibex_core.memory_tags
    TO ibex_app;
GRANT SELECT, INSERT ON ibex_core.memory_versions, ibex_core.directive_versions,
    ibex_core.usage_events, ibex_core.outbox TO ibex_app;
GRANT SELECT ON ibex_core.dead_letters TO ibex_app;

-- ibex_system reads across orgs (it has BYPASSRLS) only through SECURITY DEFINER functions
-- that later migrations define; it gets exactly what those functions need.
GRANT SELECT, UPDATE ON ibex_core.api_tokens TO ibex_system;
GRANT SELECT, UPDATE ON ibex_core.outbox TO ibex_system;
GRANT SELECT, INSERT ON ibex_core.dead_letters TO ibex_system;

RESET ROLE;
