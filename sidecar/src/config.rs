//! `ibex serve` settings. Each one comes from, in order of precedence: a command-line flag, an
//! `IBEX_*` environment variable, the optional TOML file given with `--config`, the default below.
//! Everything is resolved once at start-up into [`Config`]; nothing reads the environment later.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use serde::Deserialize;

/// Log output: `text` for people at a terminal, `json` (one object per line) for log pipelines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The resolved settings of one `ibex serve` process.
#[derive(Clone, Debug)]
pub struct Config {
    /// HTTP listen address (REST, embedding API, health, metrics). Port 0 picks a free port.
    pub http_addr: SocketAddr,
    /// gRPC listen address (health now; context assembly later).
    pub grpc_addr: SocketAddr,
    /// Application-role connection string. Optional: the embedding API does not need the database,
    /// and the pool connects lazily, so a database outage never blocks start-up or readiness.
    pub database_url: Option<String>,
    pub db_max_connections: u32,
    /// Connections opened and warmed at start (the model loaded in their backends), and kept.
    pub db_warm_connections: u32,
    /// Embedding cache. Optional: without it every request runs inference.
    pub redis_url: Option<String>,
    /// Upper bound on one cache round trip; past it the request goes on without the cache.
    pub redis_timeout: Duration,
    pub model_dir: PathBuf,
    pub ort_library: PathBuf,
    /// Model instances, each able to run one batch at a time.
    pub embed_workers: usize,
    /// ONNX Runtime intra-op threads per instance.
    pub embed_threads: usize,
    /// Embedding requests admitted at once; the next one is answered 429 instead of queued.
    pub max_inflight: usize,
    /// Texts per batch request (at most the engine's limit of 512).
    pub max_batch: usize,
    pub cache_ttl: Duration,
    /// Request bodies larger than this are refused with 413 before they are parsed.
    pub max_body_bytes: usize,
    /// After SIGINT/SIGTERM, how long in-flight requests may take before the process exits anyway.
    pub shutdown_grace: Duration,
    pub log_format: LogFormat,

    // Context assembly (AssembleContext and the proxy), see `crate::context`.
    /// Deadline of the retrieval (directive, hot, cold together); past it the answer is
    /// directive-only and marked degraded.
    pub context_deadline: Duration,
    /// Memories kept per agent in the Redis hot cache.
    pub hot_cache_size: usize,
    /// Memories asked of the cold semantic search (`ibex_core.search`'s k).
    pub cold_k: usize,
    /// Largest share of the tokens left for memories and history that memories may take.
    pub memory_share: f64,
    /// Absolute cap on memory tokens in one context.
    pub max_memory_tokens: usize,
    /// How long an agent's directives are served from memory before they are read again.
    pub directive_cache_ttl: Duration,
    /// `statement_timeout` of the hot-path queries, so abandoned ones do not pile up.
    pub context_statement_timeout: Duration,
    /// Context assemblies run at once, per core (`context::admission`).
    pub context_slots_per_core: usize,
    /// Context calls that may wait for a slot; beyond them calls are refused at once.
    pub context_queue: usize,
    /// Longest wait for a slot; it counts against the deadline.
    pub context_queue_wait: Duration,
    /// How long a successful token check is remembered (0: every call reads the database).
    pub auth_cache_ttl: Duration,

    // Hot cache consumer, see `crate::hotcache`.
    /// Run the outbox consumer in this process (needs database_url and redis_url).
    pub hot_cache_consumer: bool,
    /// Polling interval when no notification arrives (LISTEN is the fast path).
    pub hot_cache_poll: Duration,
    /// Lease of claimed outbox events; unacknowledged events come back after it.
    pub hot_cache_lease: Duration,
    /// Events claimed per batch.
    pub hot_cache_batch: usize,
    /// Every agent's hot set is recomputed this often: recency decays with time, so membership
    /// of the top N drifts even without writes.
    pub hot_cache_rebuild_interval: Duration,

    // OpenAI-compatible proxy, see `crate::http::proxy`.
    /// Base URL of the upstream, e.g. `https://api.openai.com/v1` (the proxy posts to
    /// `<base>/chat/completions`). Without it the proxy answers 503.
    pub upstream_base_url: Option<String>,
    pub upstream_api_key: Option<Secret>,
    /// Longest wait for the upstream's response headers, and between two streamed chunks.
    pub upstream_timeout: Duration,
}

