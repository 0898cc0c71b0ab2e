//! Prometheus metrics of one server instance, exposed at `GET /metrics`.
//!
//! Each server owns its registry (rather than the process-global default) so that two instances
//! in one process, as in the tests, count separately.

use prometheus::{
    Encoder, Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Latency buckets in seconds: embedding requests and context assembly take milliseconds (0.04 is
/// the assembly deadline); the tail goes to seconds for large batches and upstream calls.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
/// Memory tokens per context: 0 (a greeting) up to the default cap of 4,096 and beyond.
const MEMORY_TOKEN_BUCKETS: &[f64] = &[0.0, 100.0, 250.0, 500.0, 1000.0, 1500.0, 2000.0, 3000.0, 4096.0, 8192.0];
/// Memories per context.
const MEMORY_COUNT_BUCKETS: &[f64] = &[0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0];

pub struct Metrics {
    registry: Registry,
    /// By method, route template (never the raw path: bounded label values) and status.
    pub http_requests: IntCounterVec,
    pub http_duration: HistogramVec,
    /// Counted per text, not per request: a batch of 10 with 8 hits adds 8 and 2.
    pub cache_hits: IntCounter,
    pub cache_misses: IntCounter,
    /// Failed cache operations, by `op` (`get`, `set`); the request went on without the cache.
    pub cache_errors: IntCounterVec,
    /// Lookups skipped because the cache failed moments ago (see `embedding::cache`).
    pub cache_bypassed: IntCounter,
    pub inference_duration: Histogram,
    /// Texts per forward pass (misses only; hits never reach the model).
    pub inference_batch_size: Histogram,
    /// Time a request waited for a free model instance.
    pub queue_duration: Histogram,
    /// Embedding requests admitted and not yet finished.
    pub inflight: IntGauge,
    /// Embedding requests answered 429 because `max_inflight` were already admitted.
    pub rejected_overloaded: IntCounter,
    /// Embedding requests answered 429 `rate_limited`: the token was over its rate.
    pub rate_limited: IntCounter,
    /// 1 once the model is loaded and warmed up.
    pub model_ready: IntGauge,
    /// AssembleContext calls (gRPC and proxy) by outcome: ok, degraded, error.
    pub context_requests: IntCounterVec,
    pub context_duration: Histogram,
    /// What each context's memories cost: tokens, count, and where they came from.
    pub context_memory_tokens: Histogram,
    pub context_memories: Histogram,
    pub context_memory_source: IntCounterVec,
    /// Query embeddings asked for by context assembly: exactly one per call with a query.
    pub context_query_embeddings: IntCounter,
    /// Memory ids whose access context assembly recorded, by outcome: queued, recorded,
    /// dropped (queue full), failed.
    pub context_access: IntCounterVec,
    /// Admission to the hot path (`context::admission`), by outcome: admitted (at once),
    /// queued (admitted after a wait), shed (refused with RESOURCE_EXHAUSTED).
    pub context_admission: IntCounterVec,
    /// Calls waiting for admission right now.
    pub context_waiting: IntGauge,
    /// Time an admitted call waited for its slot.
    pub context_queue_wait: Histogram,
    /// Hot cache outbox events by outcome: applied, failed.
    pub hot_cache_events: IntCounterVec,
    /// Agent sets recomputed from Postgres and written to Redis.
    pub hot_cache_refreshes: IntCounter,
    pub hot_cache_rebuilds: IntCounter,
    /// Consumer failures by kind: redis, rebuild.
    pub hot_cache_errors: IntCounterVec,
    /// Proxied chat completions by outcome: ok, upstream_error, upstream_timeout, error.
    pub proxy_requests: IntCounterVec,
    /// Proxied calls forwarded without memories because context assembly shed them.
    pub proxy_context_shed: IntCounter,
    /// Upstream latency (to the last byte) of proxied calls.
    pub proxy_upstream_duration: Histogram,
    /// Turns or usage that could not be recorded after a proxied call.
    pub proxy_record_failures: IntCounter,
    /// Session archives by outcome: archived, failed, discarded (the session went meanwhile).
    pub archive_uploads: IntCounterVec,
    pub archive_bytes: IntCounter,
    /// Time from a session's completion to its archive recorded.
    pub archive_lag: Histogram,
    /// Deletions of archive objects by outcome: confirmed, failed.
    pub archive_deletions: IntCounterVec,
    /// Turn contents cleared after the retention, counted in sessions.
    pub archive_cleared_sessions: IntCounter,
    /// `ibex_ops.archive_status`, refreshed by the archive worker: queued, retrying, archived,
    /// failed, pending_deletions (every org).
    pub archive_status: IntGaugeVec,
    pub archive_archived_bytes: IntGauge,
    pub archive_oldest_pending_seconds: Gauge,
    /// 1 while the archive store answers, 0 while it does not.
    pub archive_store_up: IntGauge,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("ibex".into()), None)?;
        let latency = |name: &str, help: &str| HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec());
        let metrics = Self {
            http_requests: IntCounterVec::new(
                Opts::new("http_requests_total", "HTTP requests by method, route and status"),
                &["method", "route", "status"],
            )?,
            http_duration: HistogramVec::new(
                latency("http_request_duration_seconds", "HTTP request latency"),
                &["method", "route", "status"],
            )?,
            cache_hits: IntCounter::new("embed_cache_hits_total", "Texts answered from the embedding cache")?,
            cache_misses: IntCounter::new("embed_cache_misses_total", "Texts not in the embedding cache")?,
            cache_errors: IntCounterVec::new(
                Opts::new("embed_cache_errors_total", "Failed embedding cache operations"),
                &["op"],
            )?,
            cache_bypassed: IntCounter::new(
                "embed_cache_bypassed_total",
                "Cache lookups skipped while the cache is marked unavailable",
            )?,
            inference_duration: Histogram::with_opts(latency(
                "embed_inference_duration_seconds",
                "Model forward pass latency per batch",
            ))?,
            inference_batch_size: Histogram::with_opts(
                HistogramOpts::new("embed_inference_batch_size", "Texts per forward pass")
                    .buckets(BATCH_BUCKETS.to_vec()),
            )?,
            queue_duration: Histogram::with_opts(latency(
                "embed_queue_duration_seconds",
                "Wait for a free model instance",
            ))?,
            inflight: IntGauge::new("embed_inflight_requests", "Embedding requests in flight")?,
            rejected_overloaded: IntCounter::new(
                "embed_rejected_overloaded_total",
                "Embedding requests refused with 429 because max_inflight were in flight",
            )?,
            rate_limited: IntCounter::new(
                "embed_rate_limited_total",
                "Embedding requests refused with 429 because the token was over its rate",
            )?,
            model_ready: IntGauge::new("model_ready", "1 once the model is loaded and warmed up")?,
            context_requests: IntCounterVec::new(
                Opts::new("context_requests_total", "Context assemblies by outcome"),
                &["outcome"],
            )?,
            context_duration: Histogram::with_opts(latency(
                "context_duration_seconds",
                "Context assembly latency (retrieval, scoring, packing)",
            ))?,
            context_memory_tokens: Histogram::with_opts(
                HistogramOpts::new(
                    "context_memory_tokens",
                    "Tokens of the memories packed into one context",
                )
                .buckets(MEMORY_TOKEN_BUCKETS.to_vec()),
            )?,
            context_memories: Histogram::with_opts(
                HistogramOpts::new("context_memories", "Memories packed into one context")
                    .buckets(MEMORY_COUNT_BUCKETS.to_vec()),
            )?,
            context_memory_source: IntCounterVec::new(
                Opts::new(
                    "context_memory_source_total",
                    "Contexts by where their memories came from: hot, cold, both, none",
                ),
                &["source"],
            )?,
            context_query_embeddings: IntCounter::new(
                "context_query_embeddings_total",
                "Query embeddings asked for by context assembly (one per call with a query)",
            )?,
            context_access: IntCounterVec::new(
                Opts::new(
                    "context_access_total",
                    "Memory accesses recorded for packed memories, by outcome",
                ),
                &["outcome"],
            )?,
            context_admission: IntCounterVec::new(
                Opts::new(
                    "context_admission_total",
                    "Context assembly admission by outcome: admitted, queued, shed",
                ),
                &["outcome"],
            )?,
            context_waiting: IntGauge::new("context_waiting", "Context calls waiting for admission")?,
            context_queue_wait: Histogram::with_opts(latency(
                "context_queue_wait_seconds",
                "Time an admitted context call waited for a slot",
            ))?,
            hot_cache_events: IntCounterVec::new(
                Opts::new("hot_cache_events_total", "Hot cache outbox events by outcome"),
                &["outcome"],
            )?,
            hot_cache_refreshes: IntCounter::new(
                "hot_cache_refreshes_total",
                "Agent hot sets recomputed from Postgres and written to Redis",
            )?,
            hot_cache_rebuilds: IntCounter::new("hot_cache_rebuilds_total", "Full hot cache rebuilds")?,
            hot_cache_errors: IntCounterVec::new(
                Opts::new("hot_cache_errors_total", "Hot cache consumer failures by kind"),
                &["kind"],
            )?,
            proxy_requests: IntCounterVec::new(
                Opts::new("proxy_requests_total", "Proxied chat completions by outcome"),
                &["outcome"],
            )?,
            proxy_context_shed: IntCounter::new(
                "proxy_context_shed_total",
                "Proxied calls forwarded without memories because context assembly was at capacity",
            )?,
            proxy_upstream_duration: Histogram::with_opts(latency(
                "proxy_upstream_duration_seconds",
                "Upstream latency of proxied chat completions",
            ))?,
            proxy_record_failures: IntCounter::new(
                "proxy_record_failures_total",
                "Proxied calls whose turns or usage could not be recorded",
            )?,
            archive_uploads: IntCounterVec::new(
                Opts::new("archive_uploads_total", "Session archives by outcome"),
                &["outcome"],
            )?,
            archive_bytes: IntCounter::new("archive_bytes_total", "Bytes of session archives written")?,
            archive_lag: Histogram::with_opts(
                HistogramOpts::new(
                    "archive_lag_seconds",
                    "Time from a session's completion to its archive recorded",
                )
                .buckets(vec![
                    0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0,
                ]),
            )?,
            archive_deletions: IntCounterVec::new(
                Opts::new("archive_deletions_total", "Deletions of archive objects by outcome"),
                &["outcome"],
            )?,
            archive_cleared_sessions: IntCounter::new(
                "archive_cleared_sessions_total",
                "Sessions whose turn contents were cleared after the archive retention",
            )?,
            archive_status: IntGaugeVec::new(
                Opts::new(
                    "archive_sessions",
                    "Sessions by archive state (ibex_ops.archive_status, every org)",
                ),
                &["state"],
            )?,
            archive_archived_bytes: IntGauge::new("archive_archived_bytes", "Bytes of every recorded archive")?,
            archive_oldest_pending_seconds: Gauge::new(
                "archive_oldest_pending_seconds",
                "Age of the oldest session waiting for its archive",
            )?,
            archive_store_up: IntGauge::new("archive_store_up", "1 while the archive store (S3) answers")?,
            registry,
        };
        metrics.register_all()?;
        Ok(metrics)
    }

    fn register_all(&self) -> Result<(), prometheus::Error> {
        let r = &self.registry;
        r.register(Box::new(self.http_requests.clone()))?;
        r.register(Box::new(self.http_duration.clone()))?;
        r.register(Box::new(self.cache_hits.clone()))?;
        r.register(Box::new(self.cache_misses.clone()))?;
        r.register(Box::new(self.cache_errors.clone()))?;
        r.register(Box::new(self.cache_bypassed.clone()))?;
        r.register(Box::new(self.inference_duration.clone()))?;
        r.register(Box::new(self.inference_batch_size.clone()))?;
        r.register(Box::new(self.queue_duration.clone()))?;
        r.register(Box::new(self.inflight.clone()))?;
        r.register(Box::new(self.rejected_overloaded.clone()))?;
        r.register(Box::new(self.rate_limited.clone()))?;
        r.register(Box::new(self.model_ready.clone()))?;
        r.register(Box::new(self.context_requests.clone()))?;
        r.register(Box::new(self.context_duration.clone()))?;
        r.register(Box::new(self.context_memory_tokens.clone()))?;
        r.register(Box::new(self.context_memories.clone()))?;
        r.register(Box::new(self.context_memory_source.clone()))?;
        r.register(Box::new(self.context_query_embeddings.clone()))?;
        r.register(Box::new(self.context_access.clone()))?;
        r.register(Box::new(self.context_admission.clone()))?;
        r.register(Box::new(self.context_waiting.clone()))?;
        r.register(Box::new(self.context_queue_wait.clone()))?;
        r.register(Box::new(self.hot_cache_events.clone()))?;
        r.register(Box::new(self.hot_cache_refreshes.clone()))?;
        r.register(Box::new(self.hot_cache_rebuilds.clone()))?;
        r.register(Box::new(self.hot_cache_errors.clone()))?;
        r.register(Box::new(self.proxy_requests.clone()))?;
        r.register(Box::new(self.proxy_context_shed.clone()))?;
        r.register(Box::new(self.proxy_upstream_duration.clone()))?;
        r.register(Box::new(self.proxy_record_failures.clone()))?;
        r.register(Box::new(self.archive_uploads.clone()))?;
        r.register(Box::new(self.archive_bytes.clone()))?;
        r.register(Box::new(self.archive_lag.clone()))?;
        r.register(Box::new(self.archive_deletions.clone()))?;
        r.register(Box::new(self.archive_cleared_sessions.clone()))?;
        r.register(Box::new(self.archive_status.clone()))?;
        r.register(Box::new(self.archive_archived_bytes.clone()))?;
        r.register(Box::new(self.archive_oldest_pending_seconds.clone()))?;
        r.register(Box::new(self.archive_store_up.clone()))?;
        Ok(())
    }

    /// The Prometheus text exposition format.
    pub fn render(&self) -> Result<String, prometheus::Error> {
        let mut buffer = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buffer)?;
        String::from_utf8(buffer).map_err(|e| prometheus::Error::Msg(e.to_string()))
    }
}

