//! `ibex serve` settings, declared once in [`Config`]: each field's type, default, file key and
//! environment variable all come from that one declaration.
//!
//! Layers, each over the one before: the defaults ([`Config::default`]), the optional TOML file
//! given with `--config`, `IBEX_<KEY>` environment variables (the key in upper case), then the
//! few command-line flags of [`ServeArgs`]. Everything is resolved once at start-up; nothing
//! reads the environment later. Durations keep their unit in the key (`*_ms`, `*_seconds`), so
//! a file or environment never has to guess it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::Value;
use figment::{Figment, Provider};
use serde::{Deserialize, Serialize};
use serde_with::{serde_as, DurationMilliSeconds, DurationSeconds};

/// Log output: `text` for people at a terminal, `json` (one object per line) for log pipelines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The settings of one `ibex serve` process. A key missing from every layer takes its value
/// from [`Config::default`]; a key no field has is refused, so typos do not pass silently.
#[serde_as]
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// HTTP listen address (embedding API, chat completions proxy, health, metrics). Port 0 picks
    /// a free port.
    pub http_addr: SocketAddr,
    /// gRPC listen address (AssembleContext, health).
    pub grpc_addr: SocketAddr,
    /// Application-role connection string (not the migration superuser). Optional: the embedding
    /// API does not need the database, and the pool connects lazily, so a database outage never
    /// blocks start-up or readiness.
    pub database_url: Option<String>,
    /// A streaming replica for the hot path's reads (AssembleContext's directives, hot-cache
    /// rebuilds and semantic search), same role and password as `database_url`. Writes (access
    /// counts, sessions, usage) still go to `database_url`. A memory written on the primary
    /// reaches answers once the replica has replayed it (its replay lag). Default: none, reads
    /// go to `database_url`.
    pub read_database_url: Option<String>,
    /// Database pool size.
    pub db_max_connections: u32,
    /// Connections opened and warmed at start (the model loaded in their backends), and kept.
    pub db_warm_connections: u32,
    /// Embedding cache and hot cache, e.g. `redis://127.0.0.1:6379/`. Optional: without it
    /// every request runs inference.
    pub redis_url: Option<String>,
    /// Upper bound on one cache round trip; past it the request goes on without the cache.
    #[serde(rename = "redis_timeout_ms")]
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub redis_timeout: Duration,
    /// Directory with model.onnx and tokenizer.json.
    pub model_dir: PathBuf,
    /// The ONNX Runtime shared library.
    pub ort_library: PathBuf,
    /// Model instances, each able to run one batch at a time.
    pub embed_workers: usize,
    /// ONNX Runtime intra-op threads per instance.
    pub embed_threads: usize,
    /// Embedding requests admitted at once; the next one is answered 429 instead of queued.
    pub max_inflight: usize,
    /// Texts per batch request (at most the engine's limit of 512).
    pub max_batch: usize,
    /// Characters of one text sent to the embedding endpoints; a longer one is refused with 413
    /// before it is tokenized (the model reads only its first 256 tokens anyway). The query of a
    /// context call is cut to this length instead.
    pub max_text_chars: usize,
    /// Texts per second each API token may embed through `/v1/embed*` (a token bucket per token,
    /// cache hits included); past it the answer is 429 `rate_limited` with `Retry-After`.
    pub embed_rate_per_second: f64,
    /// Texts a token may embed at once before the rate applies (the bucket's size); at least
    /// max_batch, or the largest batch could never pass.
    pub embed_rate_burst: usize,
    /// Model instances reserved for context assembly's query embeddings (AssembleContext and the
    /// proxy), beside the embed_workers the embedding endpoints share: a flood of `/v1/embed*`
    /// batches cannot take them. 0 reserves none (context calls then queue with the batches).
    pub context_embed_workers: usize,
    /// Lifetime of a cached embedding.
    #[serde(rename = "cache_ttl_seconds")]
    #[serde_as(as = "DurationSeconds<u64>")]
    pub cache_ttl: Duration,
    /// Request bodies larger than this are refused with 413 before they are parsed.
    pub max_body_bytes: usize,
    /// After SIGINT/SIGTERM, how long in-flight requests may take before the process exits anyway.
    #[serde(rename = "shutdown_grace_seconds")]
    #[serde_as(as = "DurationSeconds<u64>")]
    pub shutdown_grace: Duration,
    pub log_format: LogFormat,

    // Context assembly (AssembleContext and the proxy), see `crate::context`.
    /// Deadline of the retrieval (directive, hot, cold together); past it the answer is
    /// directive-only and marked degraded.
    #[serde(rename = "context_deadline_ms")]
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub context_deadline: Duration,
    /// Memories kept per agent in the Redis hot cache.
    pub hot_cache_size: usize,
    /// Fewest memories asked of the cold search (`ibex_core.search`'s k), 1 to 200. The pool
    /// grows with the memory budget (`cold_tokens_per_memory`) up to `cold_k_max`.
    pub cold_k: usize,
    /// Most memories asked of the cold search, 1 to 200; a larger `cold_k` wins (a fixed pool).
    pub cold_k_max: usize,
    /// Tokens of a typical memory line: the cold pool holds `memory budget / this` candidates
    /// (within `cold_k`..`cold_k_max`), enough to fill the budget when they are all relevant.
    pub cold_tokens_per_memory: usize,
    /// Relevance (0 to 1) the best candidate must reach for a context to carry memories at all
    /// (`ibex_engine::selection`): a greeting matches nothing that well.
    pub small_talk_relevance: f64,
    /// Relevance (0 to 1) below which a memory is never packed; a request may raise or lower it
    /// with `min_relevance`.
    pub min_relevance: f64,
    /// Share (0 to 1) of the best candidate's relevance below which a memory is not packed.
    pub relative_relevance: f64,
    /// Cosine similarity (0 to 1) above which two candidates are near-copies and only the
    /// better one is packed; 1 turns the rule off.
    pub near_copy_similarity: f64,
    /// Largest share of the tokens left for memories and history that memories may take.
    pub memory_share: f64,
    /// Absolute cap on memory tokens in one context.
    pub max_memory_tokens: usize,
    /// How long an agent's directives are served from memory before they are read again.
    #[serde(rename = "directive_cache_ttl_ms")]
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub directive_cache_ttl: Duration,
    /// `statement_timeout` of the hot-path queries, so abandoned ones do not pile up.
    #[serde(rename = "context_statement_timeout_ms")]
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub context_statement_timeout: Duration,
    /// Context assemblies run at once, per core (`context::admission`).
    pub context_slots_per_core: usize,
    /// Characters of all messages of one context call (AssembleContext, the proxy); a larger
    /// conversation is refused with 413 (INVALID_ARGUMENT) before any token is counted.
    pub max_context_chars: usize,
    /// Context calls that may wait for a slot; beyond them calls are refused at once.
    pub context_queue: usize,
    /// Longest wait for a slot; it counts against the deadline, and is cut to what the deadline
    /// leaves after a slow recent call (`context::admission`).
    #[serde(rename = "context_queue_wait_ms")]
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub context_queue_wait: Duration,
    /// How long a successful token check is remembered (0: every call reads the database).
    #[serde(rename = "auth_cache_ttl_seconds")]
    #[serde_as(as = "DurationSeconds<u64>")]
    pub auth_cache_ttl: Duration,
    /// The AuthService the REST API's middleware asks (`http://host:port`); unset: this
    /// process's own gRPC listener.
    pub auth_service_url: Option<String>,
    /// How long the REST API remembers a valid token (0: every request asks the AuthService).
    /// Revocations are pushed, so this bounds only how long a lost notification is trusted.
    #[serde(rename = "api_auth_cache_ttl_seconds")]
    #[serde_as(as = "DurationSeconds<u64>")]
    pub api_auth_cache_ttl: Duration,
    /// Failed authentications allowed per minute, per source address and per token prefix.
    pub auth_failures_per_minute: f64,
    /// Failed authentications allowed in a burst before that rate applies.
    pub auth_failure_burst: usize,
    /// How long the REST API keeps the answer of a POST with an `Idempotency-Key`, to replay it.
    #[serde(rename = "idempotency_ttl_seconds")]
    #[serde_as(as = "DurationSeconds<u64>")]
    pub idempotency_ttl: Duration,

    // Hot cache consumer, see `crate::hotcache`.
    /// Run the outbox consumer in this process (needs database_url and redis_url).
    pub hot_cache_consumer: bool,
    /// Polling interval when no notification arrives (LISTEN is the fast path).
    #[serde(rename = "hot_cache_poll_ms")]
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub hot_cache_poll: Duration,
    /// Lease of claimed outbox events; unacknowledged events come back after it.
    #[serde(rename = "hot_cache_lease_seconds")]
    #[serde_as(as = "DurationSeconds<u64>")]
    pub hot_cache_lease: Duration,
    /// Events claimed per batch.
    pub hot_cache_batch: usize,
    /// Every agent's hot set is recomputed this often: recency decays with time, so membership
    /// of the top N drifts even without writes.
    #[serde(rename = "hot_cache_rebuild_interval_seconds")]
    #[serde_as(as = "DurationSeconds<u64>")]
    pub hot_cache_rebuild_interval: Duration,
    /// Every hot-cache key expires after this long unless rewritten (each rebuild rewrites every
    /// live agent's keys): a backstop, so keys of an agent or org whose removal was missed (a
    /// Redis outage during a purge) do not stay for ever. Must exceed the rebuild interval.
    #[serde(rename = "hot_cache_key_ttl_seconds")]
    #[serde_as(as = "DurationSeconds<u64>")]
    pub hot_cache_key_ttl: Duration,

    // OpenAI-compatible proxy, see `crate::http::proxy`.
    /// Base URL of the upstream, e.g. `https://api.openai.com/v1` (the proxy posts to
    /// `<base>/chat/completions`). Without it the proxy answers 503.
    pub upstream_base_url: Option<String>,
    /// API key sent upstream as a Bearer token.
    pub upstream_api_key: Option<Secret>,
    /// A file whose first line is the upstream API key, read at start-up when
    /// `upstream_api_key` is not set (keeps the key out of the environment).
    pub upstream_api_key_file: Option<PathBuf>,
    /// Longest wait for the upstream's response headers, and between two streamed chunks.
    #[serde(rename = "upstream_timeout_ms")]
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub upstream_timeout: Duration,

    // Session archives on S3, see `crate::archive`.
    /// The S3 endpoint, e.g. `http://127.0.0.1:39000` (Garage, MinIO) or
    /// `https://s3.eu-west-1.amazonaws.com`. Without it nothing is archived: completed sessions
    /// stay queued (and keep their turns) until an endpoint is configured.
    pub s3_endpoint: Option<String>,
    /// The region requests are signed for (`garage` for Garage's default).
    pub s3_region: String,
    pub s3_access_key_id: Option<String>,
    pub s3_secret_access_key: Option<Secret>,
    /// The archives' bucket, created at start-up when missing.
    pub s3_bucket: String,
    /// Path-style URLs (`<endpoint>/<bucket>/<key>`), as Garage and MinIO expect; false for
    /// virtual-host style (`<bucket>.<endpoint>/<key>`).
    pub s3_path_style: bool,
    /// Longest wait for one S3 request.
    #[serde(rename = "s3_timeout_ms")]
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub s3_timeout: Duration,
    /// Run the archive worker in this process (needs database_url and s3_endpoint).
    pub archive_worker: bool,
    /// Polling interval when no notification arrives (LISTEN is the fast path).
    #[serde(rename = "archive_poll_ms")]
    #[serde_as(as = "DurationMilliSeconds<u64>")]
    pub archive_poll: Duration,
    /// Lease of a claimed archive event; an upload not recorded by then is retried elsewhere.
    #[serde(rename = "archive_lease_seconds")]
    #[serde_as(as = "DurationSeconds<u64>")]
    pub archive_lease: Duration,
    /// Sessions archived at once by one worker.
    pub archive_batch: usize,
    /// Failed uploads of one session before its event goes to dead_letters.
    pub archive_max_attempts: u32,
    /// How long an archived, fully extracted session keeps its turn contents in Postgres
    /// (0: cleared as soon as both hold).
    #[serde(rename = "archive_retention_seconds")]
    #[serde_as(as = "DurationSeconds<u64>")]
    pub archive_retention: Duration,
    /// Largest archive written or replayed, in bytes; a larger session is dead-lettered.
    pub archive_max_bytes: usize,

    /// Roll closed hours of usage up for analytics in this process (needs database_url; several
    /// sidecars may all run it: each org's watermark is held by one run at a time).
    pub usage_rollup: bool,
    /// How often the usage rollup looks for closed hours.
    #[serde(rename = "usage_rollup_interval_seconds")]
    #[serde_as(as = "DurationSeconds<u64>")]
    pub usage_rollup_interval: Duration,
    /// How long after an hour ends it counts as closed: a proxied call is stamped when its
    /// transaction starts, so one committing just after the hour must still find it open.
    #[serde(rename = "usage_rollup_grace_seconds")]
    #[serde_as(as = "DurationSeconds<u64>")]
    pub usage_rollup_grace: Duration,

    // The operator dashboard (crate dashboard-ssr), at /dashboard.
    /// Serve the dashboard.
    pub dashboard: bool,
    /// Mark the dashboard's cookies `Secure`: set it when browsers reach the sidecar over TLS
    /// (directly or through a proxy that terminates TLS).
    pub dashboard_secure_cookies: bool,
    /// A dashboard session unused this long is over.
    #[serde(rename = "dashboard_session_idle_seconds")]
    #[serde_as(as = "DurationSeconds<u64>")]
    pub dashboard_session_idle: Duration,
    /// A dashboard session is over this long after login, used or not.
    #[serde(rename = "dashboard_session_max_seconds")]
    #[serde_as(as = "DurationSeconds<u64>")]
    pub dashboard_session_max: Duration,
}