/// A setting that must never appear in logs or `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8780)),
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 8781)),
            database_url: None,
            db_max_connections: 16,
            db_warm_connections: 4,
            redis_url: None,
            redis_timeout: Duration::from_millis(250),
            // The layout `make setup` creates in a checkout; deployments set their own paths.
            model_dir: PathBuf::from(".ibex/vendor/model"),
            ort_library: PathBuf::from(".ibex/vendor/onnxruntime/libonnxruntime.so.1.32.0"),
            embed_workers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            embed_threads: 1,
            max_inflight: 64,
            max_batch: ibex_engine::embed::MAX_BATCH,
            // A week: content that repeats (re-extracted turns, re-sent memories) does so within
            // days, and an entry costs about 1.5 KiB.
            cache_ttl: Duration::from_secs(7 * 24 * 3600),
            max_body_bytes: 4 * 1024 * 1024,
            shutdown_grace: Duration::from_secs(30),
            log_format: LogFormat::Text,
            context_deadline: Duration::from_millis(40),
            hot_cache_size: 50,
            cold_k: 20,
            memory_share: 0.5,
            max_memory_tokens: 4096,
            directive_cache_ttl: Duration::from_secs(5),
            context_statement_timeout: Duration::from_secs(2),
            // A call mostly waits on Postgres and Redis; measured on 2 cores (make
            // bench-context-load), 4 per core keeps admitted calls inside the deadline.
            context_slots_per_core: 4,
            context_queue: 8,
            context_queue_wait: Duration::from_millis(10),
            auth_cache_ttl: Duration::from_secs(10),
            hot_cache_consumer: true,
            hot_cache_poll: Duration::from_secs(1),
            hot_cache_lease: Duration::from_secs(30),
            hot_cache_batch: 200,
            hot_cache_rebuild_interval: Duration::from_secs(600),
            upstream_base_url: None,
            upstream_api_key: None,
            upstream_timeout: Duration::from_secs(120),
        }
    }
}

