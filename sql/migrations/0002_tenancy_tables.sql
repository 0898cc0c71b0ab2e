-- IBEX 0002: organisations, people, agents, tokens, directives, sessions, usage, outbox.
-- Every tenant table carries org_id and is keyed (org_id, id) so it can be distributed by org_id
-- (Citus) without change; foreign keys include org_id so a row can only point inside its org.
--
-- Functions, trigger functions, triggers and views live in sql/api/ (applied by `ibex migrate`
-- after the migrations): this file keeps the tables only.
SET LOCAL ROLE ibex_owner;

-- The policies of 0004 call current_org(), so it must exist before them. sql/api/org.sql owns its
-- definition and replaces this bootstrap one on every database.
CREATE FUNCTION ibex_core.current_org() RETURNS uuid
    LANGUAGE sql STABLE PARALLEL SAFE
    AS $$ SELECT nullif(current_setting('ibex.org_id', true), '')::uuid $$;

CREATE TABLE ibex_core.orgs (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    slug        text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{1,62}$'),
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended', 'deleted')),
    settings    jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(settings) = 'object'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE ibex_core.users (
    org_id        uuid NOT NULL REFERENCES ibex_core.orgs (id) ON DELETE CASCADE,
    id            uuid NOT NULL DEFAULT gen_random_uuid(),
    email         text NOT NULL CHECK (email ~ '^[^@\s]+@[^@\s]+$' AND length(email) <= 320),
    display_name  text CHECK (length(display_name) <= 200),
    role          text NOT NULL DEFAULT 'member' CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
    status        text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id)
);
CREATE UNIQUE INDEX users_org_email_key ON ibex_core.users (org_id, lower(email));

CREATE TABLE ibex_core.agents (
    org_id         uuid NOT NULL REFERENCES ibex_core.orgs (id) ON DELETE CASCADE,
    id             uuid NOT NULL DEFAULT gen_random_uuid(),
    name           text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    description    text CHECK (length(description) <= 4000),
    status         text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused', 'archived')),
    default_model  text CHECK (length(default_model) <= 200),
    metadata       jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id),
    UNIQUE (org_id, name)
);

-- Personal access tokens. Only the SHA-256 of the secret is stored; token_prefix (the first
-- characters of the token, never the secret part) lets people tell their tokens apart.
CREATE TABLE ibex_core.api_tokens (
    org_id        uuid NOT NULL REFERENCES ibex_core.orgs (id) ON DELETE CASCADE,
    id            uuid NOT NULL DEFAULT gen_random_uuid(),
    user_id       uuid,
    agent_id      uuid,
    name          text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    token_prefix  text NOT NULL CHECK (length(token_prefix) BETWEEN 4 AND 16),
    token_hash    text NOT NULL UNIQUE CHECK (token_hash ~ '^[0-9a-f]{64}$'),
    scopes        text[] NOT NULL DEFAULT '{}' CHECK (
                      scopes <@ ARRAY['admin', 'memories:read', 'memories:write', 'agents:read',
                                      'agents:write', 'directives:read', 'directives:write',
                                      'sessions:read', 'sessions:write', 'tokens:manage',
                                      'analytics:read', 'context:assemble', 'proxy']::text[]
                      AND array_position(scopes, NULL) IS NULL),
    created_at    timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz,
    last_used_at  timestamptz,
    revoked_at    timestamptz,
    PRIMARY KEY (org_id, id),
    FOREIGN KEY (org_id, user_id) REFERENCES ibex_core.users (org_id, id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, agent_id) REFERENCES ibex_core.agents (org_id, id) ON DELETE CASCADE,
    CHECK (expires_at IS NULL OR expires_at > created_at)
);

CREATE TABLE ibex_core.directives (
    org_id      uuid NOT NULL REFERENCES ibex_core.orgs (id) ON DELETE CASCADE,
    id          uuid NOT NULL DEFAULT gen_random_uuid(),
    agent_id    uuid NOT NULL,
    name        text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    content     text NOT NULL CHECK (length(content) BETWEEN 1 AND 100000),
    version     integer NOT NULL DEFAULT 1 CHECK (version >= 1),
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'archived')),
    priority    integer NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id),
    UNIQUE (org_id, agent_id, name),
    FOREIGN KEY (org_id, agent_id) REFERENCES ibex_core.agents (org_id, id) ON DELETE CASCADE
);

CREATE TABLE ibex_core.directive_versions (
    org_id        uuid NOT NULL REFERENCES ibex_core.orgs (id) ON DELETE CASCADE,
    id            uuid NOT NULL DEFAULT gen_random_uuid(),
    directive_id  uuid NOT NULL,
    version       integer NOT NULL CHECK (version >= 1),
    name          text NOT NULL,
    content       text NOT NULL,
    status        text NOT NULL CHECK (status IN ('active', 'archived')),
    changed_by    uuid,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id),
    UNIQUE (org_id, directive_id, version),
    FOREIGN KEY (org_id, directive_id) REFERENCES ibex_core.directives (org_id, id) ON DELETE CASCADE
);

