//! The Redis embedding cache: `ibex:emb:v2:{<org>}:<sha256(model id, NUL, text)>` -> 384
//! little-endian f32 (1,536 bytes), with a TTL.
//!
//! Entries are per org: a text one org embedded is never served to another, so nothing an org
//! observes (not even timing) depends on what another org embedded. The org is a hash tag, as in
//! the hot cache's keys: a Redis Cluster keeps an org's entries together, and an org's entries
//! can be found (and dropped) by their prefix. Storing a popular text once per org costs little:
//! an entry is 1.5 KiB.
//!
//! The cache is an optimisation, never a dependency: every failure is logged, counted and answered
//! as "not cached", and the request goes on to inference. After a failure the cache is skipped for
//! a moment so that an outage costs each request nothing rather than a timeout.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ibex_engine::content::sha256_hex;
use ibex_engine::EMBEDDING_DIM;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use uuid::Uuid;

use crate::metrics::Metrics;

/// Bump the version when the value layout or the key recipe changes: old entries then simply
/// expire instead of being misread.
pub const KEY_PREFIX: &str = "ibex:emb:v2:";
const VALUE_BYTES: usize = EMBEDDING_DIM * 4;
/// How long the cache is skipped after a failure before it is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// The cache key of `text` embedded by `model_id` for `org`. The model id is part of the hash so
/// vectors of different models never mix; the NUL byte keeps ("ab", "c") and ("a", "bc") apart.
pub fn cache_key(model_id: &str, org: Uuid, text: &str) -> String {
    let mut bytes = Vec::with_capacity(model_id.len() + 1 + text.len());
    bytes.extend_from_slice(model_id.as_bytes());
    bytes.push(0);
    bytes.extend_from_slice(text.as_bytes());
    format!("{KEY_PREFIX}{{{org}}}:{}", sha256_hex(&bytes))
}

/// A SCAN pattern matching every cache entry of the org (removed when the org is purged).
pub fn org_pattern(org: Uuid) -> String {
    format!("{KEY_PREFIX}{{{org}}}:*")
}

