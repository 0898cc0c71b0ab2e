//! The IBEX sidecar: what a database should not serve. This crate is a set of thin adapters:
//! domain logic lives in `ibex_engine` and in the database (`ibex_pg` + sql/api).

pub mod admin;
pub mod api;
pub mod archive;
pub mod auth;
pub mod cli;
pub mod config;
pub mod context;
pub mod db;
pub mod embedding;
pub mod error;
pub mod grpc;
pub mod hotcache;
pub mod http;
pub mod mcp;
pub mod metrics;
pub mod ratelimit;
pub mod server;
pub mod state;
pub mod usage_rollup;

pub use config::{Config, LogFormat};
pub use server::{start, RunningServer};
