//! The Redis hot cache: per agent, the top `hot_cache_size` (50) active memories by the
//! query-independent score, with everything context assembly needs to score them against a query
//! without the database.
//!
//! # Layout (all keys of an agent share the `{org}` hash tag, so they sit in one Redis Cluster
//! slot and are replaced atomically by one script)
//!
//! ```text
//! ibex:hot:v1:{<org>}:<agent>        ZSET   member = memory id, score = query-independent score
//!                                           when the set was last computed
//! ibex:hot:v1:{<org>}:<agent>:m      HASH   field = memory id, value = entry (binary, see below)
//! ibex:hot:v1:{<org>}:<agent>:asof   STRING Postgres statement_timestamp() (microseconds) of the
//!                                           read the set was computed from
//! ibex:hot:v1:ready                  STRING generation id and time of the last full rebuild
//! ```
//!
//! An entry holds the memory's inputs, not a score: category, confidence, useful / not-useful /
//! access counts, the time it was last touched (`coalesce(last_accessed_at, occurred_at, created_at)`),
//! its 384-float embedding and its content. Recency decays with time, so a stored score would be
//! wrong a minute later; context assembly re-scores every entry at read time with the full
//! composite formula (relevance from the query embedding's cosine with the stored one). The ZSET
//! score orders the set for anyone inspecting it and ranks which 50 are kept.
//!
//! # Consistency
//!
//! Postgres is the truth; Redis is derived. Every change that can move an agent's top 50 writes
//! an outbox event in its own transaction, from triggers on `ibex_core.memories`, so it does not
//! matter how the change was made (remember, forget, feedback, an extraction worker, a DBA's
//! UPDATE: `memory.created`, `memory.changed`), plus `agent.rescored` when the indexer folds
//! accesses. Deleted memory rows and deleted or purged orgs go to `ibex_ops.hot_cache_evictions`
//! instead (an org's outbox rows are purged with it); the consumer recomputes the agents named
//! there and removes every key of an org that went. The consumer
//! ([`consumer`]) claims events with a lease, and for every agent named recomputes the agent's
//! whole top 50 from Postgres and replaces the three keys in one script; only then are the events
//! acknowledged. So:
//!
//! * at least once: an event is acknowledged only after its agent was rewritten; a consumer that
//!   dies lets the lease run out and another consumer gets the event;
//! * idempotent and order-free: applying an event means "read the agent's truth now", so applying
//!   it twice, or two events in any order, gives the same result;
//! * no stale overwrite: each rewrite carries the time its Postgres read started (`asof`), and the
//!   script refuses to replace a set computed from a later read. A read that starts after an
//!   event's commit sees that commit, so once an event is acknowledged the set reflects it.
//!
//! Membership also drifts with time alone (recency decays at different rates for different
//! memories' totals), so every `hot_cache_rebuild_interval` each agent is recomputed.
//!
//! Lost data: the `ready` marker is written after a full rebuild. Redis losing its data (restart
//! without persistence, FLUSHDB, failover to an empty replica) loses the marker too; the consumer
//! notices on its next cycle and rebuilds every agent, and meanwhile readers that find no marker
//! read the agent's top 50 from Postgres instead ([`store::HotRead::NotReady`]). Every key but
//! the marker carries a TTL (`hot_cache_key_ttl_seconds`, a day by default, far longer than the
//! rebuild interval that rewrites live agents' keys): a backstop for removals that were missed.
//! Redis runs with `maxmemory` and `allkeys-lru` (scripts/stack.sh): an evicted agent set costs
//! that agent its hot candidates until the next rewrite (the cold search still answers), never a
//! wrong answer. One Redis logical database serves one IBEX database: the marker is global to it.
//!
//! Redis down: reads fail fast and context assembly reports the hot source as failed (a degraded,
//! directive-only answer); the consumer stops claiming events until Redis answers again, so
//! nothing is acknowledged that was not applied, and catches up from the outbox afterwards.

pub mod consumer;
pub mod entry;
pub mod source;
pub mod store;

use uuid::Uuid;

pub use consumer::{ConsumerSettings, HotCacheConsumer};
pub use entry::HotEntry;
pub use store::{HotRead, HotStore};

/// Bump when the layout or the entry encoding changes; old keys are then simply ignored.
pub const KEY_PREFIX: &str = "ibex:hot:v1:";
pub const READY_KEY: &str = "ibex:hot:v1:ready";

pub fn set_key(org: Uuid, agent: Uuid) -> String {
    format!("{KEY_PREFIX}{{{org}}}:{agent}")
}

pub fn data_key(org: Uuid, agent: Uuid) -> String {
    format!("{}:m", set_key(org, agent))
}

pub fn asof_key(org: Uuid, agent: Uuid) -> String {
    format!("{}:asof", set_key(org, agent))
}

/// A SCAN pattern matching every hot-cache key of the org (the braces are literal in Redis
/// glob patterns).
pub fn org_pattern(org: Uuid) -> String {
    format!("{KEY_PREFIX}{{{org}}}:*")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_the_org_hash_tag() {
        let org = Uuid::from_u128(1);
        let agent = Uuid::from_u128(2);
        let set = set_key(org, agent);
        assert_eq!(
            set,
            "ibex:hot:v1:{00000000-0000-0000-0000-000000000001}:00000000-0000-0000-0000-000000000002"
        );
        for key in [set.clone(), data_key(org, agent), asof_key(org, agent)] {
            let tag = &key[key.find('{').unwrap() + 1..key.find('}').unwrap()];
            assert_eq!(tag, org.to_string());
        }
    }
}
