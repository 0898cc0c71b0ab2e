//! The gRPC surface (tonic), served on its own address by the same process as HTTP.

pub mod health;
pub mod server;
