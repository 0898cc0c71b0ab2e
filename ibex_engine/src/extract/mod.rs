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
//! - [`rules`] is the built-in extractor used when no LLM is configured.

use serde::{Deserialize, Serialize};

pub mod openai;
pub mod parse;
pub mod prompt;
pub mod rules;

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
        };
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(json["category"], "episodic");
        assert_eq!(json["content"], "User has a dentist appointment on Friday.");
        let back: ExtractedMemory = serde_json::from_value(json).unwrap();
        assert_eq!(back, m);
        // Deserialisation accepts any case, like `Category::parse`.
        let loose: ExtractedMemory =
            serde_json::from_str(r#"{"category":"Procedural","content":"x","confidence":1}"#).unwrap();
        assert_eq!(loose.category, Category::Procedural);
        assert!(serde_json::from_str::<Category>(r#""semantic""#).is_err());
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
