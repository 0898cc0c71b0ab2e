//! Extraction: turning finished chat-session turns into memories.
//!
//! The Postgres background worker drives the loop (claim a session, call the model outside any
//! transaction, write memories and move the pointer in one transaction); this module holds the
//! pure parts it calls:
//!
//! - [`prompt`] builds the chat messages for an LLM,
//! - [`openai`] sends them to any OpenAI-compatible chat-completions endpoint (blocking, no
//!   threads, no async runtime: it runs inside a Postgres backend process),
//! - [`parse`] validates the model's JSON answer, dropping bad items one by one and rejecting
//!   only answers that are not JSON of the right shape (those are worth a retry),
//! - [`rules`] and [`episodes`] are what learns when no LLM is configured
//!   ([`extract_without_llm`]): the facts, preferences and instructions the rules recognise, and
//!   every substantive user turn in the speaker's words;
//! - [`dates`] resolves "yesterday" and "last week" against when the turn was said, whoever
//!   extracted the memory.
//!
//! Every memory names the turns it came from ([`ExtractedMemory::turns`]): the rules and the
//! episodes know them by construction, the LLM is asked for them and [`parse`] checks them
//! against the batch.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::content::normalise;

pub mod dates;
pub mod episodes;
pub mod openai;
pub mod parse;
pub mod prompt;
pub mod rules;

pub use dates::resolve_relative_dates;
pub use episodes::turn_episodes;
pub use openai::{api_key_from, ChatClient, ChatConfig, KeyError, LlmError};
pub use parse::{parse_answer, DroppedItem, ParseError, ParsedAnswer};
pub use prompt::{build_messages, ChatMessage};
pub use rules::extract_with_rules;

/// One turn of a chat session, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    /// Position in the session; the worker's `last_extracted_turn` pointer refers to it.
    pub index: i32,
    /// "user", "assistant", "system" or "tool". Only what the user said is a source of memories.
    pub role: String,
    pub content: String,
}

impl Turn {
    pub fn new(index: i32, role: impl Into<String>, content: impl Into<String>) -> Self {
        Turn {
            index,
            role: role.into(),
            content: content.into(),
        }
    }

    pub fn is_user(&self) -> bool {
        self.role.trim().eq_ignore_ascii_case("user")
    }
}

pub use crate::category::{Category, UnknownCategory};

/// A memory ready for `remember`: a self-contained third-person sentence.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExtractedMemory {
    pub category: Category,
    pub content: String,
    /// In [0, 1]: how sure the extractor is that this is true and worth keeping.
    pub confidence: f32,
    /// The indexes of the session turns it came from, ascending, never empty once extracted.
    #[serde(default)]
    pub turns: Vec<i32>,
}

/// What extraction learns with no LLM: per user turn, in turn order, the memories the rules
/// recognise (third-person facts, preferences, instructions, dated events), then the turn itself
/// as an episode when it says anything. De-duplicated on normalised content, first kept.
pub fn extract_without_llm(turns: &[Turn]) -> Vec<ExtractedMemory> {
    let mut seen = HashSet::new();
    let mut memories = Vec::new();
    for turn in turns.iter().filter(|t| t.is_user()) {
        let facts = extract_with_rules(std::slice::from_ref(turn));
        for memory in facts.into_iter().chain(turn_episodes(turn)) {
            if seen.insert(normalise(&memory.content)) {
                memories.push(memory);
            }
        }
    }
    memories
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_serde_uses_lowercase_categories() {
        let m = ExtractedMemory {
            category: Category::Episodic,
            content: "User has a dentist appointment on Friday.".into(),
            confidence: 0.75,
            turns: vec![3],
        };
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["category"], "episodic");
        assert_eq!(json["content"], "User has a dentist appointment on Friday.");
        assert_eq!(json["turns"], serde_json::json!([3]));
        let back: ExtractedMemory = serde_json::from_value(json).unwrap();
        assert_eq!(back, m);
        // Deserialisation accepts any case, like `Category::parse`.
        let loose: ExtractedMemory =
            serde_json::from_str(r#"{"category":"Procedural","content":"x","confidence":1}"#).unwrap();
        assert_eq!(loose.category, Category::Procedural);
        assert!(serde_json::from_str::<Category>(r#""semantic""#).is_err());
    }

    #[test]
    fn without_llm_facts_and_episodes_per_turn_with_their_turns() {
        let turns = [
            Turn::new(1, "user", "Hi!"),
            Turn::new(2, "assistant", "Hello! How was your week?"),
            Turn::new(
                3,
                "user",
                "Busy. I live in Porto now and we adopted a beagle called Miso.",
            ),
            Turn::new(4, "assistant", "Congratulations!"),
            Turn::new(5, "user", "Thanks! Do you know any good dog parks?"),
            Turn::new(6, "user", "I live in Porto now and we adopted a beagle called Miso."),
        ];
        let learned: Vec<(Category, String, Vec<i32>)> = extract_without_llm(&turns)
            .into_iter()
            .map(|m| (m.category, m.content, m.turns))
            .collect();
        assert_eq!(
            learned,
            vec![
                (
                    Category::Declarative,
                    "User lives in Porto now and we adopted a beagle called Miso.".to_string(),
                    vec![3]
                ),
                (
                    Category::Episodic,
                    "Busy. I live in Porto now and we adopted a beagle called Miso.".to_string(),
                    vec![3]
                ),
                (
                    Category::Episodic,
                    "I live in Porto now and we adopted a beagle called Miso.".to_string(),
                    vec![6]
                ),
            ]
        );
    }

    #[test]
    fn turn_roles() {
        assert!(Turn::new(0, "user", "hi").is_user());
        assert!(Turn::new(0, " User ", "hi").is_user());
        assert!(!Turn::new(1, "assistant", "hi").is_user());
        let t: Turn = serde_json::from_str(r#"{"index":3,"role":"user","content":"x"}"#).unwrap();
        assert_eq!(t, Turn::new(3, "user", "x"));
    }
}