/// Flags of `ibex serve`. Every setting is optional here so that "not given" can fall through to
/// the environment, the file and the default.
#[derive(Args, Debug, Default)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (keys as the flags, with underscores).
    #[arg(long, env = "IBEX_CONFIG")]
    pub config: Option<PathBuf>,
    /// HTTP listen address [default: 127.0.0.1:8780].
    #[arg(long, env = "IBEX_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// gRPC listen address [default: 127.0.0.1:8781].
    #[arg(long, env = "IBEX_GRPC_ADDR")]
    pub grpc_addr: Option<SocketAddr>,
    /// Application role (not the migration superuser) [default: none; the embedding API does
    /// not need it].
    #[arg(long, env = "IBEX_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Database pool size [default: 16].
    #[arg(long, env = "IBEX_DB_MAX_CONNECTIONS")]
    pub db_max_connections: Option<u32>,
    /// Connections opened and warmed at start and kept open [default: 4].
    #[arg(long, env = "IBEX_DB_WARM_CONNECTIONS")]
    pub db_warm_connections: Option<u32>,
    /// Embedding cache, e.g. redis://127.0.0.1:6379/ [default: none, cache off].
    #[arg(long, env = "IBEX_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Longest wait for one cache round trip before going on without it [default: 250].
    #[arg(long, env = "IBEX_REDIS_TIMEOUT_MS")]
    pub redis_timeout_ms: Option<u64>,
    /// Directory with model.onnx and tokenizer.json [default: .ibex/vendor/model].
    #[arg(long, env = "IBEX_MODEL_DIR")]
    pub model_dir: Option<PathBuf>,
    /// ONNX Runtime shared library [default: .ibex/vendor/onnxruntime/libonnxruntime.so.1.32.0].
    #[arg(long, env = "IBEX_ORT_LIBRARY")]
    pub ort_library: Option<PathBuf>,
    /// Model instances [default: available cores].
    #[arg(long, env = "IBEX_EMBED_WORKERS")]
    pub embed_workers: Option<usize>,
    /// Intra-op threads per model instance [default: 1].
    #[arg(long, env = "IBEX_EMBED_THREADS")]
    pub embed_threads: Option<usize>,
    /// Embedding requests admitted at once; more are answered 429 [default: 64].
    #[arg(long, env = "IBEX_MAX_INFLIGHT")]
    pub max_inflight: Option<usize>,
    /// Texts per request, at most 512 [default: 512].
    #[arg(long, env = "IBEX_MAX_BATCH")]
    pub max_batch: Option<usize>,
    /// Lifetime of a cached embedding [default: 604800, one week].
    #[arg(long, env = "IBEX_CACHE_TTL_SECONDS")]
    pub cache_ttl_seconds: Option<u64>,
    /// Largest request body accepted; larger is 413 [default: 4194304].
    #[arg(long, env = "IBEX_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Time in-flight requests get after SIGINT/SIGTERM [default: 30].
    #[arg(long, env = "IBEX_SHUTDOWN_GRACE_SECONDS")]
    pub shutdown_grace_seconds: Option<u64>,
    /// Retrieval deadline of context assembly [default: 40].
    #[arg(long, env = "IBEX_CONTEXT_DEADLINE_MS")]
    pub context_deadline_ms: Option<u64>,
    /// Memories per agent in the hot cache [default: 50].
    #[arg(long, env = "IBEX_HOT_CACHE_SIZE")]
    pub hot_cache_size: Option<usize>,
    /// Memories from the cold search, 1 to 200 [default: 20].
    #[arg(long, env = "IBEX_COLD_K")]
    pub cold_k: Option<usize>,
    /// Largest share of the free tokens that memories take, 0 to 1 [default: 0.5].
    #[arg(long, env = "IBEX_MEMORY_SHARE")]
    pub memory_share: Option<f64>,
    /// Cap on memory tokens per context [default: 4096].
    #[arg(long, env = "IBEX_MAX_MEMORY_TOKENS")]
    pub max_memory_tokens: Option<usize>,
    /// Directives are re-read after this long [default: 5000].
    #[arg(long, env = "IBEX_DIRECTIVE_CACHE_TTL_MS")]
    pub directive_cache_ttl_ms: Option<u64>,
    /// statement_timeout of hot-path queries [default: 2000].
    #[arg(long, env = "IBEX_CONTEXT_STATEMENT_TIMEOUT_MS")]
    pub context_statement_timeout_ms: Option<u64>,
    /// Context assemblies at once per core [default: 4].
    #[arg(long, env = "IBEX_CONTEXT_SLOTS_PER_CORE")]
    pub context_slots_per_core: Option<usize>,
    /// Context calls that may wait for a slot [default: 8].
    #[arg(long, env = "IBEX_CONTEXT_QUEUE")]
    pub context_queue: Option<usize>,
    /// Longest wait for a context slot [default: 10].
    #[arg(long, env = "IBEX_CONTEXT_QUEUE_WAIT_MS")]
    pub context_queue_wait_ms: Option<u64>,
    /// Successful token checks are remembered this long; 0 disables [default: 10].
    #[arg(long, env = "IBEX_AUTH_CACHE_TTL_SECONDS")]
    pub auth_cache_ttl_seconds: Option<u64>,
    /// Run the hot cache outbox consumer here [default: true].
    #[arg(long, env = "IBEX_HOT_CACHE_CONSUMER")]
    pub hot_cache_consumer: Option<bool>,
    /// Outbox polling interval when no notification arrives [default: 1000].
    #[arg(long, env = "IBEX_HOT_CACHE_POLL_MS")]
    pub hot_cache_poll_ms: Option<u64>,
    /// Lease of claimed outbox events [default: 30].
    #[arg(long, env = "IBEX_HOT_CACHE_LEASE_SECONDS")]
    pub hot_cache_lease_seconds: Option<u64>,
    /// Outbox events per batch [default: 200].
    #[arg(long, env = "IBEX_HOT_CACHE_BATCH")]
    pub hot_cache_batch: Option<usize>,
    /// Full recomputation of every hot set [default: 600].
    #[arg(long, env = "IBEX_HOT_CACHE_REBUILD_INTERVAL_SECONDS")]
    pub hot_cache_rebuild_interval_seconds: Option<u64>,
    /// Upstream of the chat completions proxy, e.g. https://api.openai.com/v1 [default: none].
    #[arg(long, env = "IBEX_UPSTREAM_BASE_URL")]
    pub upstream_base_url: Option<String>,
    /// API key sent upstream as a Bearer token [default: none].
    #[arg(long, env = "IBEX_UPSTREAM_API_KEY", hide_env_values = true)]
    pub upstream_api_key: Option<String>,
    /// File holding the upstream API key (first line), instead of the key itself.
    #[arg(long, env = "IBEX_UPSTREAM_API_KEY_FILE")]
    pub upstream_api_key_file: Option<PathBuf>,
    /// Longest wait for upstream headers or between streamed chunks [default: 120000].
    #[arg(long, env = "IBEX_UPSTREAM_TIMEOUT_MS")]
    pub upstream_timeout_ms: Option<u64>,
}

