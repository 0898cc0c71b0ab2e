//! Validation of the extraction LLM's answer.
//!
//! Two kinds of failure, handled differently:
//!
//! - The answer as a whole is not complete, valid JSON of the expected shape (cut off by a token
//!   limit, prose instead of JSON, a string or a number at the top level, no `memories` key).
//!   That is [`ParseError::Malformed`], and the worker retries the call: a second sample usually
//!   comes back fine.
//! - One item is wrong (unknown category, empty content, confidence "0.8" as a string). Retrying
//!   the whole call for that would throw away the good items and may fail again, so the item is
//!   dropped with a reason (for the worker's log) and the rest are kept.
//!
//! Every item names the turns that support it (`"turns": [12, 14]`), checked against the turns of
//! the batch: an item without them, or naming a turn the model was not shown, is dropped (a
//! memory that cannot say where it came from cannot be checked or explained).
//!
//! Accepted shapes: `{"memories": [...]}` (what the prompt asks for: OpenAI's JSON mode only
//! yields objects) or a bare `[...]` (what many other models write anyway), either optionally
//! wrapped in a Markdown code fence.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::{Category, ExtractedMemory};
use crate::content::normalise;

/// Longest accepted memory, in characters. A memory is a sentence; anything near this long is a
/// paragraph the model copied from the conversation, and it would dominate every context budget.
pub const MAX_CONTENT_CHARS: usize = 2000;

/// Most memories kept from one answer. A session that really yields more than this is rare; an
/// answer that claims to is usually a model looping, and the cap bounds the worker's transaction.
pub const MAX_MEMORIES_PER_ANSWER: usize = 50;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not complete JSON of the expected shape. Worth a retry.
    #[error("malformed extraction answer: {0}")]
    Malformed(String),
}

/// An item that was left out, by its position in the answer's array.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DroppedItem {
    pub index: usize,
    pub reason: String,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParsedAnswer {
    /// Valid, distinct memories in answer order, at most [`MAX_MEMORIES_PER_ANSWER`].
    pub kept: Vec<ExtractedMemory>,
    pub dropped: Vec<DroppedItem>,
}

/// Most supporting turns one memory may name.
pub const MAX_TURNS_PER_MEMORY: usize = 32;

/// Parses and validates one answer against the indexes of the turns the model was shown. See the
/// module documentation for what is fatal and what is only dropped.
pub fn parse_answer(text: &str, batch_turns: &[i32]) -> Result<ParsedAnswer, ParseError> {
    let json = strip_code_fence(text.trim())?;
    let value: Value = serde_json::from_str(json).map_err(|e| ParseError::Malformed(format!("invalid JSON: {e}")))?;
    let items = match value {
        Value::Array(items) => items,
        Value::Object(mut object) => match object.remove("memories") {
            Some(Value::Array(items)) => items,
            Some(other) => {
                return Err(ParseError::Malformed(format!(
                    "\"memories\" is {}, expected an array",
                    type_name(&other)
                )))
            }
            None => return Err(ParseError::Malformed("object without a \"memories\" array".into())),
        },
        other => {
            return Err(ParseError::Malformed(format!(
                "top level is {}, expected an object or an array",
                type_name(&other)
            )))
        }
    };

    let mut answer = ParsedAnswer::default();
    // Normalised content -> index of the item that was kept with it.
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (index, item) in items.iter().enumerate() {
        let reason = match validate_item(item, batch_turns) {
            Err(reason) => reason,
            Ok(memory) => {
                let key = normalise(&memory.content);
                if let Some(first) = seen.get(&key) {
                    format!("duplicate of item {first}")
                } else if answer.kept.len() >= MAX_MEMORIES_PER_ANSWER {
                    format!("over the limit of {MAX_MEMORIES_PER_ANSWER} memories per answer")
                } else {
                    seen.insert(key, index);
                    answer.kept.push(memory);
                    continue;
                }
            }
        };
        answer.dropped.push(DroppedItem { index, reason });
    }
    Ok(answer)
}

