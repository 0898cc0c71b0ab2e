//! One function per fuzz target. A panic is a finding: either the entry point crashed on input
//! a client can send, or it broke the promise asserted here.

use ibex_engine::context::{self as engine, AssemblyInput, ContextSettings};
use ibex_engine::extract::parse::{parse_answer, MAX_CONTENT_CHARS, MAX_MEMORIES_PER_ANSWER, MAX_TURNS_PER_MEMORY};
use ibex_engine::knapsack::{self, Item};
use ibex_engine::models::TokenizerKind;
use ibex_engine::{content as content_hash, pii as pii_spans, tokens as token_count};
use ibex_sidecar::api::memories::{CreateMemory, ListMemories};
use ibex_sidecar::context::validate_messages;
use ibex_sidecar::grpc::context::context_request;
use ibex_sidecar::grpc::proto::context::v1::AssembleContextRequest;
use ibex_sidecar::http::proxy::wire::parse_request;
use prost::Message as _;

use crate::input::{text, Bytes};

/// PII detection and redaction: spans in text order, never overlapping, on character
/// boundaries, with character offsets that match the byte offsets; and a redacted text in which
/// detection finds nothing more (what is stored must hold no PII).
pub fn pii(data: &[u8]) {
    let text = text(data);
    let spans = pii_spans::detect(&text);
    let mut end_of_previous = 0;
    for span in &spans {
        assert!(
            span.byte_start >= end_of_previous,
            "spans overlap or are out of order: {spans:?}"
        );
        assert!(
            span.byte_start < span.byte_end && span.byte_end <= text.len(),
            "span out of bounds: {span:?}"
        );
        assert!(text.is_char_boundary(span.byte_start) && text.is_char_boundary(span.byte_end));
        assert_eq!(
            text[..span.byte_start].chars().count(),
            span.start,
            "character offset of {span:?}"
        );
        assert_eq!(
            text[..span.byte_end].chars().count(),
            span.end,
            "character offset of {span:?}"
        );
        end_of_previous = span.byte_end;
    }
    let redaction = pii_spans::redact(&text);
    assert_eq!(redaction.spans.len(), spans.len(), "redact and detect disagree");
    let again = pii_spans::detect(&redaction.text);
    assert!(
        again.is_empty(),
        "redacted text {:?} still holds {again:?}",
        redaction.text
    );
}

/// Token counting with every tokenizer: empty text is 0 tokens, and no text counts more tokens
/// than it has bytes (plus the approximation's 10% headroom).
pub fn tokens(data: &[u8]) {
    let text = text(data);
    for kind in [TokenizerKind::O200k, TokenizerKind::Cl100k, TokenizerKind::Approximate] {
        let count = token_count::count_with(kind, &text).tokens;
        if text.is_empty() {
            assert_eq!(count, 0, "{kind:?} counts tokens in empty text");
        }
        assert!(
            count <= text.len() + text.len() / 10 + 1,
            "{kind:?}: {count} tokens in {} bytes",
            text.len()
        );
    }
}

/// The extraction LLM's answer: whatever the model writes, the kept memories respect the bounds
/// and name only turns of the batch, ascending.
pub fn extraction_json(data: &[u8]) {
    let mut bytes = Bytes::new(data);
    let batch: Vec<i32> = (0..bytes.u8() % 8).map(|_| i32::from(bytes.u8() % 64)).collect();
    let answer = bytes.text();
    let Ok(parsed) = parse_answer(&answer, &batch) else {
        return;
    };
    assert!(parsed.kept.len() <= MAX_MEMORIES_PER_ANSWER);
    for memory in &parsed.kept {
        assert!(!memory.content.trim().is_empty(), "an empty memory was kept");
        assert!(memory.content.chars().count() <= MAX_CONTENT_CHARS);
        assert!(
            (0.0..=1.0).contains(&memory.confidence),
            "confidence {}",
            memory.confidence
        );
        assert!(!memory.turns.is_empty() && memory.turns.len() <= MAX_TURNS_PER_MEMORY);
        assert!(
            memory.turns.windows(2).all(|w| w[0] < w[1]),
            "turns not ascending: {:?}",
            memory.turns
        );
        assert!(
            memory.turns.iter().all(|t| batch.contains(t)),
            "turn outside the batch: {:?}",
            memory.turns
        );
    }
}

