//! What every handler (HTTP and gRPC) shares. Cheap to clone.

use std::sync::Arc;

use sqlx::PgPool;

use crate::auth::Authenticator;
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
    pub auth: Arc<Authenticator>,
    /// The per-token rate limit of the embedding endpoints.
    pub embed_limit: Arc<RateLimiter>,
    /// Context assembly, shared by gRPC AssembleContext and the chat completions proxy.
    pub context: Arc<ContextEngine>,
    /// The proxy's client for the upstream (connection pooling across requests).
    pub upstream: reqwest::Client,
}