/// A setting that must never appear in logs, `Debug` output or serialized settings.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("(secret)")
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8780)),
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 8781)),
            database_url: None,
            read_database_url: None,
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
            // Far more than the 256 tokens the model reads; tokenizing it takes about a millisecond.
            max_text_chars: 65_536,
            // An extraction-shaped client embeds a few dozen texts per turn; 100 per second with a
            // burst of two full batches leaves it alone and stops one token from taking every
            // model instance.
            embed_rate_per_second: 100.0,
            embed_rate_burst: 2 * ibex_engine::embed::MAX_BATCH,
            context_embed_workers: 1,
            // A week: content that repeats (re-extracted turns, re-sent memories) does so within
            // days, and an entry costs about 1.5 KiB.
            cache_ttl: Duration::from_secs(7 * 24 * 3600),
            max_body_bytes: 4 * 1024 * 1024,
            shutdown_grace: Duration::from_secs(30),
            log_format: LogFormat::Text,
            context_deadline: Duration::from_millis(40),
            hot_cache_size: 50,
            cold_k: 20,
            cold_k_max: 50,
            cold_tokens_per_memory: 24,
            small_talk_relevance: ibex_engine::selection::SelectionSettings::default().small_talk_relevance,
            min_relevance: ibex_engine::selection::SelectionSettings::default().min_relevance,
            relative_relevance: ibex_engine::selection::SelectionSettings::default().relative_relevance,
            near_copy_similarity: ibex_engine::selection::SelectionSettings::default().near_copy_similarity,
            memory_share: 0.5,
            max_memory_tokens: 4096,
            directive_cache_ttl: Duration::from_secs(5),
            context_statement_timeout: Duration::from_secs(2),
            // Every call embeds its question on one core; more calls than cores in flight only
            // lengthen each past the deadline (measured, see context::admission).
            context_slots_per_core: 1,
            // 1 MiB of text (about 250k tokens): more than most context windows; the request body
            // limit (max_body_bytes) bounds it too.
            max_context_chars: 1 << 20,
            context_queue: 8,
            context_queue_wait: Duration::from_millis(5),
            auth_cache_ttl: Duration::from_secs(10),
            auth_service_url: None,
            api_auth_cache_ttl: Duration::from_secs(5),
            auth_failures_per_minute: 30.0,
            auth_failure_burst: 30,
            idempotency_ttl: Duration::from_secs(24 * 3600),
            hot_cache_consumer: true,
            hot_cache_poll: Duration::from_secs(1),
            hot_cache_lease: Duration::from_secs(30),
            hot_cache_batch: 200,
            hot_cache_rebuild_interval: Duration::from_secs(600),
            hot_cache_key_ttl: Duration::from_secs(24 * 3600),
            upstream_base_url: None,
            upstream_api_key: None,
            upstream_api_key_file: None,
            upstream_timeout: Duration::from_secs(120),
            s3_endpoint: None,
            s3_region: "garage".into(),
            s3_access_key_id: None,
            s3_secret_access_key: None,
            s3_bucket: "ibex-sessions".into(),
            s3_path_style: true,
            s3_timeout: Duration::from_secs(30),
            archive_worker: true,
            archive_poll: Duration::from_secs(1),
            archive_lease: Duration::from_secs(120),
            archive_batch: 32,
            archive_max_attempts: 10,
            archive_retention: Duration::from_secs(7 * 24 * 3600),
            // A session's turns hold at most 1,000,000 characters each; 256 MiB covers hundreds
            // of long calls while keeping one archive's memory bounded.
            archive_max_bytes: 256 << 20,
            usage_rollup: true,
            usage_rollup_interval: Duration::from_secs(60),
            usage_rollup_grace: Duration::from_secs(300),
            dashboard: true,
            dashboard_secure_cookies: false,
            dashboard_session_idle: Duration::from_secs(30 * 60),
            dashboard_session_max: Duration::from_secs(12 * 3600),
        }
    }
}

