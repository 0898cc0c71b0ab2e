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
}

impl Default for Config {
    fn default() -> Self {
        Self {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8780)),
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 8781)),
            database_url: None,
            db_max_connections: 16,
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
        let config = Self::merge(args, log_format, file);
        config.validate()?;
        Ok(config)
    }

    fn merge(args: ServeArgs, log_format: Option<LogFormat>, file: FileConfig) -> Self {
        let d = Self::default();
        let secs = Duration::from_secs;
        Self {
            http_addr: args.http_addr.or(file.http_addr).unwrap_or(d.http_addr),
            grpc_addr: args.grpc_addr.or(file.grpc_addr).unwrap_or(d.grpc_addr),
            database_url: args.database_url.or(file.database_url).or(d.database_url),
            db_max_connections: args
                .db_max_connections
                .or(file.db_max_connections)
                .unwrap_or(d.db_max_connections),
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
