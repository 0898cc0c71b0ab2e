-- IBEX 0003: memories and everything hanging off them.
SET LOCAL ROLE ibex_owner;

CREATE TABLE ibex_core.memories (
    org_id             uuid NOT NULL REFERENCES ibex_core.orgs (id) ON DELETE CASCADE,
    id                 uuid NOT NULL DEFAULT gen_random_uuid(),
    agent_id           uuid NOT NULL,
    -- Stored after PII redaction; never the raw text.
    content            text NOT NULL CHECK (length(content) BETWEEN 1 AND 32768),
    -- SHA-256 hex of the normalised redacted content (ibex_content_hash).
    content_hash       text NOT NULL CHECK (content_hash ~ '^[0-9a-f]{64}$'),
    embedding          vector(384) NOT NULL,
    category           text NOT NULL CHECK (category IN ('procedural', 'declarative', 'episodic')),
    confidence         real NOT NULL DEFAULT 0.8 CHECK (confidence BETWEEN 0 AND 1),
    useful_count       integer NOT NULL DEFAULT 0 CHECK (useful_count >= 0),
    not_useful_count   integer NOT NULL DEFAULT 0 CHECK (not_useful_count >= 0),
    access_count       bigint NOT NULL DEFAULT 0 CHECK (access_count >= 0),
    last_accessed_at   timestamptz,
    status             text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'superseded', 'deleted')),
    superseded_by      uuid,
    source_session_id  uuid,
    source_turn        integer CHECK (source_turn >= 1),
    metadata           jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    version            integer NOT NULL DEFAULT 1 CHECK (version >= 1),
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    deleted_at         timestamptz,
    content_tsv        tsvector GENERATED ALWAYS AS (to_tsvector('english'::regconfig, content)) STORED,
    PRIMARY KEY (org_id, id),
    FOREIGN KEY (org_id, agent_id) REFERENCES ibex_core.agents (org_id, id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, superseded_by) REFERENCES ibex_core.memories (org_id, id),
    FOREIGN KEY (org_id, source_session_id) REFERENCES ibex_core.sessions (org_id, id) ON DELETE SET NULL (source_session_id),
    CHECK ((status = 'superseded') = (superseded_by IS NOT NULL)),
    CHECK ((status = 'deleted') = (deleted_at IS NOT NULL)),
    CHECK (superseded_by IS DISTINCT FROM id)
);
-- Exact de-duplication: one active memory per content hash and agent.
CREATE UNIQUE INDEX memories_active_content_key ON ibex_core.memories (org_id, agent_id, content_hash)
    WHERE status = 'active';
CREATE INDEX memories_agent_active ON ibex_core.memories (org_id, agent_id, created_at DESC)
    WHERE status = 'active';
-- Approximate nearest neighbours by cosine distance. lists=100 suits up to ~100k rows (rows/1000);
-- the indexing worker rebuilds it with more lists as the table grows.
CREATE INDEX memories_embedding_ivfflat ON ibex_core.memories
    USING ivfflat (embedding vector_cosine_ops) WITH (lists = 100);
CREATE INDEX memories_content_fts ON ibex_core.memories USING gin (content_tsv);

-- Immutable history: one row per change of a memory.
CREATE TABLE ibex_core.memory_versions (
    org_id          uuid NOT NULL REFERENCES ibex_core.orgs (id) ON DELETE CASCADE,
    id              uuid NOT NULL DEFAULT gen_random_uuid(),
    memory_id       uuid NOT NULL,
    version         integer NOT NULL CHECK (version >= 1),
    change          text NOT NULL CHECK (change IN ('created', 'superseded', 'forgotten', 'feedback', 'updated')),
    content         text NOT NULL,
    content_hash    text NOT NULL CHECK (content_hash ~ '^[0-9a-f]{64}$'),
    category        text NOT NULL CHECK (category IN ('procedural', 'declarative', 'episodic')),
    confidence      real NOT NULL CHECK (confidence BETWEEN 0 AND 1),
    status          text NOT NULL CHECK (status IN ('active', 'superseded', 'deleted')),
    superseded_by   uuid,
    reason          text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id),
    UNIQUE (org_id, memory_id, version),
    FOREIGN KEY (org_id, memory_id) REFERENCES ibex_core.memories (org_id, id) ON DELETE CASCADE
);

CREATE TABLE ibex_core.memory_relationships (
    org_id            uuid NOT NULL REFERENCES ibex_core.orgs (id) ON DELETE CASCADE,
    id                uuid NOT NULL DEFAULT gen_random_uuid(),
    source_memory_id  uuid NOT NULL,
    target_memory_id  uuid NOT NULL,
    kind              text NOT NULL CHECK (kind IN ('supersedes', 'conflicts_with', 'related_to', 'derived_from')),
    similarity        real CHECK (similarity BETWEEN -1 AND 1),
    metadata          jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    created_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id),
    UNIQUE (org_id, source_memory_id, target_memory_id, kind),
    FOREIGN KEY (org_id, source_memory_id) REFERENCES ibex_core.memories (org_id, id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, target_memory_id) REFERENCES ibex_core.memories (org_id, id) ON DELETE CASCADE,
    CHECK (source_memory_id <> target_memory_id)
);
CREATE INDEX memory_relationships_target ON ibex_core.memory_relationships (org_id, target_memory_id, kind);

-- Conflicts found by the write pipeline, kept until someone resolves them.
CREATE TABLE ibex_core.memory_conflicts (
    org_id                 uuid NOT NULL REFERENCES ibex_core.orgs (id) ON DELETE CASCADE,
    id                     uuid NOT NULL DEFAULT gen_random_uuid(),
    memory_id              uuid NOT NULL,
    conflicting_memory_id  uuid NOT NULL,
    similarity             real NOT NULL CHECK (similarity BETWEEN -1 AND 1),
    status                 text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved', 'dismissed')),
    resolution             text,
    created_at             timestamptz NOT NULL DEFAULT now(),
    resolved_at            timestamptz,
    PRIMARY KEY (org_id, id),
    UNIQUE (org_id, memory_id, conflicting_memory_id),
    FOREIGN KEY (org_id, memory_id) REFERENCES ibex_core.memories (org_id, id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, conflicting_memory_id) REFERENCES ibex_core.memories (org_id, id) ON DELETE CASCADE,
    CHECK ((status = 'open') = (resolved_at IS NULL))
);
CREATE INDEX memory_conflicts_open ON ibex_core.memory_conflicts (org_id, created_at) WHERE status = 'open';

-- Tags are normalised: one row per distinct (org, name), lower-case and trimmed.
CREATE TABLE ibex_core.tags (
    org_id      uuid NOT NULL REFERENCES ibex_core.orgs (id) ON DELETE CASCADE,
    id          uuid NOT NULL DEFAULT gen_random_uuid(),
    name        text NOT NULL CHECK (name = lower(btrim(name)) AND length(name) BETWEEN 1 AND 64),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, id),
    UNIQUE (org_id, name)
);

CREATE TABLE ibex_core.memory_tags (
    org_id      uuid NOT NULL REFERENCES ibex_core.orgs (id) ON DELETE CASCADE,
    memory_id   uuid NOT NULL,
    tag_id      uuid NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, memory_id, tag_id),
    FOREIGN KEY (org_id, memory_id) REFERENCES ibex_core.memories (org_id, id) ON DELETE CASCADE,
    FOREIGN KEY (org_id, tag_id) REFERENCES ibex_core.tags (org_id, id) ON DELETE CASCADE
);
CREATE INDEX memory_tags_tag ON ibex_core.memory_tags (org_id, tag_id);

RESET ROLE;