/// Flags of `ibex serve`: the settings people set per run (addresses, where things are).
/// Every other setting is set in the file or the environment.
#[derive(Args, Debug, Default, Serialize)]
pub struct ServeArgs {
    /// TOML file with any of the settings (the keys of `Config`, e.g. max_inflight = 32).
    #[arg(long, env = "IBEX_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// HTTP listen address [default: 127.0.0.1:8780].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_addr: Option<SocketAddr>,
    /// gRPC listen address [default: 127.0.0.1:8781].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc_addr: Option<SocketAddr>,
    /// Application role (not the migration superuser) [default: none].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    /// A streaming replica for the hot path's reads [default: none, reads use database_url].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_database_url: Option<String>,
    /// Redis, e.g. redis://127.0.0.1:6379/ [default: none, caches off].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_url: Option<String>,
    /// Directory with model.onnx and tokenizer.json [default: .ibex/vendor/model].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_dir: Option<PathBuf>,
    /// ONNX Runtime shared library [default: .ibex/vendor/onnxruntime/libonnxruntime.so.1.32.0].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ort_library: Option<PathBuf>,
    /// Upstream of the chat completions proxy, e.g. https://api.openai.com/v1 [default: none].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream_base_url: Option<String>,
    /// Log format (also the global --log-format).
    #[arg(skip)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
}

