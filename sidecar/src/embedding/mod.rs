//! The embedding service: a pool of model instances, a Redis cache in front, and the core that
//! admits requests and ties both together. Free of HTTP and gRPC types.

pub mod cache;
pub mod core;
mod error;
pub mod pool;

pub use self::core::{CoreSettings, EmbedRequest, EmbeddingCore, Embeddings, Readiness};
pub use cache::{CacheSettings, EmbeddingCache};
pub use error::EmbeddingError;
pub use pool::{Lane, ModelPool, PoolSettings};