pub fn encode_vector(vector: &[f32]) -> Vec<u8> {
    vector.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// `None` for anything that is not exactly one vector (a foreign or truncated value): treated as a
/// miss and overwritten.
pub fn decode_vector(bytes: &[u8]) -> Option<Vec<f32>> {
    if bytes.len() != VALUE_BYTES {
        return None;
    }
    Some(
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

pub struct CacheSettings {
    pub url: Option<String>,
    pub ttl: Duration,
    pub timeout: Duration,
}

pub struct EmbeddingCache {
    connection: Option<ConnectionManager>,
    ttl_seconds: u64,
    timeout: Duration,
    epoch: Instant,
    /// Milliseconds since `epoch` before which the cache is not tried.
    skip_until_ms: AtomicU64,
    /// Set by a failure, cleared by the next success: one warning per outage, not per request.
    degraded: AtomicBool,
    metrics: Arc<Metrics>,
}

impl EmbeddingCache {
    /// A cache client that connects lazily: an unreachable Redis at start-up is not an error,
    /// only a malformed URL is.
    pub fn new(settings: CacheSettings, metrics: Arc<Metrics>) -> Result<Self, redis::RedisError> {
        let connection = match settings.url {
            Some(url) => {
                let client = redis::Client::open(url)?;
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(settings.timeout))
                    .set_response_timeout(Some(settings.timeout))
                    .set_number_of_retries(2)
                    .set_max_delay(Duration::from_secs(1));
                Some(ConnectionManager::new_lazy_with_config(client, config)?)
            }
            None => None,
        };
        Ok(Self {
            connection,
            ttl_seconds: settings.ttl.as_secs().max(1),
            timeout: settings.timeout,
            epoch: Instant::now(),
            skip_until_ms: AtomicU64::new(0),
            degraded: AtomicBool::new(false),
            metrics,
        })
    }

    pub fn is_enabled(&self) -> bool {
        self.connection.is_some()
    }

    /// One lookup for all keys (MGET). Every failure reads as all misses.
    pub async fn get_many(&self, keys: &[String]) -> Vec<Option<Vec<f32>>> {
        let misses = || vec![None; keys.len()];
        let Some(mut connection) = self.usable_connection() else {
            return misses();
        };
        let mut command = redis::cmd("MGET");
        command.arg(keys);
        let query = command.query_async::<Vec<Option<Vec<u8>>>>(&mut connection);
        match tokio::time::timeout(self.timeout, query).await {
            Ok(Ok(values)) if values.len() == keys.len() => {
                self.succeeded();
                values
                    .into_iter()
                    .map(|v| v.as_deref().and_then(decode_vector))
                    .collect()
            }
            Ok(Ok(values)) => {
                self.failed(
                    "get",
                    &format!("MGET returned {} values for {} keys", values.len(), keys.len()),
                );
                misses()
            }
            Ok(Err(e)) => {
                self.failed("get", &e.to_string());
                misses()
            }
            Err(_) => {
                self.failed("get", &format!("no answer within {:?}", self.timeout));
                misses()
            }
        }
    }

    /// Stores freshly computed vectors, all in one pipeline of SETEX.
    pub async fn put_many(&self, entries: &[(String, Vec<f32>)]) {
        if entries.is_empty() {
            return;
        }
        let Some(mut connection) = self.usable_connection() else {
            return;
        };
        let mut pipe = redis::pipe();
        for (key, vector) in entries {
            pipe.cmd("SETEX")
                .arg(key)
                .arg(self.ttl_seconds)
                .arg(encode_vector(vector))
                .ignore();
        }
        match tokio::time::timeout(self.timeout, pipe.query_async::<()>(&mut connection)).await {
            Ok(Ok(())) => self.succeeded(),
            Ok(Err(e)) => self.failed("set", &e.to_string()),
            Err(_) => self.failed("set", &format!("no answer within {:?}", self.timeout)),
        }
    }

    /// Removes entries (GDPR deletion of the texts they were computed from); answers how many
    /// existed. Unlike lookups this is not skipped while the cache is marked unavailable: a
    /// deletion must be tried.
    pub async fn delete_many(&self, keys: &[String]) -> Result<usize, String> {
        let Some(connection) = self.connection.as_ref() else {
            return Ok(0);
        };
        if keys.is_empty() {
            return Ok(0);
        }
        let mut connection = connection.clone();
        let mut command = redis::cmd("DEL");
        command.arg(keys);
        match tokio::time::timeout(self.timeout, command.query_async::<usize>(&mut connection)).await {
            Ok(Ok(removed)) => Ok(removed),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn usable_connection(&self) -> Option<ConnectionManager> {
        let connection = self.connection.as_ref()?;
        if self.now_ms() < self.skip_until_ms.load(Ordering::Relaxed) {
            self.metrics.cache_bypassed.inc();
            return None;
        }
        Some(connection.clone())
    }

    fn succeeded(&self) {
        if self.degraded.swap(false, Ordering::Relaxed) {
            tracing::info!("embedding cache reachable again");
        }
    }

    fn failed(&self, op: &str, message: &str) {
        self.metrics.cache_errors.with_label_values(&[op]).inc();
        let until = self.now_ms() + RETRY_AFTER.as_millis() as u64;
        self.skip_until_ms.fetch_max(until, Ordering::Relaxed);
        if self.degraded.swap(true, Ordering::Relaxed) {
            tracing::debug!(op, error = message, "embedding cache still unavailable");
        } else {
            tracing::warn!(
                op,
                error = message,
                retry_after_ms = RETRY_AFTER.as_millis() as u64,
                "embedding cache unavailable; serving from the model"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_prefix_org_and_sha256_of_model_nul_text() {
        let org = Uuid::from_u128(0x1234);
        // Expected digests computed independently with Python's hashlib.
        assert_eq!(
            cache_key("m", org, "hello"),
            "ibex:emb:v2:{00000000-0000-0000-0000-000000001234}:\
             ceeefc2ffbf7e824321da8464fe34abee4df8ad14b6349190542d95d327911da"
        );
        assert_eq!(
            cache_key("all-MiniLM-L6-v2/model.onnx", org, "I like tea"),
            "ibex:emb:v2:{00000000-0000-0000-0000-000000001234}:\
             3703519b9bdabb6d570dd6dad26812260bed014fa66e6e6d515f20784df1a2d2"
        );
        assert_ne!(cache_key("model-a", org, "hello"), cache_key("model-b", org, "hello"));
        assert_ne!(cache_key("ab", org, "c"), cache_key("a", org, "bc"));
        assert_ne!(
            cache_key("m", org, "hello"),
            cache_key("m", Uuid::from_u128(0x1235), "hello"),
            "another org, another entry"
        );
    }

    #[test]
    fn vectors_round_trip_and_foreign_values_are_misses() {
        let vector: Vec<f32> = (0..EMBEDDING_DIM).map(|i| i as f32 * 0.001 - 0.1).collect();
        let bytes = encode_vector(&vector);
        assert_eq!(bytes.len(), 1536);
        assert_eq!(&bytes[4..8], &vector[1].to_le_bytes());
        assert_eq!(decode_vector(&bytes), Some(vector));
        assert_eq!(decode_vector(&bytes[..1532]), None);
        assert_eq!(decode_vector(b"not a vector"), None);
    }
}
