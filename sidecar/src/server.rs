//! `ibex serve`: wiring and lifecycle. Both listeners are bound first (so probes answer at once),
//! the model loads in the background, readiness flips after warm-up, and a shutdown stops
//! accepting, lets in-flight requests finish, then returns.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use axum::serve::ListenerExt;
use ibex_engine::EmbedderConfig;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::idempotency::IdempotencyStore;
use crate::archive::worker::{ArchiveWorker, WorkerSettings};
use crate::archive::{ArchiveStore, Archives};
use crate::auth::client::AuthClient;
use crate::auth::failures::FailedAttempts;
use crate::auth::{revocation, Authenticator, Backend, TokenValidator};
use crate::config::Config;
use crate::context::{ContextEngine, EngineSettings};
use crate::embedding::{CacheSettings, CoreSettings, EmbeddingCache, EmbeddingCore, ModelPool, PoolSettings};
use crate::grpc::health::HealthStatus;
use crate::hotcache::{ConsumerSettings, HotCacheConsumer, HotStore};
use crate::metrics::Metrics;
use crate::ratelimit::{RateLimiter, RateSettings};
use crate::state::AppState;
use crate::usage_rollup::UsageRollup;
use crate::{db, grpc, http};

/// A started server. Dropping it does not stop it; call [`RunningServer::shutdown`] and then
/// [`RunningServer::wait`].
pub struct RunningServer {
    pub http_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    shutdown: CancellationToken,
    /// Set when the server cannot go on (the model failed to load); `wait` reports it.
    fatal: Arc<OnceLock<String>>,
    http: JoinHandle<std::io::Result<()>>,
    grpc: JoinHandle<Result<(), tonic::transport::Error>>,
    /// The hot cache consumer, when this process runs one; it finishes its batch on shutdown.
    consumer: Option<JoinHandle<()>>,
    /// The archive worker, when this process runs one; it finishes its batch on shutdown.
    archive_worker: Option<JoinHandle<()>>,
    /// The usage rollup, when this process runs one; a run in flight ends with its transaction.
    usage_rollup: Option<JoinHandle<()>>,
}

impl RunningServer {
    /// A handle that starts the graceful shutdown when cancelled (it can be cloned and kept).
    pub fn shutdown_handle(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops accepting connections; requests in flight run to completion.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }

    /// Waits until both servers have stopped.
    pub async fn wait(self) -> anyhow::Result<()> {
        let (http, grpc) = tokio::join!(self.http, self.grpc);
        http.context("HTTP server task")?.context("HTTP server")?;
        grpc.context("gRPC server task")?.context("gRPC server")?;
        if let Some(consumer) = self.consumer {
            consumer.await.context("hot cache consumer task")?;
        }
        if let Some(worker) = self.archive_worker {
            worker.await.context("archive worker task")?;
        }
        if let Some(rollup) = self.usage_rollup {
            rollup.await.context("usage rollup task")?;
        }
        match self.fatal.get() {
            Some(reason) => Err(anyhow!("{reason}")),
            None => Ok(()),
        }
    }
}

/// An address this host can connect to: a wildcard listener (0.0.0.0, ::) is reached on loopback.
fn loopback(addr: SocketAddr) -> SocketAddr {
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    addr
}

async fn bind(addr: SocketAddr, setting: &str) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (setting {setting})"))
}