/// The token caches' lookups (`crate::auth::Authenticator::counters`), in the text format. They
/// are kept as plain atomics by the authenticators (which exist before and apart from a
/// registry, e.g. in tests), so they are rendered here rather than registered.
pub fn render_auth_cache(caches: &[(&str, &crate::auth::CacheCounters)]) -> String {
    use std::fmt::Write as _;
    use std::sync::atomic::Ordering::Relaxed;
    let mut out = String::from(
        "# HELP ibex_auth_cache_lookups_total Token checks answered from the cache (hit) or by the AuthService (miss)\n\
         # TYPE ibex_auth_cache_lookups_total counter\n",
    );
    for (cache, counters) in caches {
        for (outcome, value) in [("hit", &counters.hits), ("miss", &counters.misses)] {
            let _ = writeln!(
                out,
                "ibex_auth_cache_lookups_total{{cache=\"{cache}\",outcome=\"{outcome}\"}} {}",
                value.load(Relaxed)
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_cache_lookups_render_as_counters() {
        let counters = crate::auth::CacheCounters::default();
        counters.hits.fetch_add(3, std::sync::atomic::Ordering::Relaxed);
        let text = render_auth_cache(&[("api", &counters)]);
        assert!(text.contains("# TYPE ibex_auth_cache_lookups_total counter\n"));
        assert!(text.contains("ibex_auth_cache_lookups_total{cache=\"api\",outcome=\"hit\"} 3\n"));
        assert!(text.contains("ibex_auth_cache_lookups_total{cache=\"api\",outcome=\"miss\"} 0\n"));
    }

    #[test]
    fn renders_prefixed_counters() {
        let metrics = Metrics::new().unwrap();
        metrics.cache_hits.inc_by(3);
        metrics
            .http_requests
            .with_label_values(&["POST", "/v1/embed", "200"])
            .inc();
        let text = metrics.render().unwrap();
        assert!(text.contains("ibex_embed_cache_hits_total 3"), "{text}");
        assert!(text.contains(r#"ibex_http_requests_total{method="POST",route="/v1/embed",status="200"} 1"#));
    }
}
