//! IBEX's pure core, with no Postgres in it: the extension (`ibex_pg`) and the sidecar (`ibex`)
//! are thin adapters over these modules, so both compute exactly the same embeddings,
//! redactions, hashes, scores and packings. The one piece of I/O is the blocking
//! OpenAI-compatible client of `extract::openai`, used by the extraction workers.

pub mod archive;
pub mod category;
pub mod content;
pub mod context;
pub mod embed;
pub mod extract;
pub mod knapsack;
pub mod message;
pub mod models;
pub mod pii;
pub mod relevance;
pub mod score;
pub mod selection;
pub mod tokens;
pub mod usage;

pub use embed::{EmbedError, Embedder, EmbedderConfig, EMBEDDING_DIM};
pub use message::{Message, Role};
