//! From a turn's text to clauses: sentence and clause splitting, questions, fillers, asides, and
//! the first-to-third-person rewrite used when a clause is copied into a memory.

use std::sync::OnceLock;

use regex::{Captures, Regex};

use super::lexicon::{any, starts_with_word, words_lower};

/// Longer clauses are rambling prose, not statements worth copying into a memory.
const MAX_CLAUSE_CHARS: usize = 300;

const FILLERS: &str = "oh|ok|okay|well|also|and|so|but|plus|btw|by the way|actually|anyway|anyways|honestly|fyi|\
    just so you know|for the record|for your information|yes|yeah|yep|no|nope|hey|hi|hello|hi there|hello there|\
    not really|note|please note|remember|please remember|one more thing";

const AUXILIARIES: &str = "do|does|did|am|is|are|was|were|can|could|would|will|should|shall|have|has|had|may|might|\
    must";

const QUESTION_SUBJECTS: &str = "i|you|we|he|she|it|they|my|your|the|this|that|there|anyone|someone";

const WH_WORDS: &str = "what|what's|where|where's|who|who's|whom|whose|why|how|how's|which";

/// Splits at sentence-ending punctuation followed by whitespace (or the end) and at line breaks.
/// The terminator stays with its sentence, so questions can be recognised afterwards.
pub(crate) fn sentences(text: &str) -> Vec<String> {
    let text = text.replace(['\u{2019}', '\u{2018}'], "'");
    let mut out = Vec::new();
    for line in text.lines() {
        let chars: Vec<char> = line.chars().collect();
        let mut current = String::new();
        let mut i = 0;
        while i < chars.len() {
            current.push(chars[i]);
            if matches!(chars[i], '.' | '!' | '?' | '\u{2026}') {
                // Swallow "?!", "...", and closing quotes or brackets after the terminator.
                while i + 1 < chars.len() && matches!(chars[i + 1], '.' | '!' | '?' | '\u{2026}' | '"' | '\'' | ')') {
                    i += 1;
                    current.push(chars[i]);
                }
                if i + 1 == chars.len() || chars[i + 1].is_whitespace() {
                    push_sentence(&mut out, &current);
                    current.clear();
                }
            }
            i += 1;
        }
        push_sentence(&mut out, &current);
    }
    out
}

fn push_sentence(out: &mut Vec<String>, text: &str) {
    // List markers are layout, not words.
    let text = text.trim().trim_start_matches(['-', '*', '\u{2022}', '>']).trim();
    if text.chars().any(char::is_alphanumeric) {
        out.push(text.split_whitespace().collect::<Vec<_>>().join(" "));
    }
}

pub(crate) fn is_question(sentence: &str) -> bool {
    let end = sentence.trim_end_matches(['"', '\'', ')', ' ']);
    end.ends_with('?') || patterns().question_start.is_match(strip_fillers(sentence))
}

/// Clauses of one sentence, each without trailing punctuation and leading fillers.
pub(super) fn clauses(sentence: &str) -> Vec<String> {
    let p = patterns();
    let mut parts = Vec::new();
    let mut start = 0;
    for caps in p.clause_break.captures_iter(sentence) {
        let (whole, subject) = (caps.get(0).expect("match"), caps.get(1).expect("subject"));
        parts.push(&sentence[start..whole.start()]);
        start = subject.start();
    }
    parts.push(&sentence[start..]);
    parts
        .into_iter()
        .map(|part| {
            let part = strip_fillers(part.trim());
            trim_trailer(part)
        })
        .filter(|c| {
            !c.is_empty()
                && !is_joking(c)
                && c.chars().count() <= MAX_CLAUSE_CHARS
                && !c.starts_with(['"', '\u{201C}', '\u{201D}', '\u{AB}'])
                && !p.question_start.is_match(c)
        })
        .collect()
}

/// The part of a clause before a comma that opens an aside ("My name is John, nice to meet you",
/// "I work at night, so answer briefly", "I'm an idiot, I forgot"). Commas in lists and names stay
/// ("I like tea, coffee, and juice", "I live in Portland, Oregon").
pub(super) fn cut_at_comma(clause: &str) -> &str {
    const ASIDE: &str = "so|but|yet|nice|thanks|thank|by|which|who|because|since|as|though|although|if|unless|when|\
        while|please|not|just|it|it's|that|this|he|she|they|we|you|i|i'm|i've|i'll|i'd|my|ok|okay|right|anyway|btw|\
        hence|thus|therefore|then|plus|also|too|like|hope|hopefully|glad|sorry|cheers|honestly|really|obviously|\
        apparently|basically|sadly|unfortunately|luckily|otherwise|even|except|especially|maybe|probably|lol";
    let mut from = 0;
    while let Some(offset) = clause[from..].find(", ") {
        let at = from + offset;
        if starts_with_word(&clause[at + 2..], ASIDE) {
            return &clause[..at];
        }
        from = at + 2;
    }
    clause
}

