//! The memory category: one enum for extraction, context assembly, the sidecar and SQL
//! (`ibex_memory_categories()` feeds `ibex_core.assert_category`).

use std::fmt;

use serde::{Deserialize, Serialize};

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

    /// The names as stored, in section order: what SQL validates against
    /// (`ibex_memory_categories()`), so the list exists once.
    pub fn names() -> [&'static str; 3] {
        Category::ALL.map(Category::as_str)
    }

    /// Section heading line of context assembly (with its line break).
    pub fn heading(self) -> &'static str {
        match self {
            Self::Procedural => "## Memories: procedural (how to work)\n",
            Self::Declarative => "## Memories: declarative (facts)\n",
            Self::Episodic => "## Memories: episodic (what happened)\n",
        }
    }

    /// Position in section order.
    pub fn index(self) -> usize {
        self as usize
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
    fn names_are_in_section_order() {
        assert_eq!(Category::names(), ["procedural", "declarative", "episodic"]);
        assert_eq!(Category::Episodic.index(), 2);
    }
}
