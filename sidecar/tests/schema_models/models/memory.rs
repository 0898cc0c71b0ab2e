//! Memories and what hangs off them.

use chrono::{DateTime, Utc};
use uuid::Uuid;

crate::model! {
    pub struct Memory in "memories" {
        org_id: Uuid,
        id: Uuid,
        agent_id: Uuid,
        content: String,
        content_hash: String,
        embedding: pgvector::Vector,
        category: String,
        confidence: f32,
        useful_count: i32,
        not_useful_count: i32,
        access_count: i64,
        last_accessed_at: Option<DateTime<Utc>>,
        status: String,
        superseded_by: Option<Uuid>,
        source_session_id: Option<Uuid>,
        source_turn: Option<i32>,
        metadata: serde_json::Value,
        version: i32,
        created_at: DateTime<Utc>,
        updated_at: DateTime<Utc>,
        deleted_at: Option<DateTime<Utc>>,
        source_turns: Option<Vec<i32>>,
        occurred_at: Option<DateTime<Utc>>,
    }
    unmapped {
        "content_tsv" => "generated tsvector for full-text search; queried in SQL, never read into Rust",
    }
}

crate::model! {
    pub struct MemoryVersion in "memory_versions" {
        org_id: Uuid,
        id: Uuid,
        memory_id: Uuid,
        version: i32,
        change: String,
        content: String,
        content_hash: String,
        category: String,
        confidence: f32,
        status: String,
        superseded_by: Option<Uuid>,
        reason: Option<String>,
        created_at: DateTime<Utc>,
        source_session_id: Option<Uuid>,
        source_turns: Option<Vec<i32>>,
        occurred_at: Option<DateTime<Utc>>,
    }
}

crate::model! {
    pub struct MemoryRelationship in "memory_relationships" {
        org_id: Uuid,
        id: Uuid,
        source_memory_id: Uuid,
        target_memory_id: Uuid,
        kind: String,
        similarity: Option<f32>,
        metadata: serde_json::Value,
        created_at: DateTime<Utc>,
    }
}

crate::model! {
    pub struct MemoryConflict in "memory_conflicts" {
        org_id: Uuid,
        id: Uuid,
        memory_id: Uuid,
        conflicting_memory_id: Uuid,
        similarity: f32,
        status: String,
        resolution: Option<String>,
        created_at: DateTime<Utc>,
        resolved_at: Option<DateTime<Utc>>,
    }
}

crate::model! {
    /// A memory extraction learned that waits for review (a standing instruction, migration 0015).
    pub struct MemoryReview in "memory_reviews" {
        org_id: Uuid,
        id: Uuid,
        agent_id: Uuid,
        content: String,
        category: String,
        confidence: f32,
        source_session_id: Option<Uuid>,
        source_turn: Option<i32>,
        user_id: Option<Uuid>,
        metadata: serde_json::Value,
        status: String,
        decision: Option<String>,
        decided_at: Option<DateTime<Utc>>,
        memory_id: Option<Uuid>,
        created_at: DateTime<Utc>,
        source_turns: Option<Vec<i32>>,
        occurred_at: Option<DateTime<Utc>>,
    }
}

crate::model! {
    pub struct Tag in "tags" {
        org_id: Uuid,
        id: Uuid,
        name: String,
        created_at: DateTime<Utc>,
    }
}

crate::model! {
    pub struct MemoryTag in "memory_tags" {
        org_id: Uuid,
        memory_id: Uuid,
        tag_id: Uuid,
        created_at: DateTime<Utc>,
    }
}

crate::model! {
    /// A recorded read, folded into `memories.access_count` by the indexing worker.
    pub struct MemoryAccess in "memory_access" {
        org_id: Uuid,
        id: i64,
        memory_id: Uuid,
        accessed_at: DateTime<Utc>,
    }
}

crate::model! {
    /// How many of an agent's active memories contain a lexeme (the idf of lexical relevance).
    pub struct LexemeStat in "lexeme_stats" {
        org_id: Uuid,
        agent_id: Uuid,
        lexeme: String,
        doc_count: i32,
    }
}

crate::model! {
    pub struct AgentMemoryStat in "agent_memory_stats" {
        org_id: Uuid,
        agent_id: Uuid,
        active_memories: i32,
    }
}