/// Removes a surrounding Markdown fence (```` ``` ```` or ```` ```json ````). A fence that opens
/// but never closes means the answer was cut off.
fn strip_code_fence(text: &str) -> Result<&str, ParseError> {
    let Some(rest) = text.strip_prefix("```") else {
        return Ok(text);
    };
    // The info string ("json", "JSON", "json5"...) runs up to the first non-alphanumeric
    // character; JSON itself starts with `{` or `[`, so it is never eaten.
    let body = rest.trim_start_matches(|c: char| c.is_ascii_alphanumeric());
    match body.trim_end().strip_suffix("```") {
        Some(inner) => Ok(inner.trim()),
        None => Err(ParseError::Malformed("code fence is not closed".into())),
    }
}

fn validate_item(item: &Value, batch_turns: &[i32]) -> Result<ExtractedMemory, String> {
    let Value::Object(fields) = item else {
        return Err(format!("item is {}, expected an object", type_name(item)));
    };
    let category_text = string_field(fields, "category")?;
    let category =
        Category::parse(category_text).ok_or_else(|| format!("unknown category {:?}", category_text.trim()))?;

    let content = string_field(fields, "content")?.trim();
    if content.is_empty() {
        return Err("\"content\" is empty".into());
    }
    let chars = content.chars().count();
    if chars > MAX_CONTENT_CHARS {
        return Err(format!(
            "\"content\" has {chars} characters, more than {MAX_CONTENT_CHARS}"
        ));
    }

    let confidence = match fields.get("confidence") {
        None => return Err("missing \"confidence\"".into()),
        Some(Value::Number(n)) => n.as_f64().filter(|c| c.is_finite()),
        // "0.8" as a string is dropped rather than coerced: a model that gets the type wrong has
        // probably not thought about the value either.
        Some(other) => return Err(format!("\"confidence\" is {}, expected a number", type_name(other))),
    };
    let confidence = match confidence {
        Some(c) if (0.0..=1.0).contains(&c) => c as f32,
        Some(c) => return Err(format!("\"confidence\" {c} is outside [0, 1]")),
        None => return Err("\"confidence\" is not a finite number".into()),
    };

    let turns = supporting_turns(fields, batch_turns)?;
    Ok(ExtractedMemory {
        category,
        content: content.to_string(),
        confidence,
        turns,
    })
}

/// The item's `"turns"`: integers, each one of the batch's, sorted and distinct.
fn supporting_turns(fields: &Map<String, Value>, batch_turns: &[i32]) -> Result<Vec<i32>, String> {
    let items = match fields.get("turns") {
        None => return Err("missing \"turns\" (the supporting turn numbers)".into()),
        Some(Value::Array(items)) => items,
        Some(other) => return Err(format!("\"turns\" is {}, expected an array", type_name(other))),
    };
    if items.is_empty() {
        return Err("\"turns\" is empty".into());
    }
    if items.len() > MAX_TURNS_PER_MEMORY {
        return Err(format!(
            "\"turns\" names {} turns, more than {MAX_TURNS_PER_MEMORY}",
            items.len()
        ));
    }
    let mut turns = Vec::with_capacity(items.len());
    for item in items {
        let turn = item
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .ok_or_else(|| format!("\"turns\" holds {item}, expected turn numbers"))?;
        if !batch_turns.contains(&turn) {
            return Err(format!("turn {turn} is not one of the conversation's turns"));
        }
        turns.push(turn);
    }
    turns.sort_unstable();
    turns.dedup();
    Ok(turns)
}

