//! Shared pieces of the benchmarks: timing statistics, machine description, report lines.

pub mod report;
pub mod stats;
pub mod texts;
