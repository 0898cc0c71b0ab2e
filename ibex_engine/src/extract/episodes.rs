//! Episodes: what a user turn said, kept in the speaker's words.
//!
//! The fact rules ([`super::rules`]) take only a few exact phrasings, so a real conversation
//! ("We finally adopted the puppy from the shelter on Elm Street, she's a beagle mix") teaches
//! them next to nothing. Without an LLM to rewrite such turns, the turn itself is the memory:
//! every substantive user turn becomes one episodic memory holding its statements verbatim, and
//! search finds it later as it would find the turn.
//!
//! A turn is substantive when something is left after dropping its
//! - questions ("Have you been to Lisbon?"), recognised as the rules recognise them;
//! - greetings, thanks and acknowledgements ("Hi!", "Thanks, sounds good", "Haha ok");
//! - standing instructions ("From now on, answer in Portuguese"): the rules learn them as
//!   procedural memories, which wait for review before they steer the agent; a verbatim copy
//!   would skip that review;
//! - requests for the answer at hand ("Please summarise that", "Write it shorter"), unless they
//!   mention the user ("Write a toast for my sister's wedding on Friday" says something);
//! - code blocks (fenced with three backticks): pasted material, not something the user said;
//!
//! and what is left holds at least [`MIN_CONTENT_WORDS`] content words (not stop words). The
//! memory is what is left, sentences in order. A very long turn is cut at sentence ends into
//! pieces of at most [`MAX_EPISODE_CHARS`] characters, so one pasted page cannot fill a context.

use super::rules::is_instruction;
use super::rules::lexicon::{listed, words_lower};
use super::rules::text::{is_question, sentences};
use super::{Category, ExtractedMemory, Turn};

/// Below the fact rules' confidences: a verbatim turn is evidence, not a checked fact.
pub const EPISODE_CONFIDENCE: f32 = 0.6;

/// Longest episode, in characters; longer turns give several.
pub const MAX_EPISODE_CHARS: usize = 1000;

/// Content words a turn needs to count: "I'm fine" has none, "I got the job" has two.
pub const MIN_CONTENT_WORDS: usize = 2;

/// Words of greetings, thanks and acknowledgements: a sentence of these alone says nothing.
const PHATIC: &str = "hi|hello|hey|heya|hiya|yo|there|good|morning|afternoon|evening|night|thanks|thank|thx|ty|you|\
    so|much|very|ok|okay|k|sure|yes|yeah|yep|yup|no|nope|nah|cool|great|nice|awesome|lol|haha|hahaha|hehe|lmao|hmm|\
    hm|oh|ah|aha|wow|right|got|it|sounds|perfect|bye|goodbye|see|ya|later|welcome|np|alright|fine|cheers|indeed|\
    exactly|true|agreed|interesting|really|i|me|too|same|how|are|doing|well|to|meet|glad|hear|that|that's|thats|\
    makes|sense|understood|noted|totally|definitely|absolutely|of|course|a|lot|all|the|best|take|care|talk|soon|\
    will|do|omg|yay|ooh|aw|aww|love|it's|its|amazing|fantastic|wonderful|happy|for|what|day|helpful|useful|lovely|\
    brilliant|bad|sad";

/// Verbs that open a request for the answer at hand.
const REQUEST_VERBS: &str = "please|help|tell|show|give|write|rewrite|summarise|summarize|explain|translate|list|\
    make|create|generate|draft|fix|check|describe|suggest|recommend|find|compare|continue|try|shorten|expand|\
    simplify|convert|calculate|format|proofread|edit|outline|brainstorm|answer|repeat|elaborate";

/// Words that carry little meaning on their own.
const STOP_WORDS: &str = "a|an|the|and|or|but|if|so|to|of|in|on|at|by|for|with|from|up|down|out|over|about|into|\
    i|me|my|mine|we|us|our|you|your|he|him|his|she|her|they|them|their|it|its|this|that|these|those|is|am|are|was|\
    were|be|been|being|have|has|had|do|does|did|will|would|can|could|should|shall|may|might|must|i'm|i've|i'll|\
    i'd|it's|that's|there|here|then|than|just|very|really|too|also|not|no|yes|some|any|all|one|what|which|who|\
    when|where|why|how|as|get|got|go|going|went|like|know|think|yeah|oh|well|ok|okay|lol|haha|thing|things";

/// The episodes of one turn: none for a turn that is not the user's or says nothing.
pub fn turn_episodes(turn: &Turn) -> Vec<ExtractedMemory> {
    if !turn.is_user() {
        return Vec::new();
    }
    let said: Vec<String> = sentences(&without_code_blocks(&turn.content))
        .into_iter()
        .filter(|s| !is_question(s) && !is_phatic(s) && !is_request(s) && !is_instruction(s))
        .collect();
    let content_words: usize = said.iter().map(|s| content_words(s)).sum();
    if content_words < MIN_CONTENT_WORDS {
        return Vec::new();
    }
    pieces(&said)
        .into_iter()
        .map(|content| ExtractedMemory {
            category: Category::Episodic,
            content,
            confidence: EPISODE_CONFIDENCE,
            turns: vec![turn.index],
        })
        .collect()
}

fn without_code_blocks(text: &str) -> String {
    // Segments alternate outside/inside a fence; an unclosed fence hides the rest of the turn.
    text.split("```").step_by(2).collect::<Vec<_>>().join("\n")
}

