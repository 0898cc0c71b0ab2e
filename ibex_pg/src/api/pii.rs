use pgrx::prelude::*;
use pgrx::JsonB;

/// `text` with every email, phone number, SSN, payment card and IPv4 address replaced by a typed
/// placeholder such as `[EMAIL]`.
#[pg_extern(immutable, parallel_safe)]
fn ibex_redact_pii(text: &str) -> String {
    ibex_engine::pii::redact(text).text
}

/// The PII found in `text`: `[{"type": "EMAIL", "start": 12, "end": 32}, ...]`, character offsets
/// (0-based, end exclusive) into the input. The values themselves are not echoed back.
#[pg_extern(immutable, parallel_safe)]
fn ibex_detect_pii(text: &str) -> JsonB {
    let spans = ibex_engine::pii::detect(text);
    JsonB(serde_json::to_value(spans).expect("spans serialise"))
}

/// SHA-256 (hex) of the normalised text: the key of exact de-duplication.
#[pg_extern(immutable, parallel_safe)]
fn ibex_content_hash(text: &str) -> String {
    ibex_engine::content::content_hash(text)
}
