//! IBEX's pure core. No Postgres and no network in here: the extension (`ibex_pg`) and the
//! sidecar (`ibex`) are thin adapters over these modules, so both compute exactly the same
//! embeddings, redactions, hashes, scores and packings.

pub mod content;
pub mod embed;
pub mod knapsack;
pub mod models;
pub mod pii;
pub mod score;
pub mod tokens;

pub use embed::{EmbedError, Embedder, EmbedderConfig, EMBEDDING_DIM};
