//! Reading and writing the hot cache in Redis (layout in the module docs of `hotcache`).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use uuid::Uuid;

use super::source::AgentTop;
use super::{asof_key, data_key, org_pattern, set_key, HotEntry, READY_KEY};

/// Replaces an agent's set unless it was computed from a later Postgres read; every key gets
/// the TTL (a backstop: the consumer rewrites live agents far more often).
/// KEYS: set, data, asof. ARGV: asof, ttl in milliseconds, n, then n triples (member, score, entry).
const REPLACE_SCRIPT: &str = r"
local current = redis.call('GET', KEYS[3])
if current and tonumber(current) > tonumber(ARGV[1]) then
  return 0
end
redis.call('DEL', KEYS[1], KEYS[2])
local ttl = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
for i = 0, n - 1 do
  local base = 4 + 3 * i
  redis.call('ZADD', KEYS[1], ARGV[base + 1], ARGV[base])
  redis.call('HSET', KEYS[2], ARGV[base], ARGV[base + 2])
end
if n > 0 then
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
end
redis.call('SET', KEYS[3], ARGV[1], 'PX', ttl)
return 1
";

/// Keys scanned per SCAN call when an org's keys are removed.
const SCAN_COUNT: usize = 1000;

/// The marker, the ranked members with their scores, and the entries by member.
type PipelineAnswer = (Option<String>, Vec<(String, f64)>, HashMap<String, Vec<u8>>);

/// What a read of an agent's hot set found.
#[derive(Debug)]
pub enum HotRead {
    /// The cache is built: the agent's entries, best first (empty: the agent has no memories).
    Ready(Vec<HotEntry>),
    /// No `ready` marker: the cache lost its data and is being rebuilt. Read Postgres instead.
    NotReady,
}

pub struct HotStore {
    connection: Option<ConnectionManager>,
    script: redis::Script,
    epoch: Instant,
    /// Milliseconds since `epoch` before which Redis is not tried (it failed moments ago): an
    /// outage then costs a read nothing instead of a connection attempt.
    skip_until_ms: AtomicU64,
}

/// How long Redis is skipped after a failure.
const RETRY_AFTER: Duration = Duration::from_millis(500);

impl HotStore {
    /// A client that connects lazily (an unreachable Redis at start-up is not an error).
    pub fn new(url: Option<&str>, timeout: Duration) -> Result<Self, redis::RedisError> {
        let connection = match url {
            Some(url) => {
                let client = redis::Client::open(url)?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(timeout))
                    .set_response_timeout(Some(timeout))
                    // Fail fast: the caller has a 40 ms budget, and the manager reconnects in the
                    // background on the next use anyway.
                    .set_number_of_retries(0)
                    .set_max_delay(Duration::from_millis(500));
                Some(ConnectionManager::new_lazy_with_config(client, config)?)
            }
            None => None,
        };
        Ok(Self {
            connection,
            script: redis::Script::new(REPLACE_SCRIPT),
            epoch: Instant::now(),
            skip_until_ms: AtomicU64::new(0),
        })
    }

    pub fn is_enabled(&self) -> bool {
        self.connection.is_some()
    }

    fn connection(&self) -> Result<ConnectionManager, redis::RedisError> {
        let connection = self.connection.clone().ok_or_else(|| {
            redis::RedisError::from((redis::ErrorKind::Client, "no redis_url configured for the hot cache"))
        })?;
        if (self.epoch.elapsed().as_millis() as u64) < self.skip_until_ms.load(Ordering::Relaxed) {
            return Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "Redis failed moments ago; not retried yet",
            )));
        }
        Ok(connection)
    }

    /// Notes the outcome of a Redis call: a failure makes the next calls skip Redis briefly.
    fn observe<T>(&self, result: Result<T, redis::RedisError>) -> Result<T, redis::RedisError> {
        if result.is_err() {
            let until = self.epoch.elapsed().as_millis() as u64 + RETRY_AFTER.as_millis() as u64;
            self.skip_until_ms.fetch_max(until, Ordering::Relaxed);
        }
        result
    }

    /// The agent's entries, best first by the score stored with the set.
    pub async fn read(&self, org: Uuid, agent: Uuid) -> Result<HotRead, redis::RedisError> {
        let mut connection = self.connection()?;
        let answer: Result<PipelineAnswer, _> = redis::pipe()
            .cmd("GET")
            .arg(READY_KEY)
            .cmd("ZRANGE")
            .arg(set_key(org, agent))
            .arg(0)
            .arg(-1)
            .arg("REV")
            .arg("WITHSCORES")
            .cmd("HGETALL")
            .arg(data_key(org, agent))
            .query_async(&mut connection)
            .await;
        let (ready, ranked, data) = self.observe(answer)?;
        if ready.is_none() {
            return Ok(HotRead::NotReady);
        }
        let entries = ranked
            .into_iter()
            .filter_map(|(member, _)| {
                let id = Uuid::parse_str(&member).ok()?;
                HotEntry::decode(id, data.get(&member)?)
            })
            .collect();
        Ok(HotRead::Ready(entries))
    }

    /// Writes an agent's set unless a set from a later read is already there. Returns whether
    /// it was written.
    pub async fn replace(
        &self,
        org: Uuid,
        agent: Uuid,
        top: &AgentTop,
        ttl: Duration,
    ) -> Result<bool, redis::RedisError> {
        let mut connection = self.connection()?;
        let mut invocation = self.script.prepare_invoke();
        invocation
            .key(set_key(org, agent))
            .key(data_key(org, agent))
            .key(asof_key(org, agent))
            .arg(top.asof_micros)
            .arg(ttl.as_millis().max(1) as u64)
            .arg(top.entries.len());
        for (entry, rank) in top.entries.iter().zip(&top.ranks) {
            invocation.arg(entry.id.to_string()).arg(*rank).arg(entry.encode());
        }
        let written: i64 = self.observe(invocation.invoke_async(&mut connection).await)?;
        Ok(written == 1)
    }

    /// Removes every key of the org: its agents' hot sets and its embedding cache entries (an
    /// org deleted or purged). Returns how many keys went. SCAN walks the whole keyspace, which
    /// is fine for an operation this rare; the keys are unlinked (freed off the main thread).
    pub async fn remove_org(&self, org: Uuid) -> Result<usize, redis::RedisError> {
        let mut connection = self.connection()?;
        let mut removed = 0;
        for pattern in [org_pattern(org), crate::embedding::cache::org_pattern(org)] {
            let mut cursor: u64 = 0;
            loop {
                let answer: Result<(u64, Vec<String>), _> = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(SCAN_COUNT)
                    .query_async(&mut connection)
                    .await;
                let (next, keys) = self.observe(answer)?;
                if !keys.is_empty() {
                    let unlinked: usize =
                        self.observe(redis::cmd("UNLINK").arg(&keys).query_async(&mut connection).await)?;
                    removed += unlinked;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(removed)
    }

    /// Whether the cache was fully built since Redis last lost its data.
    pub async fn is_ready(&self) -> Result<bool, redis::RedisError> {
        let mut connection = self.connection()?;
        let ready: Option<String> =
            self.observe(redis::cmd("GET").arg(READY_KEY).query_async(&mut connection).await)?;
        Ok(ready.is_some())
    }

    pub async fn mark_ready(&self, generation: &str) -> Result<(), redis::RedisError> {
        let mut connection = self.connection()?;
        let result = redis::cmd("SET")
            .arg(READY_KEY)
            .arg(format!("{generation} {}", Utc::now().to_rfc3339()))
            .query_async::<()>(&mut connection)
            .await;
        self.observe(result)
    }
}
