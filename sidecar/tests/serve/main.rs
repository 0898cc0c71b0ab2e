//! `ibex serve` against the test stack (Redis and the application role from IBEX_REDIS_URL and
//! IBEX_DATABASE_URL): servers are started in-process on free ports, one per test.

mod embed_api;
mod health;
mod resilience;
mod support;