fn string_field<'a>(fields: &'a Map<String, Value>, name: &str) -> Result<&'a str, String> {
    match fields.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(format!("\"{name}\" is {}, expected a string", type_name(other))),
        None => Err(format!("missing \"{name}\"")),
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The answer to a batch of turns 1 to 3.
    fn parse_answer(text: &str) -> Result<ParsedAnswer, ParseError> {
        super::parse_answer(text, &[1, 2, 3])
    }

    fn memory(category: Category, content: &str, confidence: f32) -> ExtractedMemory {
        ExtractedMemory {
            category,
            content: content.into(),
            confidence,
            turns: vec![1],
        }
    }

    fn malformed(text: &str) -> String {
        match parse_answer(text) {
            Err(ParseError::Malformed(why)) => why,
            Ok(answer) => panic!("{text:?} parsed as {answer:?}"),
        }
    }

    /// The one dropped reason for an answer holding `item` alone.
    fn dropped_reason(item: Value) -> String {
        let answer = parse_answer(&json!({ "memories": [item] }).to_string()).unwrap();
        assert!(answer.kept.is_empty(), "{answer:?}");
        assert_eq!(answer.dropped.len(), 1);
        assert_eq!(answer.dropped[0].index, 0);
        answer.dropped[0].reason.clone()
    }

    #[test]
    fn valid_object() {
        let answer = parse_answer(
            r#"{"memories": [
                {"category": "procedural", "content": "User wants answers in formal English.", "confidence": 0.9, "turns": [1]},
                {"category": "declarative", "content": "User prefers tea over coffee.", "confidence": 1, "turns": [1]},
                {"category": "episodic", "content": "User has a dentist appointment on Friday.", "confidence": 0, "turns": [1]}
            ]}"#,
        )
        .unwrap();
        assert_eq!(
            answer.kept,
            vec![
                memory(Category::Procedural, "User wants answers in formal English.", 0.9),
                memory(Category::Declarative, "User prefers tea over coffee.", 1.0),
                memory(Category::Episodic, "User has a dentist appointment on Friday.", 0.0),
            ]
        );
        assert!(answer.dropped.is_empty());
    }

    #[test]
    fn empty_list_and_extra_keys_are_fine() {
        assert_eq!(parse_answer(r#"{"memories": []}"#).unwrap(), ParsedAnswer::default());
        assert_eq!(parse_answer("[]").unwrap(), ParsedAnswer::default());
        let answer = parse_answer(
            r#"{"note": "x", "memories": [{"category": "episodic", "content": "c", "confidence": 0.5, "turns": [1], "why": 1}]}"#,
        )
        .unwrap();
        assert_eq!(answer.kept, vec![memory(Category::Episodic, "c", 0.5)]);
    }

    #[test]
    fn bare_array() {
        let answer = parse_answer(
            r#"[{"category": "declarative", "content": "User lives in Berlin.", "confidence": 0.8, "turns": [1]}]"#,
        )
        .unwrap();
        assert_eq!(
            answer.kept,
            vec![memory(Category::Declarative, "User lives in Berlin.", 0.8)]
        );
    }

    #[test]
    fn fenced_block_and_whitespace() {
        let inner = r#"{"memories": [{"category": "declarative", "content": "User lives in Berlin.", "confidence": 0.8, "turns": [1]}]}"#;
        let expected = parse_answer(inner).unwrap();
        for text in [
            format!("```json\n{inner}\n```"),
            format!("\n\n  ```JSON\n{inner}\n```  \n"),
            format!("```\n{inner}\n```"),
            format!("```json {inner} ```"),
            format!("```json\n[{}]\n```", &inner[14..inner.len() - 2]),
            format!("   \t{inner}\n\n"),
        ] {
            assert_eq!(parse_answer(&text).unwrap(), expected, "{text}");
        }
    }

    #[test]
    fn truncated_json_is_malformed() {
        let full = r#"{"memories": [{"category": "declarative", "content": "User lives in Berlin.", "confidence": 0.8, "turns": [1]}]}"#;
        for cut in [1, 10, 40, full.len() - 2, full.len() - 1] {
            malformed(&full[..cut]);
        }
        assert!(malformed("```json\n{\"memories\": []}").contains("fence"));
        assert!(malformed(r#"{"memories": [{"category": "declarative", "content": "User li"#).contains("invalid JSON"));
    }

    #[test]
    fn wrong_shape_is_malformed() {
        assert!(malformed(r#"{"items": []}"#).contains("memories"));
        assert!(malformed(r#"{}"#).contains("memories"));
        assert!(malformed(r#"{"memories": null}"#).contains("null"));
        assert!(malformed(r#"{"memories": {"category": "episodic"}}"#).contains("an object"));
        assert!(malformed(r#""just a string""#).contains("a string"));
        assert!(malformed("42").contains("a number"));
        assert!(malformed("null").contains("null"));
        malformed("");
        malformed("   ");
        malformed("Here are the memories: []");
        malformed(r#"{"memories": []} and some trailing prose"#);
        malformed(r#"{"memories": [], "memories2": [] "#);
    }

    #[test]
    fn wrong_types_per_field_are_dropped_with_reasons() {
        let good =
            json!({"category": "declarative", "content": "User lives in Berlin.", "confidence": 0.8, "turns": [1]});
        let with = |key: &str, value: Value| {
            let mut item = good.clone();
            item[key] = value;
            item
        };
        let without = |key: &str| {
            let mut item = good.clone();
            item.as_object_mut().unwrap().remove(key);
            item
        };

        assert_eq!(
            dropped_reason(json!("User lives in Berlin.")),
            "item is a string, expected an object"
        );
        assert_eq!(
            dropped_reason(json!(["declarative"])),
            "item is an array, expected an object"
        );
        assert_eq!(dropped_reason(Value::Null), "item is null, expected an object");

        assert_eq!(dropped_reason(without("category")), "missing \"category\"");
        assert_eq!(
            dropped_reason(with("category", json!(1))),
            "\"category\" is a number, expected a string"
        );
        assert_eq!(dropped_reason(without("content")), "missing \"content\"");
        assert_eq!(
            dropped_reason(with("content", json!(["a"]))),
            "\"content\" is an array, expected a string"
        );
        assert_eq!(dropped_reason(without("confidence")), "missing \"confidence\"");
        assert_eq!(
            dropped_reason(with("confidence", json!("0.8"))),
            "\"confidence\" is a string, expected a number"
        );
        assert_eq!(
            dropped_reason(with("confidence", json!(true))),
            "\"confidence\" is a boolean, expected a number"
        );
        assert_eq!(
            dropped_reason(with("confidence", Value::Null)),
            "\"confidence\" is null, expected a number"
        );
    }

    #[test]
    fn out_of_range_confidence_is_dropped() {
        for c in [json!(1.5), json!(-0.1), json!(2), json!(-1), json!(1e300)] {
            let reason = dropped_reason(json!({"category": "episodic", "content": "x", "confidence": c, "turns": [1]}));
            assert!(reason.contains("outside [0, 1]"), "{reason}");
        }
        // The bounds themselves are valid.
        let answer = parse_answer(
            r#"[{"category": "episodic", "content": "a", "confidence": 0.0, "turns": [1]},
                {"category": "episodic", "content": "b", "confidence": 1.0, "turns": [1]}]"#,
        )
        .unwrap();
        assert_eq!(answer.kept.len(), 2);
    }

    #[test]
    fn empty_or_overlong_content_is_dropped() {
        for content in ["", "   ", "\n\t"] {
            assert_eq!(
                dropped_reason(json!({"category": "episodic", "content": content, "confidence": 0.5, "turns": [1]})),
                "\"content\" is empty"
            );
        }
        let long = "é".repeat(MAX_CONTENT_CHARS + 1);
        let reason = dropped_reason(json!({"category": "episodic", "content": long, "confidence": 0.5, "turns": [1]}));
        assert!(reason.contains("2001 characters"), "{reason}");
        // Exactly at the limit (counted in characters, not bytes) is fine; content is trimmed.
        let at_limit = "é".repeat(MAX_CONTENT_CHARS);
        let answer = parse_answer(
            &json!([{"category": "episodic", "content": format!("  {at_limit} \n"), "confidence": 0.5, "turns": [1]}])
                .to_string(),
        )
        .unwrap();
        assert_eq!(answer.kept[0].content, at_limit);
    }

    #[test]
    fn unknown_category_is_dropped_known_ones_are_case_insensitive() {
        assert_eq!(
            dropped_reason(json!({"category": " semantic ", "content": "x", "confidence": 0.5, "turns": [1]})),
            "unknown category \"semantic\""
        );
        assert_eq!(
            dropped_reason(json!({"category": "", "content": "x", "confidence": 0.5, "turns": [1]})),
            "unknown category \"\""
        );
        let answer =
            parse_answer(r#"[{"category": " Episodic\n", "content": "x", "confidence": 0.5, "turns": [1]}]"#).unwrap();
        assert_eq!(answer.kept[0].category, Category::Episodic);
    }

    #[test]
    fn invalid_items_do_not_spoil_valid_ones() {
        let answer = parse_answer(
            r#"{"memories": [
                {"category": "fact", "content": "a", "confidence": 0.5, "turns": [1]},
                {"category": "declarative", "content": "User likes jazz.", "confidence": 0.7, "turns": [1]},
                "oops",
                {"category": "procedural", "content": "User wants short answers.", "confidence": "high", "turns": [1]}
            ]}"#,
        )
        .unwrap();
        assert_eq!(
            answer.kept,
            vec![memory(Category::Declarative, "User likes jazz.", 0.7)]
        );
        let indices: Vec<usize> = answer.dropped.iter().map(|d| d.index).collect();
        assert_eq!(indices, vec![0, 2, 3]);
    }

    #[test]
    fn duplicates_are_kept_once() {
        let answer = parse_answer(
            r#"[{"category": "declarative", "content": "User likes jazz.", "confidence": 0.7, "turns": [1]},
                {"category": "declarative", "content": "  user LIKES   jazz. ", "confidence": 0.9, "turns": [1]},
                {"category": "episodic", "content": "User likes jazz.", "confidence": 0.4, "turns": [1]},
                {"category": "declarative", "content": "User likes jazz!", "confidence": 0.7, "turns": [1]}]"#,
        )
        .unwrap();
        // The first one wins; punctuation still distinguishes (as in content hashing).
        assert_eq!(
            answer.kept,
            vec![
                memory(Category::Declarative, "User likes jazz.", 0.7),
                memory(Category::Declarative, "User likes jazz!", 0.7),
            ]
        );
        assert_eq!(
            answer.dropped,
            vec![
                DroppedItem {
                    index: 1,
                    reason: "duplicate of item 0".into()
                },
                DroppedItem {
                    index: 2,
                    reason: "duplicate of item 0".into()
                },
            ]
        );
    }

    #[test]
    fn at_most_fifty_kept() {
        let items: Vec<Value> = (0..60)
            .map(|i| json!({"category": "declarative", "content": format!("User fact {i}."), "confidence": 0.5, "turns": [1]}))
            .collect();
        let answer = parse_answer(&json!({ "memories": items }).to_string()).unwrap();
        assert_eq!(answer.kept.len(), MAX_MEMORIES_PER_ANSWER);
        assert_eq!(answer.kept[49].content, "User fact 49.");
        assert_eq!(answer.dropped.len(), 10);
        assert_eq!(answer.dropped[0].index, 50);
        assert!(answer.dropped[0].reason.contains("limit of 50"));
    }

    #[test]
    fn cap_counts_kept_items_only() {
        // Invalid items and duplicates before the cap do not use up places.
        let mut items = vec![json!({"category": "nope", "content": "x", "confidence": 0.5, "turns": [1]})];
        for i in 0..50 {
            items.push(json!({"category": "episodic", "content": format!("e{i}"), "confidence": 0.5, "turns": [1]}));
            items.push(json!({"category": "episodic", "content": format!("E{i}"), "confidence": 0.5, "turns": [1]}));
        }
        let answer = parse_answer(&Value::Array(items).to_string()).unwrap();
        assert_eq!(answer.kept.len(), 50);
        assert_eq!(answer.dropped.len(), 51);
        assert!(answer.dropped.iter().all(|d| !d.reason.contains("limit")));
    }

    #[test]
    fn turns_are_checked_against_the_batch() {
        let item = |turns: Value| json!({"category": "episodic", "content": "User met Ana.", "confidence": 0.7, "turns": turns});
        let answer = parse_answer(&json!([item(json!([3, 1, 3]))]).to_string()).unwrap();
        assert_eq!(answer.kept[0].turns, vec![1, 3], "sorted, distinct");
        assert!(
            dropped_reason(json!({"category": "episodic", "content": "x", "confidence": 0.5}))
                .contains("missing \"turns\"")
        );
        assert!(dropped_reason(item(json!([]))).contains("empty"));
        assert!(dropped_reason(item(json!([4]))).contains("turn 4 is not one of"));
        assert!(dropped_reason(item(json!(["2"]))).contains("expected turn numbers"));
        assert!(dropped_reason(item(json!([1.5]))).contains("expected turn numbers"));
        assert!(dropped_reason(item(json!(2))).contains("expected an array"));
        assert!(dropped_reason(item(json!([9_999_999_999_i64]))).contains("expected turn numbers"));
        let many: Vec<i32> = std::iter::repeat_n(1, MAX_TURNS_PER_MEMORY + 1).collect();
        assert!(dropped_reason(item(json!(many))).contains("more than"));
    }
}