/// The TOML file: the same keys, all optional; unknown keys are an error so typos do not pass
/// silently.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    http_addr: Option<SocketAddr>,
    grpc_addr: Option<SocketAddr>,
    database_url: Option<String>,
    db_max_connections: Option<u32>,
    db_warm_connections: Option<u32>,
    redis_url: Option<String>,
    redis_timeout_ms: Option<u64>,
    model_dir: Option<PathBuf>,
    ort_library: Option<PathBuf>,
    embed_workers: Option<usize>,
    embed_threads: Option<usize>,
    max_inflight: Option<usize>,
    max_batch: Option<usize>,
    cache_ttl_seconds: Option<u64>,
    max_body_bytes: Option<usize>,
    shutdown_grace_seconds: Option<u64>,
    log_format: Option<LogFormat>,
    context_deadline_ms: Option<u64>,
    hot_cache_size: Option<usize>,
    cold_k: Option<usize>,
    memory_share: Option<f64>,
    max_memory_tokens: Option<usize>,
    directive_cache_ttl_ms: Option<u64>,
    context_statement_timeout_ms: Option<u64>,
    context_slots_per_core: Option<usize>,
    context_queue: Option<usize>,
    context_queue_wait_ms: Option<u64>,
    auth_cache_ttl_seconds: Option<u64>,
    hot_cache_consumer: Option<bool>,
    hot_cache_poll_ms: Option<u64>,
    hot_cache_lease_seconds: Option<u64>,
    hot_cache_batch: Option<usize>,
    hot_cache_rebuild_interval_seconds: Option<u64>,
    upstream_base_url: Option<String>,
    upstream_api_key: Option<String>,
    upstream_api_key_file: Option<PathBuf>,
    upstream_timeout_ms: Option<u64>,
}

impl FileConfig {
    fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))
    }
}

impl Config {
    /// Resolves flags and environment (already merged by clap, flags first) over the file over
    /// the defaults, then checks the result. `log_format` is a global flag of the binary.
    pub fn load(args: ServeArgs, log_format: Option<LogFormat>) -> anyhow::Result<Self> {
        let file = match &args.config {
            Some(path) => FileConfig::read(path)?,
            None => FileConfig::default(),
        };
        let key_file = args
            .upstream_api_key_file
            .clone()
            .or(file.upstream_api_key_file.clone());
        let mut config = Self::merge(args, log_format, file);
        if config.upstream_api_key.is_none() {
            if let Some(path) = key_file {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading upstream_api_key_file {}", path.display()))?;
                let key = text.lines().next().unwrap_or("").trim().to_string();
                if key.is_empty() {
                    bail!("setting upstream_api_key_file: {} is empty", path.display());
                }
                config.upstream_api_key = Some(Secret(key));
            }
        }
        config.validate()?;
        Ok(config)
    }