/// Every settings key, as the file and the environment name them.
fn setting_keys() -> Vec<String> {
    match Value::serialize(Config::default()) {
        Ok(Value::Dict(_, dict)) => dict.into_keys().collect(),
        // Config is a struct of plain values; it always serializes to a dictionary.
        _ => Vec::new(),
    }
}

/// `IBEX_<KEY>` for each settings key, and nothing else: `IBEX_LOG`, `IBEX_CONFIG` and the
/// scripts' own `IBEX_*` variables share the prefix without being settings.
fn environment() -> Env {
    let keys = setting_keys();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    Env::prefixed("IBEX_").only(&keys)
}

impl Config {
    /// The layers, lowest first: defaults, file, environment, flags.
    fn layered(file: impl Provider, env: impl Provider, flags: &ServeArgs) -> Figment {
        Figment::from(Serialized::defaults(Config::default()))
            .merge(file)
            .merge(env)
            .merge(Serialized::globals(flags))
    }

    /// Resolves the layers into settings, reads the API key file if one is named, and checks the
    /// result. `log_format` is a global flag of the binary.
    pub fn load(mut args: ServeArgs, log_format: Option<LogFormat>) -> anyhow::Result<Self> {
        args.log_format = log_format;
        let file = match &args.config {
            Some(path) => {
                if !path.is_file() {
                    bail!("config file {} does not exist", path.display());
                }
                Toml::file_exact(path)
            }
            None => Toml::string(""),
        };
        let mut config: Config = Self::layered(file, environment(), &args)
            .extract()
            .context("reading the settings")?;
        config.read_api_key_file()?;
        config.validate()?;
        Ok(config)
    }

