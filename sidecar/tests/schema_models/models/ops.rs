//! Sessions, turns, usage, outbox, dead letters.

use chrono::{DateTime, Utc};
use uuid::Uuid;

crate::model! {
    pub struct Session in "sessions" {
        org_id: Uuid,
        id: Uuid,
        agent_id: Uuid,
        user_id: Option<Uuid>,
        external_id: Option<String>,
        status: String,
        turn_count: i32,
        last_extracted_turn: i32,
        metadata: serde_json::Value,
        started_at: DateTime<Utc>,
        completed_at: Option<DateTime<Utc>>,
        archive_key: Option<String>,
        archived_at: Option<DateTime<Utc>>,
        created_at: DateTime<Utc>,
        updated_at: DateTime<Utc>,
        // Extraction state (migration 0007).
        extraction_attempts: i32,
        extraction_lease_until: Option<DateTime<Utc>>,
        extraction_next_at: Option<DateTime<Utc>>,
        extraction_error: Option<String>,
        extraction_dead: bool,
        // Session archives (migration 0019).
        checkpoint_count: i32,
        archive_bytes: Option<i64>,
        archive_lines: Option<i32>,
        archive_sha256: Option<String>,
        turns_cleared_at: Option<DateTime<Utc>>,
    }
}

crate::model! {
    pub struct SessionTurn in "session_turns" {
        org_id: Uuid,
        id: Uuid,
        session_id: Uuid,
        turn_index: i32,
        role: String,
        content: String,
        tokens: Option<i32>,
        model: Option<String>,
        created_at: DateTime<Utc>,
        // Session archives (migration 0019): the append_turns call, and the hash of a cleared content.
        checkpoint: i32,
        content_sha256: Option<Vec<u8>>,
    }
}

crate::model! {
    pub struct UsageEvent in "usage_events" {
        org_id: Uuid,
        id: Uuid,
        agent_id: Option<Uuid>,
        session_id: Option<Uuid>,
        token_id: Option<Uuid>,
        model: String,
        prompt_tokens: i32,
        completion_tokens: i32,
        /// Generated: prompt_tokens + completion_tokens.
        total_tokens: Option<i32>,
        latency_ms: i32,
        status_code: Option<i32>,
        streamed: bool,
        created_at: DateTime<Utc>,
        /// What the context's memories cost (migration 0023; NULL before it).
        memory_tokens: Option<i32>,
        memory_count: Option<i32>,
        memory_source: Option<String>,
    }
}

crate::model! {
    /// The hourly usage rollup (migration 0020; the `agent_day` grain, migration 0022): one row per
    /// org, grain, agent, model and hour (a day row: its first hour).
    pub struct UsageHour in "usage_hourly" {
        org_id: Uuid,
        grain: String,
        agent_id: Uuid,
        model: String,
        hour: DateTime<Utc>,
        requests: i64,
        errors: i64,
        prompt_tokens: i64,
        completion_tokens: i64,
        latency_buckets: Vec<i32>,
        latency_counts: Vec<i64>,
    }
}

crate::model! {
    pub struct UsageRollupMark in "usage_rollup_marks" {
        org_id: Uuid,
        rolled_until: DateTime<Utc>,
        rolled_at: DateTime<Utc>,
    }
}

crate::model! {
    pub struct OutboxEvent in "outbox" {
        org_id: Uuid,
        id: i64,
        topic: String,
        event: String,
        aggregate_id: Option<Uuid>,
        payload: serde_json::Value,
        created_at: DateTime<Utc>,
        available_at: DateTime<Utc>,
        attempts: i32,
        last_error: Option<String>,
        processed_at: Option<DateTime<Utc>>,
    }
}

crate::model! {
    pub struct DeadLetter in "dead_letters" {
        org_id: Uuid,
        id: Uuid,
        source: String,
        reference_id: String,
        payload: serde_json::Value,
        error: String,
        attempts: i32,
        created_at: DateTime<Utc>,
        resolved_at: Option<DateTime<Utc>>,
    }
}

crate::model! {
    /// What the background workers did (schema ibex_ops: not tenant data).
    pub struct MaintenanceLogEntry in "ibex_ops.maintenance_log" {
        id: i64,
        worker: String,
        action: String,
        detail: serde_json::Value,
        error: Option<String>,
        started_at: DateTime<Utc>,
        finished_at: Option<DateTime<Utc>>,
    }
}

crate::model! {
    pub struct WorkerCounter in "ibex_ops.worker_counters" {
        worker: String,
        counter: String,
        value: i64,
        updated_at: DateTime<Utc>,
    }
}

crate::model! {
    /// The sql/api files applied to this database and their SHA-256 (`ibex migrate`).
    pub struct SqlApiFile in "ibex_ops.sql_api_files" {
        file: String,
        sha256: String,
        applied_at: DateTime<Utc>,
    }
}

crate::model! {
    /// Application logins and the org each acts for (`ibex_ops.bind_login`).
    pub struct OrgLogin in "ibex_ops.org_logins" {
        login: String,
        org_id: Uuid,
        created_at: DateTime<Utc>,
    }
}

crate::model! {
    /// Deleted memories' agents and deleted or purged orgs, for the hot cache consumer (migration 0013).
    pub struct HotCacheEviction in "ibex_ops.hot_cache_evictions" {
        id: i64,
        org_id: Uuid,
        agent_id: Option<Uuid>,
        reason: String,
        requested_at: DateTime<Utc>,
    }
}

crate::model! {
    /// Archive objects to delete from S3, kept until S3 confirms (migration 0019).
    pub struct ArchiveDeletion in "ibex_ops.archive_deletions" {
        id: i64,
        org_id: Uuid,
        agent_id: Option<Uuid>,
        session_id: Option<Uuid>,
        prefix: String,
        reason: String,
        requested_at: DateTime<Utc>,
        available_at: DateTime<Utc>,
        attempts: i32,
        last_error: Option<String>,
        confirmed_at: Option<DateTime<Utc>>,
        deleted_keys: Option<Vec<String>>,
    }
}