    fn merge(args: ServeArgs, log_format: Option<LogFormat>, file: FileConfig) -> Self {
        let d = Self::default();
        let secs = Duration::from_secs;
        let ms = Duration::from_millis;
        Self {
            http_addr: args.http_addr.or(file.http_addr).unwrap_or(d.http_addr),
            grpc_addr: args.grpc_addr.or(file.grpc_addr).unwrap_or(d.grpc_addr),
            database_url: args.database_url.or(file.database_url).or(d.database_url),
            db_max_connections: args
                .db_max_connections
                .or(file.db_max_connections)
                .unwrap_or(d.db_max_connections),
            db_warm_connections: args
                .db_warm_connections
                .or(file.db_warm_connections)
                .unwrap_or(d.db_warm_connections),
            redis_url: args.redis_url.or(file.redis_url).or(d.redis_url),
            redis_timeout: args
                .redis_timeout_ms
                .or(file.redis_timeout_ms)
                .map_or(d.redis_timeout, Duration::from_millis),
            model_dir: args.model_dir.or(file.model_dir).unwrap_or(d.model_dir),
            ort_library: args.ort_library.or(file.ort_library).unwrap_or(d.ort_library),
            embed_workers: args.embed_workers.or(file.embed_workers).unwrap_or(d.embed_workers),
            embed_threads: args.embed_threads.or(file.embed_threads).unwrap_or(d.embed_threads),
            max_inflight: args.max_inflight.or(file.max_inflight).unwrap_or(d.max_inflight),
            max_batch: args.max_batch.or(file.max_batch).unwrap_or(d.max_batch),
            cache_ttl: args
                .cache_ttl_seconds
                .or(file.cache_ttl_seconds)
                .map_or(d.cache_ttl, secs),
            max_body_bytes: args.max_body_bytes.or(file.max_body_bytes).unwrap_or(d.max_body_bytes),
            shutdown_grace: args
                .shutdown_grace_seconds
                .or(file.shutdown_grace_seconds)
                .map_or(d.shutdown_grace, secs),
            log_format: log_format.or(file.log_format).unwrap_or(d.log_format),
            context_deadline: args
                .context_deadline_ms
                .or(file.context_deadline_ms)
                .map_or(d.context_deadline, ms),
            hot_cache_size: args.hot_cache_size.or(file.hot_cache_size).unwrap_or(d.hot_cache_size),
            cold_k: args.cold_k.or(file.cold_k).unwrap_or(d.cold_k),
            memory_share: args.memory_share.or(file.memory_share).unwrap_or(d.memory_share),
            max_memory_tokens: args
                .max_memory_tokens
                .or(file.max_memory_tokens)
                .unwrap_or(d.max_memory_tokens),
            directive_cache_ttl: args
                .directive_cache_ttl_ms
                .or(file.directive_cache_ttl_ms)
                .map_or(d.directive_cache_ttl, ms),
            context_statement_timeout: args
                .context_statement_timeout_ms
                .or(file.context_statement_timeout_ms)
                .map_or(d.context_statement_timeout, ms),
            context_slots_per_core: args
                .context_slots_per_core
                .or(file.context_slots_per_core)
                .unwrap_or(d.context_slots_per_core),
            context_queue: args.context_queue.or(file.context_queue).unwrap_or(d.context_queue),
            context_queue_wait: args
                .context_queue_wait_ms
                .or(file.context_queue_wait_ms)
                .map_or(d.context_queue_wait, ms),
            auth_cache_ttl: args
                .auth_cache_ttl_seconds
                .or(file.auth_cache_ttl_seconds)
                .map_or(d.auth_cache_ttl, secs),
            hot_cache_consumer: args
                .hot_cache_consumer
                .or(file.hot_cache_consumer)
                .unwrap_or(d.hot_cache_consumer),
            hot_cache_poll: args
                .hot_cache_poll_ms
                .or(file.hot_cache_poll_ms)
                .map_or(d.hot_cache_poll, ms),
            hot_cache_lease: args
                .hot_cache_lease_seconds
                .or(file.hot_cache_lease_seconds)
                .map_or(d.hot_cache_lease, secs),
            hot_cache_batch: args
                .hot_cache_batch
                .or(file.hot_cache_batch)
                .unwrap_or(d.hot_cache_batch),
            hot_cache_rebuild_interval: args
                .hot_cache_rebuild_interval_seconds
                .or(file.hot_cache_rebuild_interval_seconds)
                .map_or(d.hot_cache_rebuild_interval, secs),
            upstream_base_url: args
                .upstream_base_url
                .or(file.upstream_base_url)
                .or(d.upstream_base_url),
            upstream_api_key: args.upstream_api_key.or(file.upstream_api_key).map(Secret),
            upstream_timeout: args
                .upstream_timeout_ms
                .or(file.upstream_timeout_ms)
                .map_or(d.upstream_timeout, ms),
        }
    }

