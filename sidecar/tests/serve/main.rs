//! `ibex serve` against the test stack (Redis and the application role from IBEX_REDIS_URL and
//! IBEX_DATABASE_URL): servers are started in-process on free ports, one per test. Every server
//! runs a hot cache consumer; they all share the test Redis (database 0), so whichever claims an
//! outbox event writes where every test looks.

mod cli;
#[path = "../common.rs"]
mod common;
mod context;
mod dashboard;
mod embed_api;
mod fixtures;
mod health;
mod hot_cache;
mod management;
mod mcp;
mod openapi;
mod proxy;
mod resilience;
mod support;
mod upstream;
