//! What every handler (HTTP and gRPC) shares. Cheap to clone.

use std::sync::Arc;

use sqlx::PgPool;

use crate::auth::{Authenticator, TokenValidator};
use crate::config::Config;
use crate::context::ContextEngine;
use crate::embedding::EmbeddingCore;
use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub core: Arc<EmbeddingCore>,
    pub metrics: Arc<Metrics>,
    /// Application-role pool, connecting lazily; `None` when no `database_url` is configured.
    /// Nothing in the embedding API uses it, and readiness does not depend on it.
    pub db: Option<PgPool>,
    /// Token checks of the hot path (AssembleContext, the proxy, the embedding API): the
    /// validator in process.
    pub auth: Arc<Authenticator>,
    /// Token checks of the REST management API: the AuthService over gRPC.
    pub api_auth: Arc<Authenticator>,
    /// The one token validator, served as the gRPC AuthService.
    pub validator: Arc<TokenValidator>,
    /// Idempotency-Key replays of the REST API (Redis); `None` without redis_url.
    pub idempotency: Option<Arc<crate::api::idempotency::IdempotencyStore>>,
    /// The per-token rate limit of the embedding endpoints.
    pub embed_limit: Arc<RateLimiter>,
    /// Context assembly, shared by gRPC AssembleContext and the chat completions proxy.
    pub context: Arc<ContextEngine>,
    /// The proxy's client for the upstream (connection pooling across requests).
    pub upstream: reqwest::Client,
    /// Session archives on S3; `None` without s3_endpoint or database_url.
    pub archives: Option<Arc<crate::archive::Archives>>,
}
