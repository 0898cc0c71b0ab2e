//! What every handler (HTTP now, gRPC later) shares. Cheap to clone.

use std::sync::Arc;

use sqlx::PgPool;

use crate::config::Config;
use crate::embedding::EmbeddingCore;
use crate::metrics::Metrics;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub core: Arc<EmbeddingCore>,
    pub metrics: Arc<Metrics>,
    /// Application-role pool, connecting lazily; `None` when no `database_url` is configured.
    /// Nothing in the embedding API uses it, and readiness does not depend on it.
    pub db: Option<PgPool>,
}