/// The knapsack: distinct chosen items within the budget, and the greedy promise: an item left
/// out did not fit in what the better-ranked chosen items left.
pub fn knapsack(data: &[u8]) {
    let mut bytes = Bytes::new(data);
    let budget = bytes.u32() as usize % 100_000;
    let mut items = Vec::new();
    while !bytes.is_empty() && items.len() < 256 {
        items.push(Item {
            score: bytes.f64(),
            tokens: usize::from(bytes.u16()),
        });
    }
    let packing = knapsack::pack(&items, budget);
    let mut seen = vec![false; items.len()];
    let mut used = 0;
    for &i in &packing.chosen {
        assert!(i < items.len() && !seen[i], "index {i} repeated or out of range");
        seen[i] = true;
        used += items[i].tokens;
    }
    assert_eq!(used, packing.tokens_used);
    assert!(used <= budget, "{used} tokens packed into {budget}");
    let mut used_before = 0;
    for i in knapsack::rank_order(&items) {
        if seen[i] {
            used_before += items[i].tokens;
        } else {
            assert!(items[i].tokens > budget - used_before, "item {i} would have fitted");
        }
    }
}

/// Content normalisation (the de-duplication key): normalising twice changes nothing, so a
/// text and its normal form hash the same.
pub fn content(data: &[u8]) {
    let text = text(data);
    let once = content_hash::normalise(&text);
    assert_eq!(
        content_hash::normalise(&once),
        once,
        "normalise is not idempotent on {text:?}"
    );
    assert_eq!(content_hash::content_hash(&text), content_hash::content_hash(&once));
}

/// AssembleContext's protobuf request, decoded and checked the way the gRPC service does, then
/// packed with no memories: the answer keeps messages of the request only and fits the window.
pub fn context_request_proto(data: &[u8]) {
    let Ok(wire) = AssembleContextRequest::decode(data) else {
        return;
    };
    let Ok(request) = context_request(wire) else {
        return;
    };
    if request.controls.validate().is_err() || validate_messages(&request.messages, 100_000).is_err() {
        return;
    }
    let Ok(model) = engine::resolve_model(&request.model) else {
        return;
    };
    let settings = request.controls.apply(ContextSettings::default());
    let max_output_tokens = request.max_output_tokens.map(|n| n as usize);
    let Ok(assembly) = engine::assemble(AssemblyInput {
        model,
        max_output_tokens,
        directives: &[],
        candidates: &[],
        messages: &request.messages,
        settings: &settings,
    }) else {
        return;
    };
    assert!(
        assembly.history.windows(2).all(|w| w[0].0 < w[1].0),
        "history out of order"
    );
    assert!(assembly.history.iter().all(|&(i, _)| i < request.messages.len()));
    let reserve = engine::output_reserve(model, max_output_tokens).expect("accepted above");
    assert!(
        assembly.total_tokens + reserve <= model.context_window as usize,
        "{} tokens + {reserve} reserved exceed the window of {}",
        assembly.total_tokens,
        model.context_window
    );
}

/// JSON bodies: the proxy's chat completions request and the REST memory bodies. A parsed chat
/// request has a model and one message per element of `messages`.
pub fn chat_request_json(data: &[u8]) {
    let _ = serde_json::from_slice::<CreateMemory>(data);
    let _ = serde_json::from_slice::<ListMemories>(data);
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let Ok(request) = parse_request(&body) {
        assert!(!request.model.trim().is_empty());
        assert_eq!(request.messages.len(), body["messages"].as_array().map_or(0, Vec::len));
    }
}