fn is_phatic(sentence: &str) -> bool {
    words_lower(sentence)
        .filter(|w| !w.is_empty())
        .all(|w| listed(PHATIC, &w))
}

fn is_request(sentence: &str) -> bool {
    let opens_request = words_lower(sentence).next().is_some_and(|w| listed(REQUEST_VERBS, &w));
    let about_the_user =
        words_lower(sentence).any(|w| matches!(w.as_str(), "i" | "i'm" | "i've" | "my" | "we" | "our"));
    opens_request && !about_the_user
}

fn content_words(sentence: &str) -> usize {
    words_lower(sentence)
        .filter(|w| {
            !listed(STOP_WORDS, w)
                && !listed(PHATIC, w)
                && (w.chars().count() >= 3 || w.chars().any(|c| c.is_ascii_digit()))
        })
        .count()
}

/// Sentences joined in order, cut into pieces of at most [`MAX_EPISODE_CHARS`] characters at
/// sentence ends (a single longer sentence is cut at a word boundary).
fn pieces(sentences: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for sentence in sentences {
        for part in bounded(sentence) {
            let joined = current.chars().count() + 1 + part.chars().count();
            if !current.is_empty() && joined > MAX_EPISODE_CHARS {
                out.push(std::mem::take(&mut current));
            }
            if !current.is_empty() {
                current.push(' ');
            }
            current.push_str(&part);
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

fn bounded(sentence: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    for word in sentence.split_whitespace() {
        if !current.is_empty() && current.chars().count() + 1 + word.chars().count() > MAX_EPISODE_CHARS {
            parts.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push(' ');
        }
        // A single "word" longer than the limit (a URL, base64) is cut by characters.
        let mut word: String = word.to_string();
        while word.chars().count() > MAX_EPISODE_CHARS {
            let head: String = word.chars().take(MAX_EPISODE_CHARS).collect();
            word = word.chars().skip(MAX_EPISODE_CHARS).collect();
            if !current.is_empty() {
                parts.push(std::mem::take(&mut current));
            }
            parts.push(head);
        }
        current.push_str(&word);
    }
    if !current.trim().is_empty() {
        parts.push(current);
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn episodes(text: &str) -> Vec<String> {
        turn_episodes(&Turn::new(7, "user", text))
            .into_iter()
            .map(|m| m.content)
            .collect()
    }

    #[test]
    fn statements_are_kept_in_the_speakers_words() {
        let kept = turn_episodes(&Turn::new(
            7,
            "user",
            "We finally adopted the puppy from the shelter on Elm Street, she's a beagle mix!",
        ));
        assert_eq!(kept.len(), 1);
        assert_eq!(
            kept[0].content,
            "We finally adopted the puppy from the shelter on Elm Street, she's a beagle mix!"
        );
        assert_eq!(
            (kept[0].category, kept[0].confidence),
            (Category::Episodic, EPISODE_CONFIDENCE)
        );
        assert_eq!(kept[0].turns, vec![7], "provenance by construction");
    }

    #[test]
    fn questions_greetings_and_requests_are_dropped_from_a_turn() {
        assert_eq!(
            episodes("Hey! I just got back from Lisbon. Have you ever been? Thanks!"),
            vec!["I just got back from Lisbon."]
        );
        assert_eq!(
            episodes("Please summarise that. My sister Ana starts at the hospital in March."),
            vec!["My sister Ana starts at the hospital in March."]
        );
        assert_eq!(
            episodes("From now on, answer in Portuguese please. Always use metric units! I moved to Lisbon."),
            vec!["I moved to Lisbon."],
            "instructions wait for review as procedural memories"
        );
        assert_eq!(
            episodes("Write a toast for my brother's wedding on Friday."),
            vec!["Write a toast for my brother's wedding on Friday."],
            "a request that mentions the user says something about them"
        );
    }

    #[test]
    fn turns_that_say_nothing_give_nothing() {
        for text in [
            "Hi there!",
            "Thanks, that's really helpful. Sure, sounds good.",
            "Haha ok",
            "Good morning! How are you doing today?",
            "What do you think about that?",
            "Can you help me write an email?",
            "Please summarise the article above in three bullet points.",
            "I'm fine.",
            "Oh wow, nice!",
            "```\nfn main() { println!(\"I like Rust and Go\") }\n```",
            "",
        ] {
            assert_eq!(episodes(text), Vec::<String>::new(), "{text:?}");
        }
        assert!(turn_episodes(&Turn::new(1, "assistant", "I went to Rome last year.")).is_empty());
    }

    #[test]
    fn long_turns_are_cut_at_sentence_ends() {
        let sentence = "My grandmother kept bees behind the old farmhouse near Porto for forty years. ";
        let text = sentence.repeat(40);
        let pieces = episodes(&text);
        assert!(pieces.len() > 1);
        for piece in &pieces {
            assert!(piece.chars().count() <= MAX_EPISODE_CHARS);
            assert!(piece.ends_with('.'), "cut at a sentence end: {piece:?}");
        }
        let one_word = "x".repeat(2500);
        let cut = episodes(&format!("My password hint is {one_word}"));
        assert!(cut.iter().all(|p| p.chars().count() <= MAX_EPISODE_CHARS));
    }
}
