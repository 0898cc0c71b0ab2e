-- IBEX 0017: what the management API's authentication needs from the schema.
--   * scopes for the users of an org (`users:read`, `users:write`) and the platform operators'
--     scope (`platform:admin`: orgs across the platform; `admin` stays an org's own admin);
--   * authenticate_token refuses a token whose user is deactivated: ibex_system reads a user's
--     status (only the columns it needs);
--   * revocation is pushed (sql/api/auth.sql notifies on the channel `ibex_auth` whenever a token,
--     an org's status or a user's status changes): nothing to declare here, channels need no DDL.
SET LOCAL ROLE ibex_owner;
ALTER TABLE ibex_core.api_tokens DROP CONSTRAINT api_tokens_scopes_check;
ALTER TABLE ibex_core.api_tokens ADD CONSTRAINT api_tokens_scopes_check CHECK (
    scopes <@ ARRAY['admin', 'memories:read', 'memories:write', 'agents:read',
                    'agents:write', 'directives:read', 'directives:write',
                    'sessions:read', 'sessions:write', 'tokens:manage',
                    'analytics:read', 'context:assemble', 'proxy', 'embed',
                    'users:read', 'users:write', 'platform:admin']::text[]
    AND array_position(scopes, NULL) IS NULL);
GRANT SELECT (org_id, id, status) ON ibex_core.users TO ibex_system;
-- Platform operators manage orgs through sql/api/platform.sql (functions owned by ibex_system):
-- create, change, suspend and delete orgs, and count what a deletion removes for its receipt.
-- The cascade of a deletion runs as the tables' owner; only the org row is ibex_system's to delete.
GRANT SELECT, INSERT, UPDATE, DELETE ON ibex_core.orgs TO ibex_system;
GRANT SELECT ON ibex_core.agents, ibex_core.directives, ibex_core.memories, ibex_core.sessions,
    ibex_core.session_turns, ibex_core.usage_events TO ibex_system;
GRANT INSERT ON ibex_ops.hot_cache_evictions TO ibex_system;
-- The management API's lists page by (created_at, id), newest first, within an org (and agent):
-- a keyset page costs the same at page 1 and page 1,000.
CREATE INDEX api_tokens_org_created ON ibex_core.api_tokens (org_id, created_at DESC, id DESC);
CREATE INDEX memories_org_created ON ibex_core.memories (org_id, created_at DESC, id DESC);
CREATE INDEX memories_org_agent_created ON ibex_core.memories (org_id, agent_id, created_at DESC, id DESC);
RESET ROLE;