    fn read_api_key_file(&mut self) -> anyhow::Result<()> {
        let (None, Some(path)) = (&self.upstream_api_key, &self.upstream_api_key_file) else {
            return Ok(());
        };
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading upstream_api_key_file {}", path.display()))?;
        let key = text.lines().next().unwrap_or("").trim().to_string();
        if key.is_empty() {
            bail!("setting upstream_api_key_file: {} is empty", path.display());
        }
        self.upstream_api_key = Some(Secret(key));
        Ok(())
    }

    /// Refuses settings that cannot work, naming the setting.
    pub fn validate(&self) -> anyhow::Result<()> {
        let engine_max = ibex_engine::embed::MAX_BATCH;
        let positive = [
            ("embed_workers", self.embed_workers),
            ("embed_threads", self.embed_threads),
            ("max_inflight", self.max_inflight),
            ("context_slots_per_core", self.context_slots_per_core),
            ("max_batch", self.max_batch),
            ("db_max_connections", self.db_max_connections as usize),
            ("max_text_chars", self.max_text_chars),
            ("max_context_chars", self.max_context_chars),
            ("auth_failure_burst", self.auth_failure_burst),
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
        if !(self.embed_rate_per_second.is_finite() && self.embed_rate_per_second > 0.0) {
            bail!(
                "setting embed_rate_per_second must be a positive number, got {}",
                self.embed_rate_per_second
            );
        }
        if !(self.auth_failures_per_minute.is_finite() && self.auth_failures_per_minute > 0.0) {
            bail!(
                "setting auth_failures_per_minute must be a positive number, got {}",
                self.auth_failures_per_minute
            );
        }
        if let Some(url) = &self.s3_endpoint {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bail!("setting s3_endpoint must be an http:// or https:// URL, got {url:?}");
            }
            if self.s3_access_key_id.is_none() || self.s3_secret_access_key.is_none() {
                bail!("setting s3_endpoint needs s3_access_key_id and s3_secret_access_key");
            }
        }
        if self.archive_batch == 0 || self.archive_max_attempts == 0 || self.archive_max_bytes == 0 {
            bail!("settings archive_batch, archive_max_attempts and archive_max_bytes must be at least 1");
        }
        if self.usage_rollup_interval.is_zero() {
            bail!("setting usage_rollup_interval_seconds must be at least 1 (turn the rollup off with usage_rollup = false)");
        }
        if let Some(url) = &self.auth_service_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bail!("setting auth_service_url must be an http:// or https:// URL, got {url:?}");
            }
        }
        if self.embed_rate_burst < self.max_batch {
            bail!(
                "setting embed_rate_burst is {}; it must be at least max_batch ({}), or the largest batch \
                 could never pass",
                self.embed_rate_burst,
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
        if self.hot_cache_key_ttl <= self.hot_cache_rebuild_interval {
            bail!(
                "setting hot_cache_key_ttl_seconds ({}) must exceed hot_cache_rebuild_interval_seconds ({}): \
                 live agents' keys would expire between rebuilds",
                self.hot_cache_key_ttl.as_secs(),
                self.hot_cache_rebuild_interval.as_secs()
            );
        }
        if !(1..=200).contains(&self.cold_k) {
            bail!(
                "setting cold_k must be between 1 and 200 (ibex_core.search's limit), got {}",
                self.cold_k
            );
        }
        if !(1..=200).contains(&self.cold_k_max) {
            bail!(
                "setting cold_k_max must be between 1 and 200 (ibex_core.search's limit), got {}",
                self.cold_k_max
            );
        }
        if self.cold_tokens_per_memory == 0 {
            bail!("setting cold_tokens_per_memory must be at least 1");
        }
        for (name, value) in [
            ("memory_share", self.memory_share),
            ("small_talk_relevance", self.small_talk_relevance),
            ("min_relevance", self.min_relevance),
            ("relative_relevance", self.relative_relevance),
            ("near_copy_similarity", self.near_copy_similarity),
        ] {
            if !(0.0..=1.0).contains(&value) {
                bail!("setting {name} must be between 0 and 1, got {value}");
            }
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

// figment's error (and Jail's closures, which return it) is large; it is only ever a test failure.
#[cfg(test)]
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    fn from_file(text: &str) -> Result<Config, figment::Error> {
        Config::layered(Toml::string(text), Toml::string(""), &ServeArgs::default()).extract()
    }

    #[test]
    fn defaults_apply_when_nothing_is_given() {
        let config = from_file("").unwrap();
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
    fn flags_win_over_the_environment_the_environment_over_the_file() {
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_file(
                "ibex.toml",
                "max_inflight = 9\nmax_batch = 100\nembed_threads = 3\nlog_format = \"json\"\ncache_ttl_seconds = 60\n",
            )?;
            jail.set_env("IBEX_MAX_BATCH", "200");
            jail.set_env("IBEX_HTTP_ADDR", "127.0.0.1:9000");
            jail.set_env("IBEX_CONTEXT_DEADLINE_MS", "75");
            // Shares the prefix, is no setting: ignored rather than refused.
            jail.set_env("IBEX_TEST_PG_PORT", "54349");
            let args = ServeArgs {
                config: Some("ibex.toml".into()),
                http_addr: Some("127.0.0.1:9100".parse().unwrap()),
                ..ServeArgs::default()
            };
            let config = Config::load(args, None).map_err(|e| e.to_string())?;
            assert_eq!(config.http_addr.to_string(), "127.0.0.1:9100");
            assert_eq!(config.max_batch, 200);
            assert_eq!(config.max_inflight, 9);
            assert_eq!(config.embed_threads, 3);
            assert_eq!(config.log_format, LogFormat::Json);
            assert_eq!(config.cache_ttl, Duration::from_secs(60));
            assert_eq!(config.context_deadline, Duration::from_millis(75));
            let config = Config::load(
                ServeArgs {
                    config: Some("ibex.toml".into()),
                    ..ServeArgs::default()
                },
                Some(LogFormat::Text),
            )
            .map_err(|e| e.to_string())?;
            assert_eq!(config.log_format, LogFormat::Text);
            assert_eq!(config.http_addr.to_string(), "127.0.0.1:9000");
            Ok(())
        });
    }

    #[test]
    fn the_api_key_file_is_read_when_no_key_is_given() {
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            jail.create_file("key", "sk-from-file\nignored\n")?;
            jail.set_env("IBEX_UPSTREAM_API_KEY_FILE", "key");
            let config = Config::load(ServeArgs::default(), None).map_err(|e| e.to_string())?;
            assert_eq!(config.upstream_api_key, Some(Secret("sk-from-file".into())));
            assert_eq!(format!("{:?}", config.upstream_api_key), "Some(Secret(..))");
            Ok(())
        });
    }

    #[test]
    fn selection_settings_are_bounded() {
        type Break = fn(&mut Config);
        let bad: [(&str, Break); 6] = [
            ("min_relevance", |c| c.min_relevance = 1.5),
            ("relative_relevance", |c| c.relative_relevance = -0.1),
            ("small_talk_relevance", |c| c.small_talk_relevance = f64::NAN),
            ("near_copy_similarity", |c| c.near_copy_similarity = 2.0),
            ("cold_k_max", |c| c.cold_k_max = 201),
            ("cold_tokens_per_memory", |c| c.cold_tokens_per_memory = 0),
        ];
        for (name, set) in bad {
            let mut config = Config::default();
            set(&mut config);
            assert!(config.validate().unwrap_err().to_string().contains(name), "{name}");
        }
        // A fixed pool larger than cold_k_max is allowed: it wins (selection::cold_pool_size).
        let fixed = Config {
            cold_k: 120,
            ..Config::default()
        };
        assert!(fixed.validate().is_ok());
    }

    #[test]
    fn unknown_file_keys_and_bad_values_are_refused() {
        let error = from_file("max_inflite = 3").unwrap_err().to_string();
        assert!(error.contains("max_inflite"), "{error}");
        let error = from_file("max_inflight = \"many\"").unwrap_err().to_string();
        assert!(error.contains("max_inflight"), "{error}");
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
        let config = Config {
            embed_rate_burst: 10,
            ..Config::default()
        };
        let error = config.validate().unwrap_err().to_string();
        assert!(
            error.contains("embed_rate_burst") && error.contains("max_batch"),
            "{error}"
        );
        let config = Config {
            embed_rate_per_second: 0.0,
            ..Config::default()
        };
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("embed_rate_per_second"));
        let config = Config {
            max_context_chars: 0,
            ..Config::default()
        };
        assert!(config.validate().unwrap_err().to_string().contains("max_context_chars"));
    }

    #[test]
    fn every_setting_has_a_key_with_its_unit() {
        let keys = setting_keys();
        for key in [
            "http_addr",
            "context_deadline_ms",
            "cache_ttl_seconds",
            "upstream_api_key_file",
        ] {
            assert!(keys.iter().any(|k| k == key), "{key} in {keys:?}");
        }
        assert!(!keys.iter().any(|k| k == "context_deadline" || k == "config"));
    }
}
