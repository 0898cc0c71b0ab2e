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

use std::fmt;

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

/// The three kinds of long-term memory. Context assembly emits them in this order, after the
/// directive: procedural, declarative, episodic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum Category {
    /// Standing instructions: how the user wants things done.
    Procedural,
    /// Facts and preferences about the user and their world.
    Declarative,
    /// Events tied to a date or time.
    Episodic,
}

impl Category {
    pub const ALL: [Category; 3] = [Category::Procedural, Category::Declarative, Category::Episodic];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Procedural => "procedural",
            Category::Declarative => "declarative",
            Category::Episodic => "episodic",
        }
    }

    /// Case-insensitive, surrounding whitespace ignored: models write "Declarative" as often as
    /// "declarative", and the SQL layer passes user input through here too.
    pub fn parse(text: &str) -> Option<Category> {
        let text = text.trim();
        Category::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(text))
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Category {
    type Err = UnknownCategory;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Category::parse(s).ok_or_else(|| UnknownCategory(s.to_string()))
    }
}

impl TryFrom<String> for Category {
    type Error = UnknownCategory;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse()
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown memory category {0:?} (expected procedural, declarative or episodic)")]
pub struct UnknownCategory(pub String);

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
    fn category_names_round_trip() {
        for c in Category::ALL {
            assert_eq!(Category::parse(c.as_str()), Some(c));
            assert_eq!(c.to_string(), c.as_str());
        }
        assert_eq!(Category::Procedural.as_str(), "procedural");
        assert_eq!(Category::Declarative.as_str(), "declarative");
        assert_eq!(Category::Episodic.as_str(), "episodic");
    }

    #[test]
    fn category_parse_is_case_insensitive_and_trimmed() {
        assert_eq!(Category::parse("  Declarative\n"), Some(Category::Declarative));
        assert_eq!(Category::parse("EPISODIC"), Some(Category::Episodic));
        assert_eq!("pRoCeDuRaL".parse::<Category>(), Ok(Category::Procedural));
        assert_eq!(Category::parse("semantic"), None);
        assert_eq!(Category::parse(""), None);
        assert!("fact".parse::<Category>().unwrap_err().to_string().contains("fact"));
    }

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