    /// Refuses settings that cannot work, naming the setting.
    pub fn validate(&self) -> anyhow::Result<()> {
        let engine_max = ibex_engine::embed::MAX_BATCH;
        let positive = [
            ("embed_workers", self.embed_workers),
            ("embed_threads", self.embed_threads),
            ("max_inflight", self.max_inflight),
            ("max_batch", self.max_batch),
            ("db_max_connections", self.db_max_connections as usize),
        ];
        for (name, value) in positive {
            if value == 0 {
                bail!("setting {name} must be at least 1");
            }
        }
        if self.max_batch > engine_max {
            bail!(
                "setting max_batch is {}; the model accepts at most {engine_max}",
                self.max_batch
            );
        }
        // Room for at least one text; smaller limits would refuse every request.
        if self.max_body_bytes < 1024 {
            bail!("setting max_body_bytes must be at least 1024");
        }
        if self.cache_ttl.is_zero() {
            bail!("setting cache_ttl_seconds must be at least 1");
        }
        if self.redis_timeout.is_zero() {
            bail!("setting redis_timeout_ms must be at least 1");
        }
        let nonzero = [
            ("hot_cache_size", self.hot_cache_size),
            ("hot_cache_batch", self.hot_cache_batch),
            ("context_slots_per_core", self.context_slots_per_core),
            ("context_deadline_ms", self.context_deadline.as_millis() as usize),
            ("hot_cache_poll_ms", self.hot_cache_poll.as_millis() as usize),
            ("hot_cache_lease_seconds", self.hot_cache_lease.as_secs() as usize),
            ("upstream_timeout_ms", self.upstream_timeout.as_millis() as usize),
            (
                "context_statement_timeout_ms",
                self.context_statement_timeout.as_millis() as usize,
            ),
            (
                "hot_cache_rebuild_interval_seconds",
                self.hot_cache_rebuild_interval.as_secs() as usize,
            ),
        ];
        for (name, value) in nonzero {
            if value == 0 {
                bail!("setting {name} must be at least 1");
            }
        }
        if !(1..=200).contains(&self.cold_k) {
            bail!(
                "setting cold_k must be between 1 and 200 (ibex_core.search's limit), got {}",
                self.cold_k
            );
        }
        if !(0.0..=1.0).contains(&self.memory_share) {
            bail!(
                "setting memory_share must be between 0 and 1, got {}",
                self.memory_share
            );
        }
        if let Some(url) = &self.upstream_base_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bail!("setting upstream_base_url must start with http:// or https://, got {url:?}");
            }
        }
        if self.http_addr == self.grpc_addr && self.http_addr.port() != 0 {
            bail!(
                "settings http_addr and grpc_addr must differ (both are {})",
                self.http_addr
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> FileConfig {
        toml::from_str(text).expect("valid toml")
    }

    #[test]
    fn defaults_apply_when_nothing_is_given() {
        let config = Config::merge(ServeArgs::default(), None, FileConfig::default());
        assert_eq!(config.http_addr.to_string(), "127.0.0.1:8780");
        assert_eq!(config.grpc_addr.to_string(), "127.0.0.1:8781");
        assert_eq!(config.max_inflight, 64);
        assert_eq!(config.max_batch, 512);
        assert_eq!(config.embed_threads, 1);
        assert_eq!(config.cache_ttl, Duration::from_secs(604_800));
        assert!(config.embed_workers >= 1);
        assert!(config.redis_url.is_none());
        config.validate().unwrap();
    }

    #[test]
    fn flags_win_over_the_file_and_the_file_over_defaults() {
        let args = ServeArgs {
            max_inflight: Some(3),
            ..ServeArgs::default()
        };
        let file = file("max_inflight = 9\nmax_batch = 100\nlog_format = \"json\"\ncache_ttl_seconds = 60\n");
        let config = Config::merge(args, None, file);
        assert_eq!(config.max_inflight, 3);
        assert_eq!(config.max_batch, 100);
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(config.cache_ttl, Duration::from_secs(60));
        let config = Config::merge(ServeArgs::default(), Some(LogFormat::Text), FileConfig::default());
        assert_eq!(config.log_format, LogFormat::Text);
    }

    #[test]
    fn unknown_file_keys_and_bad_values_are_refused() {
        assert!(toml::from_str::<FileConfig>("max_inflite = 3").is_err());
        let config = Config {
            max_batch: 513,
            ..Config::default()
        };
        assert!(config.validate().unwrap_err().to_string().contains("max_batch"));
        let config = Config {
            embed_workers: 0,
            ..Config::default()
        };
        assert!(config.validate().unwrap_err().to_string().contains("embed_workers"));
    }
}