CREATE TABLE ibex_core.sessions (
    org_id               uuid NOT NULL REFERENCES ibex_core.orgs (id) ON DELETE CASCADE,
    id                   uuid NOT NULL DEFAULT gen_random_uuid(),
    agent_id             uuid NOT NULL,
    user_id              uuid,
    external_id          text CHECK (length(external_id) <= 200),
    status               text NOT NULL DEFAULT 'active'
                             CHECK (status IN ('active', 'completed', 'failed', 'abandoned')),
    turn_count           integer NOT NULL DEFAULT 0 CHECK (turn_count >= 0),
    -- Extraction has read every turn up to and including this one (0: none yet).
    last_extracted_turn  integer NOT NULL DEFAULT 0 CHECK (last_extracted_turn >= 0),
    metadata             jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    started_at           timestamptz NOT NULL DEFAULT now(),
    completed_at         timestamptz,
    archive_key          text,
    archived_at          timestamptz,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id),
    UNIQUE (org_id, agent_id, external_id),
    FOREIGN KEY (org_id, agent_id) REFERENCES ibex_core.agents (org_id, id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, user_id) REFERENCES ibex_core.users (org_id, id) ON DELETE SET NULL (user_id),
    CHECK (status = 'active' OR completed_at IS NOT NULL)
);
CREATE INDEX sessions_extraction_queue ON ibex_core.sessions (completed_at)
    WHERE status = 'completed' AND last_extracted_turn < turn_count;

CREATE TABLE ibex_core.session_turns (
    org_id      uuid NOT NULL REFERENCES ibex_core.orgs (id) ON DELETE CASCADE,
    id          uuid NOT NULL DEFAULT gen_random_uuid(),
    session_id  uuid NOT NULL,
    turn_index  integer NOT NULL CHECK (turn_index >= 1),
    role        text NOT NULL CHECK (role IN ('system', 'user', 'assistant', 'tool')),
    content     text NOT NULL CHECK (length(content) <= 1000000),
    tokens      integer CHECK (tokens >= 0),
    model       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id),
    UNIQUE (org_id, session_id, turn_index),
    FOREIGN KEY (org_id, session_id) REFERENCES ibex_core.sessions (org_id, id) ON DELETE CASCADE
);

CREATE TABLE ibex_core.usage_events (
    org_id             uuid NOT NULL REFERENCES ibex_core.orgs (id) ON DELETE CASCADE,
    id                 uuid NOT NULL DEFAULT gen_random_uuid(),
    agent_id           uuid,
    session_id         uuid,
    token_id           uuid,
    model              text NOT NULL CHECK (length(model) BETWEEN 1 AND 200),
    prompt_tokens      integer NOT NULL DEFAULT 0 CHECK (prompt_tokens >= 0),
    completion_tokens  integer NOT NULL DEFAULT 0 CHECK (completion_tokens >= 0),
    total_tokens       integer GENERATED ALWAYS AS (prompt_tokens + completion_tokens) STORED,
    latency_ms         integer NOT NULL DEFAULT 0 CHECK (latency_ms >= 0),
    status_code        integer CHECK (status_code BETWEEN 100 AND 599),
    streamed           boolean NOT NULL DEFAULT false,
    created_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id)
);
CREATE INDEX usage_events_org_time ON ibex_core.usage_events (org_id, created_at);

-- Durable hand-off to Redis (hot cache), the indexing worker and S3 archives, written in the
-- same transaction as the change it describes; NOTIFY only wakes consumers up.
CREATE TABLE ibex_core.outbox (
    org_id        uuid NOT NULL REFERENCES ibex_core.orgs (id) ON DELETE CASCADE,
    id            bigint GENERATED ALWAYS AS IDENTITY,
    topic         text NOT NULL CHECK (topic IN ('hot_cache', 'index', 'archive')),
    event         text NOT NULL CHECK (length(event) BETWEEN 1 AND 100),
    aggregate_id  uuid,
    payload       jsonb NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now(),
    available_at  timestamptz NOT NULL DEFAULT now(),
    attempts      integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error    text,
    processed_at  timestamptz,
    PRIMARY KEY (org_id, id)
);
CREATE INDEX outbox_pending ON ibex_core.outbox (topic, id) WHERE processed_at IS NULL;

CREATE TABLE ibex_core.dead_letters (
    org_id        uuid NOT NULL REFERENCES ibex_core.orgs (id) ON DELETE CASCADE,
    id            uuid NOT NULL DEFAULT gen_random_uuid(),
    source        text NOT NULL CHECK (source IN ('extraction', 'outbox', 'index')),
    reference_id  text NOT NULL,
    payload       jsonb NOT NULL DEFAULT '{}',
    error         text NOT NULL,
    attempts      integer NOT NULL CHECK (attempts >= 1),
    created_at    timestamptz NOT NULL DEFAULT now(),
    resolved_at   timestamptz,
    PRIMARY KEY (org_id, id)
);

-- sqlx records the migration after this script, as the connecting role.
RESET ROLE;
