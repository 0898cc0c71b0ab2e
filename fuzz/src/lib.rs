//! The fuzz targets' bodies. Each takes arbitrary bytes, feeds them to one entry point that
//! reads untrusted input, and checks that entry point's promises by panicking when one breaks.
//!
//! libFuzzer drives them (`make fuzz`, the cargo-fuzz project in `fuzz/libfuzzer/`), and
//! `tests/corpus.rs` replays every input kept in `fuzz/corpus/<target>/` in `make test`, so an
//! input that once broke a promise stays a regression test.

mod input;
mod targets;

pub use targets::{chat_request_json, content, context_request_proto, extraction_json, knapsack, pii, tokens};

/// A target's body: arbitrary bytes in, a panic when a promise breaks.
pub type Target = fn(&[u8]);

/// Every target by name: the names of the corpus directories and of the libFuzzer binaries.
pub const TARGETS: &[(&str, Target)] = &[
    ("pii", pii),
    ("tokens", tokens),
    ("extraction_json", extraction_json),
    ("knapsack", knapsack),
    ("content", content),
    ("context_request_proto", context_request_proto),
    ("chat_request_json", chat_request_json),
];
