//! Postgres glue: error reporting, the backend's model, pgvector's type.
pub mod errors;
pub mod model;
pub mod vector;