/// Binds both listeners, starts serving, and starts loading the model in the background.
/// Returns as soon as the listeners are up, with the addresses actually bound.
pub async fn start(config: Config) -> anyhow::Result<RunningServer> {
    config.validate()?;
    let http_listener = bind(config.http_addr, "http_addr").await?;
    let grpc_listener = bind(config.grpc_addr, "grpc_addr").await?;
    let http_addr = http_listener.local_addr()?;
    let grpc_addr = grpc_listener.local_addr()?;

    let metrics = Arc::new(Metrics::new().context("registering metrics")?);
    let cache = EmbeddingCache::new(
        CacheSettings {
            url: config.redis_url.clone(),
            ttl: config.cache_ttl,
            timeout: config.redis_timeout,
        },
        Arc::clone(&metrics),
    )
    .context("setting redis_url")?;
    if !cache.is_enabled() {
        tracing::warn!("no redis_url configured: the embedding cache is off and every text runs inference");
    }
    let db = match &config.database_url {
        Some(url) => Some(
            db::connect_lazy_warm(url, config.db_max_connections, config.db_warm_connections)
                .context("setting database_url")?,
        ),
        None => None,
    };
    // The hot path's reads: a replica's pool when one is configured, else the primary's.
    let reads = match &config.read_database_url {
        Some(url) => Some(
            db::connect_lazy_warm(url, config.db_max_connections, config.db_warm_connections)
                .context("setting read_database_url")?,
        ),
        None => db.clone(),
    };
    let core = Arc::new(EmbeddingCore::new(
        CoreSettings {
            max_inflight: config.max_inflight,
            max_batch: config.max_batch,
            max_text_chars: config.max_text_chars,
        },
        cache,
        Arc::clone(&metrics),
    ));
    let hot = Arc::new(HotStore::new(config.redis_url.as_deref(), config.redis_timeout).context("setting redis_url")?);
    let context = Arc::new(ContextEngine::new(
        db.clone(),
        reads.clone(),
        Arc::clone(&hot),
        Arc::clone(&core),
        EngineSettings::from_config(&config),
        Arc::clone(&metrics),
    ));
    let validator = Arc::new(TokenValidator::new(
        db.clone(),
        FailedAttempts::new(RateSettings {
            per_second: config.auth_failures_per_minute / 60.0,
            burst: config.auth_failure_burst,
        }),
    ));
    let auth = Arc::new(Authenticator::new(
        Backend::InProcess(Arc::clone(&validator)),
        config.auth_cache_ttl,
    ));
    // The REST API asks the AuthService over gRPC: this process's own listener unless another
    // is configured.
    let auth_url = match &config.auth_service_url {
        Some(url) => url.clone(),
        None => format!("http://{}", loopback(grpc_addr)),
    };
    let api_auth = Arc::new(Authenticator::new(
        Backend::Grpc(AuthClient::new(&auth_url).context("setting auth_service_url")?),
        config.api_auth_cache_ttl,
    ));
    let idempotency = match &config.redis_url {
        Some(url) => Some(Arc::new(
            IdempotencyStore::new(url, config.redis_timeout, config.idempotency_ttl).context("setting redis_url")?,
        )),
        None => None,
    };
    let embed_limit = Arc::new(RateLimiter::new(RateSettings {
        per_second: config.embed_rate_per_second,
        burst: config.embed_rate_burst,
    }));
    if let Some(url) = &config.redis_url {
        tokio::spawn(check_redis_memory(url.clone(), config.redis_timeout));
    }
    let upstream = reqwest::Client::builder()
        .connect_timeout(config.upstream_timeout.min(Duration::from_secs(10)))
        .build()
        .context("building the upstream HTTP client")?;
    let archives = match (ArchiveStore::from_config(&config)?, &db) {
        (Some(store), Some(pool)) => Some(Arc::new(Archives::new(
            store,
            pool.clone(),
            Arc::clone(&metrics),
            config.archive_max_bytes,
        ))),
        (Some(_), None) => {
            tracing::warn!("s3_endpoint without database_url: session archives are off");
            None
        }
        _ => None,
    };
    let config = Arc::new(config);
    let state = AppState {
        config: Arc::clone(&config),
        core: Arc::clone(&core),
        metrics: Arc::clone(&metrics),
        db: db.clone(),
        auth: Arc::clone(&auth),
        api_auth: Arc::clone(&api_auth),
        validator,
        idempotency,
        embed_limit,
        context,
        upstream,
        archives: archives.clone(),
    };

    if let Some(pool) = &db {
        let (pool, warm) = (pool.clone(), config.db_warm_connections);
        tokio::spawn(async move { db::warm_up(&pool, warm).await });
    }
    if let (Some(pool), Some(_)) = (&reads, &config.read_database_url) {
        let (pool, warm) = (pool.clone(), config.db_warm_connections);
        tokio::spawn(async move { db::warm_up(&pool, warm).await });
    }
    let shutdown = CancellationToken::new();
    if let Some(pool) = &db {
        tokio::spawn(revocation::run(pool.clone(), vec![auth, api_auth], shutdown.clone()));
    }
    let consumer = match (
        &db,
        &config.database_url,
        config.redis_url.is_some(),
        config.hot_cache_consumer,
    ) {
        (Some(pool), Some(url), true, true) => {
            let consumer = HotCacheConsumer::new(
                pool.clone(),
                Arc::clone(&hot),
                ConsumerSettings {
                    database_url: url.clone(),
                    hot_cache_size: config.hot_cache_size,
                    poll: config.hot_cache_poll,
                    lease: config.hot_cache_lease,
                    batch: config.hot_cache_batch,
                    rebuild_interval: config.hot_cache_rebuild_interval,
                    key_ttl: config.hot_cache_key_ttl,
                },
                Arc::clone(&metrics),
            );
            Some(tokio::spawn(consumer.run(shutdown.clone())))
        }
        (Some(_), _, false, true) => {
            tracing::warn!("no redis_url: no hot cache; context assembly reads hot sets from Postgres");
            None
        }
        _ => None,
    };
    let archive_worker = match (&archives, &config.database_url, config.archive_worker) {
        (Some(archives), Some(url), true) => {
            let worker = ArchiveWorker::new(
                Arc::clone(archives),
                WorkerSettings {
                    database_url: url.clone(),
                    poll: config.archive_poll,
                    lease: config.archive_lease,
                    batch: config.archive_batch,
                    max_attempts: config.archive_max_attempts,
                    retention: config.archive_retention,
                },
            );
            Some(tokio::spawn(worker.run(shutdown.clone())))
        }
        _ => {
            if config.database_url.is_some() && config.s3_endpoint.is_none() {
                tracing::warn!("no s3_endpoint: completed sessions are not archived (they stay queued)");
            }
            None
        }
    };
    let usage_rollup = match (&db, config.usage_rollup) {
        (Some(pool), true) => {
            let rollup = UsageRollup::new(pool.clone(), config.usage_rollup_interval, config.usage_rollup_grace);
            Some(tokio::spawn(rollup.run(shutdown.clone())))
        }
        _ => None,
    };
    let fatal = Arc::new(OnceLock::new());
    let (health, health_service) = HealthStatus::new().await;
    let grpc_routes = grpc::server::services(&state, health_service);
    let app = http::router(state);

    let http = tokio::spawn({
        let token = shutdown.clone();
        async move {
            // TCP_NODELAY: streamed chunks (the proxy's SSE) go out as they come, not after the
            // peer's delayed ACK.
            let listener = http_listener.tap_io(|tcp| {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!(error = %e, "cannot set TCP_NODELAY");
                }
            });
            let app = app.into_make_service_with_connect_info::<SocketAddr>();
            let result = axum::serve(listener, app)
                .with_graceful_shutdown(token.clone().cancelled_owned())
                .await;
            // A server that stops on its own takes the other one down with it.
            token.cancel();
            result
        }
    });
    let grpc = tokio::spawn({
        let token = shutdown.clone();
        async move {
            let result = grpc::server::serve(grpc_listener, grpc_routes, token.clone().cancelled_owned()).await;
            token.cancel();
            result
        }
    });
    tokio::spawn({
        let (token, health) = (shutdown.clone(), health.clone());
        async move {
            token.cancelled().await;
            tracing::info!("shutting down: no new connections; finishing requests in flight");
            health.set_not_serving().await;
        }
    });
    spawn_model_loader(&config, core, health, shutdown.clone(), Arc::clone(&fatal));

    tracing::info!(
        http = %http_addr,
        grpc = %grpc_addr,
        embed_workers = config.embed_workers,
        context_embed_workers = config.context_embed_workers,
        embed_threads = config.embed_threads,
        max_inflight = config.max_inflight,
        cache = config.redis_url.is_some(),
        database = config.database_url.is_some(),
        hot_cache_consumer = consumer.is_some(),
        archive_worker = archive_worker.is_some(),
        usage_rollup = usage_rollup.is_some(),
        upstream = config.upstream_base_url.as_deref().unwrap_or("none"),
        context_deadline_ms = config.context_deadline.as_millis() as u64,
        "listening; loading the model"
    );
    Ok(RunningServer {
        http_addr,
        grpc_addr,
        shutdown,
        fatal,
        http,
        grpc,
        consumer,
        archive_worker,
        usage_rollup,
    })
}

