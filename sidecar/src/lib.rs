//! The IBEX sidecar: what a database should not serve. This crate is a set of thin adapters:
//! domain logic lives in `ibex_engine` and in the database (`ibex_pg` + sql/migrations).

pub mod db;
pub mod models;