/// Jokes and irony are not facts: "I'm from the future lol".
fn is_joking(text: &str) -> bool {
    words_lower(text).any(|w| {
        matches!(
            w.as_str(),
            "lol" | "lmao" | "rofl" | "haha" | "hahaha" | "jk" | "kidding" | "joking"
        )
    }) || text.contains('\u{1F602}')
        || text.contains('\u{1F923}')
}

/// Drops end punctuation, smileys and a closing "please"/"thanks" ("to please" stays a verb).
fn trim_trailer(text: &str) -> String {
    let trimmed = patterns().trailer.replace(text, "");
    let trimmed = trimmed.trim();
    if trimmed.to_lowercase().ends_with(" to") {
        text.trim_end_matches(|c: char| c.is_whitespace() || ".!,;:".contains(c))
            .to_string()
    } else {
        trimmed.to_string()
    }
}

fn strip_fillers(text: &str) -> &str {
    match patterns().filler.find(text) {
        Some(m) => &text[m.end()..],
        None => text,
    }
}

/// First person becomes third person ("my" → "their"), the assistant's "your" becomes "its".
/// "They" keeps the verb agreement of "I" ("I am" → "they are") without guessing a gender.
pub(super) fn third_person(text: &str) -> String {
    patterns()
        .first_person
        .replace_all(text.trim(), |caps: &Captures| {
            let word = caps[0].to_lowercase();
            let word = word.split_whitespace().collect::<Vec<_>>().join(" ");
            match word.as_str() {
                "i am" => "they are",
                "i'm" => "they're",
                "i was" => "they were",
                "i've" => "they've",
                "i have" => "they have",
                "i'll" => "they'll",
                "i'd" => "they'd",
                "i" => "they",
                "me" => "them",
                "my" => "their",
                "mine" => "theirs",
                "myself" => "themselves",
                "your" | "yours" => "its",
                "yourself" => "itself",
                _ => return caps[0].to_string(),
            }
            .to_string()
        })
        .into_owned()
}

struct TextPatterns {
    filler: Regex,
    question_start: Regex,
    clause_break: Regex,
    trailer: Regex,
    first_person: Regex,
}

fn patterns() -> &'static TextPatterns {
    static PATTERNS: OnceLock<TextPatterns> = OnceLock::new();
    PATTERNS.get_or_init(|| {
        let re = |pattern: &str| Regex::new(&format!("(?i){pattern}")).expect("text pattern");
        TextPatterns {
            filler: re(&format!(r"^(?:{}(?:\s+that)?[,:;!.\-]*\s+)+", any(FILLERS))),

            question_start: re(&format!(
                r"^(?:{}(?:n't)?\s+{}\b|{}\b)",
                any(AUXILIARIES),
                any(QUESTION_SUBJECTS),
                any(WH_WORDS)
            )),

            clause_break: re(r"(?:,?\s+(?:and|but|so|because|plus|while)\s+|;\s*)(i|i'm|i've|i'll|my)\b"),

            trailer: re(concat!(
                r"(?:[\s,;:]+(?:please|pls|thanks|thank you|thx|cheers|gracias|merci|danke))?",
                r"(?:\s*(?::\)|:-\)|;\)|:d))?",
                r"[\s.!,;:]*$",
            )),

            first_person: re(r"\b(?:i am|i'm|i was|i've|i have|i'll|i'd|i|me|my|mine|myself|your|yours|yourself)\b"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentence_splitting() {
        assert_eq!(
            sentences("I like tea. Do you?! Version 3.5 is out…  Next line\n- bullet point"),
            vec![
                "I like tea.",
                "Do you?!",
                "Version 3.5 is out…",
                "Next line",
                "bullet point"
            ]
        );
        assert_eq!(sentences("  \n ... \n"), Vec::<String>::new());
        assert_eq!(
            sentences("He said \"stop.\" Then left"),
            vec!["He said \"stop.\"", "Then left"]
        );
    }

    #[test]
    fn clause_splitting() {
        assert_eq!(
            clauses("Oh, I like tea but I hate coffee, so my mornings are hard"),
            vec!["I like tea", "I hate coffee", "my mornings are hard"]
        );
        // "and" between objects does not split.
        assert_eq!(clauses("I like tea and coffee."), vec!["I like tea and coffee"]);
    }

    #[test]
    fn questions() {
        for q in [
            "Do I like tea?",
            "Is my dog called Rex",
            "how do I live",
            "What's my name",
            "Really?\"",
        ] {
            assert!(is_question(q), "{q}");
        }
        for s in [
            "I like tea.",
            "Don't ever do that.",
            "Always answer briefly",
            "Have a nice day",
        ] {
            assert!(!is_question(s), "{s}");
        }
    }

    #[test]
    fn third_person_rewrites() {
        assert_eq!(
            third_person("call me when I'm free and my boss is away, I was told I am late"),
            "call them when they're free and their boss is away, they were told they are late"
        );
        assert_eq!(third_person("check your work yourself"), "check its work itself");
        assert_eq!(
            third_person("mine is bigger, I'll see"),
            "theirs is bigger, they'll see"
        );
        // Whole words only.
        assert_eq!(third_person("Milan time meme"), "Milan time meme");
    }
}