/// Loads and warms up the model pool on a blocking thread, then marks the core ready and the
/// gRPC health SERVING. A load failure is fatal: the process shuts down and says why, rather
/// than staying up forever not ready.
fn spawn_model_loader(
    config: &Config,
    core: Arc<EmbeddingCore>,
    health: HealthStatus,
    shutdown: CancellationToken,
    fatal: Arc<OnceLock<String>>,
) {
    let settings = PoolSettings {
        embedder: EmbedderConfig::new(&config.model_dir, &config.ort_library)
            .with_threads(config.embed_threads)
            .with_setting_names(
                "model_dir (--model-dir, IBEX_MODEL_DIR)",
                "ort_library (--ort-library, IBEX_ORT_LIBRARY)",
            ),
        workers: config.embed_workers,
        reserved: config.context_embed_workers,
    };
    tokio::spawn(async move {
        let started = Instant::now();
        let loaded = tokio::task::spawn_blocking(move || ModelPool::load(&settings)).await;
        let failure = match loaded {
            Ok(Ok(pool)) => {
                tracing::info!(
                    model = pool.model_id(),
                    embed_workers = pool.size(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "model loaded and warmed up; ready"
                );
                core.install(pool);
                if !shutdown.is_cancelled() {
                    health.set_serving().await;
                }
                return;
            }
            Ok(Err(e)) => format!("loading the embedding model: {e}"),
            Err(e) => format!("the model loader stopped: {e}"),
        };
        tracing::error!(error = %failure, "cannot serve embeddings; shutting down");
        core.mark_failed(failure.clone());
        let _ = fatal.set(failure);
        shutdown.cancel();
    });
}

/// Warns when Redis may grow without bound. The embedding cache writes an entry per new text and
/// org; without `maxmemory` and an evicting policy a flood of distinct texts fills the host's
/// memory (or, with `noeviction`, makes every hot cache write fail). The stack's Redis runs with
/// `maxmemory` and `allkeys-lru` (scripts/stack.sh). A Redis that refuses CONFIG (managed
/// services often do) is only noted at debug level.
async fn check_redis_memory(url: String, timeout: Duration) {
    let check = async {
        let client = redis::Client::open(url)?;
        let mut connection = client.get_multiplexed_async_connection().await?;
        let (_, maxmemory): (String, u64) = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory")
            .query_async(&mut connection)
            .await?;
        let (_, policy): (String, String) = redis::cmd("CONFIG")
            .arg("GET")
            .arg("maxmemory-policy")
            .query_async(&mut connection)
            .await?;
        Ok::<_, redis::RedisError>((maxmemory, policy))
    };
    match tokio::time::timeout(timeout.max(Duration::from_secs(2)), check).await {
        Ok(Ok((0, policy))) => tracing::warn!(
            maxmemory_policy = %policy,
            "Redis has no maxmemory: the embedding cache can grow without bound; \
             set maxmemory and maxmemory-policy allkeys-lru"
        ),
        Ok(Ok((maxmemory, policy))) if policy == "noeviction" || policy.starts_with("volatile") => tracing::warn!(
            maxmemory,
            maxmemory_policy = %policy,
            "Redis evicts no keys without a TTL under this policy (hot cache keys have none): \
             when it is full, writes fail; use allkeys-lru"
        ),
        Ok(Ok((maxmemory, policy))) => tracing::info!(maxmemory, maxmemory_policy = %policy, "Redis memory is bounded"),
        Ok(Err(e)) => tracing::debug!(error = %e, "cannot read Redis's maxmemory settings"),
        Err(_) => tracing::debug!("no answer from Redis to CONFIG GET maxmemory"),
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    let mut terminate = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(stream) => stream,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the server");
            let _ = interrupt.await;
            return;
        }
    };
    tokio::select! {
        _ = interrupt => tracing::info!("SIGINT received"),
        _ = terminate.recv() => tracing::info!("SIGTERM received"),
    }
}

/// `ibex serve`: runs until SIGINT/SIGTERM (or a fatal error), then shuts down gracefully within
/// `shutdown_grace`.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let grace = config.shutdown_grace;
    let server = start(config).await?;
    let token = server.shutdown_handle();
    tokio::select! {
        _ = shutdown_signal() => {}
        _ = token.cancelled() => {}
    }
    server.shutdown();
    match tokio::time::timeout(grace, server.wait()).await {
        Ok(result) => {
            if result.is_ok() {
                tracing::info!("stopped");
            }
            result
        }
        Err(_) => {
            tracing::warn!(
                grace_seconds = grace.as_secs(),
                "requests still in flight after the grace period; exiting"
            );
            Ok(())
        }
    }
}
