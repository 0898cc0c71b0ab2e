//! The gRPC surface (tonic), served on its own address by the same process as HTTP.

pub mod auth;
pub mod context;
pub mod health;
pub mod proto;
pub mod server;
