-- IBEX 0012: the `embed` scope. The embedding endpoints of the sidecar (/v1/embed,
-- /v1/embed/batch, /v1/embeddings) now require a token, and a token that may embed need not
-- assemble context or proxy. `admin` implies every scope, `embed` included (sidecar/src/auth.rs).
-- The CHECK constraint that lists the scopes is replaced by the same list plus `embed`.
SET LOCAL ROLE ibex_owner;
ALTER TABLE ibex_core.api_tokens DROP CONSTRAINT api_tokens_scopes_check;
ALTER TABLE ibex_core.api_tokens ADD CONSTRAINT api_tokens_scopes_check CHECK (
    scopes <@ ARRAY['admin', 'memories:read', 'memories:write', 'agents:read',
                    'agents:write', 'directives:read', 'directives:write',
                    'sessions:read', 'sessions:write', 'tokens:manage',
                    'analytics:read', 'context:assemble', 'proxy', 'embed']::text[]
    AND array_position(scopes, NULL) IS NULL);
RESET ROLE;
