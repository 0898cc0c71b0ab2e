//! Shared pieces of the benchmarks: timing statistics, machine description, report lines.

pub mod context;
pub mod conversations;
pub mod dataset;
pub mod fake_llm;
pub mod learning;
pub mod report;
pub mod retrieval;
pub mod stats;
pub mod texts;
