//! Which memory candidates may enter a context, before the knapsack packs them: the question
//! decides, not the room left.
//!
//! A context is paid for on every model call, so a memory goes in only when it bears on the
//! question. Three rules, applied to the candidates best composite score first:
//!
//! 1. **Absolute floors.** A candidate whose relevance is below `min_relevance` is left out.
//!    Small talk (a message made only of greeting, thanks and farewell words, see
//!    [`is_small_talk`]) asks about nothing remembered: it gets the directives and no memories,
//!    unless a memory matches it at least `small_talk_relevance`. Relevance alone cannot tell
//!    small talk from a question worded unlike its answer: on the conversational set the best
//!    candidate of "Good morning, how are you today?" scores 0.23, as does the evidence of a
//!    paraphrased question ("What did the user call the new dog?" for "we named her Pepper").
//! 2. **Relative floor.** A candidate whose relevance is below `relative_relevance` times the best
//!    candidate's is left out: a precise question has a few precise answers, and the long tail
//!    of loosely related memories behind them is text the model reads for nothing.
//! 3. **No near-copies.** A candidate whose embedding's cosine similarity with one already kept
//!    exceeds `near_copy_similarity` says nearly the same thing; the better-scored one stays.
//!    This is the redundancy half of maximal marginal relevance (Carbonell and Goldstein, 1998)
//!    with a hard threshold: a near-copy adds tokens and no evidence, while a merely related
//!    memory (another fact about the same person) is kept.
//!
//! Standing instructions keep their guaranteed place: procedural memories (how the agent should
//! work) are exempt from both floors, like the directives, which are not candidates at all.
//!
//! The knapsack then packs the kept candidates by composite score until the budget or the
//! candidates run out; what does not fit is left out for the budget. Every candidate left out
//! carries its reason, which `explain` returns to the caller.
//!
//! The cold pool is sized by the budget too ([`cold_pool_size`]): enough candidates to fill it
//! if they are all relevant, so a large budget is not starved by a fixed k and a small one does
//! not pay for a large search.

use crate::category::Category;
use crate::embed::cosine_similarity;

/// The selection knobs; the sidecar's settings of the same names.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SelectionSettings {
    /// Relevance a memory must reach to be packed for small talk ([`is_small_talk`]).
    pub small_talk_relevance: f64,
    /// Relevance (the blend of semantic and lexical evidence, 0 to 1) below which a memory is
    /// never packed.
    pub min_relevance: f64,
    /// Share of the best candidate's relevance below which a memory is not packed (0: off).
    pub relative_relevance: f64,
    /// Cosine similarity above which two memories are near-copies (1: off).
    pub near_copy_similarity: f64,
}

impl SelectionSettings {
    /// Everything the knapsack can fit goes in: the packing before selection existed.
    pub const OFF: Self = Self {
        small_talk_relevance: 0.0,
        min_relevance: 0.0,
        relative_relevance: 0.0,
        near_copy_similarity: 1.0,
    };
}

impl Default for SelectionSettings {
    /// Tuned on the conversational set with `make bench-context` (docs/ARCHITECTURE.md, "Context
    /// selection").
    fn default() -> Self {
        Self {
            small_talk_relevance: 0.35,
            min_relevance: 0.15,
            relative_relevance: 0.35,
            near_copy_similarity: 0.95,
        }
    }
}

/// Why a candidate was not packed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LeftOut {
    /// The message is small talk and the memory's relevance is below `small_talk_relevance`.
    SmallTalk { relevance: f64, floor: f64 },
    /// Relevance below `min_relevance`.
    BelowMinRelevance { relevance: f64, floor: f64 },
    /// Relevance below `relative_relevance` x the best candidate's.
    BelowRelativeFloor { relevance: f64, floor: f64 },
    /// Nearly the same as a better candidate that was kept (its index).
    NearCopy { of: usize, similarity: f64 },
    /// Eligible, but the memory budget was full.
    Budget,
}

impl LeftOut {
    pub fn code(&self) -> &'static str {
        match self {
            Self::SmallTalk { .. } => "small_talk",
            Self::BelowMinRelevance { .. } => "below_min_relevance",
            Self::BelowRelativeFloor { .. } => "below_relative_floor",
            Self::NearCopy { .. } => "near_copy",
            Self::Budget => "budget",
        }
    }
}

/// What selection needs to know of a candidate.
#[derive(Clone, Copy, Debug)]
pub struct Candidate<'a> {
    pub category: Category,
    pub relevance: f64,
    pub score: f64,
    /// The memory's embedding, when known; without one it is never a near-copy.
    pub embedding: Option<&'a [f32]>,
}

/// The outcome: candidate indices that may be packed (best score first), and the others with
/// their reason.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Selection {
    pub eligible: Vec<usize>,
    pub left_out: Vec<(usize, LeftOut)>,
}

fn is_standing(category: Category) -> bool {
    category == Category::Procedural
}

fn finite(x: f64) -> f64 {
    if x.is_finite() {
        x
    } else {
        0.0
    }
}

/// Words of greetings, thanks, farewells and acknowledgements, lower case, apostrophes removed.
const SMALL_TALK_WORDS: &[&str] = &[
    "a",
    "again",
    "ah",
    "alright",
    "am",
    "and",
    "appreciate",
    "appreciated",
    "are",
    "awesome",
    "bye",
    "care",
    "cheers",
    "cool",
    "day",
    "doing",
    "done",
    "evening",
    "everyone",
    "fine",
    "for",
    "good",
    "goodbye",
    "goodnight",
    "got",
    "great",
    "ha",
    "haha",
    "hello",
    "hey",
    "hi",
    "hiya",
    "hmm",
    "how",
    "i",
    "im",
    "is",
    "it",
    "its",
    "later",
    "lol",
    "lot",
    "morning",
    "much",
    "nice",
    "night",
    "no",
    "now",
    "oh",
    "ok",
    "okay",
    "perfect",
    "please",
    "see",
    "so",
    "soon",
    "sounds",
    "sup",
    "sure",
    "take",
    "talk",
    "thank",
    "thanks",
    "thats",
    "that",
    "the",
    "there",
    "thx",
    "to",
    "today",
    "too",
    "ty",
    "up",
    "very",
    "welcome",
    "well",
    "whats",
    "wonderful",
    "wow",
    "yeah",
    "yep",
    "yes",
    "yo",
    "you",
    "youre",
    "all",
    "afternoon",
    "bye-bye",
    "have",
    "be",
    "was",
    "helpful",
    "help",
    "useful",
    "great",
    "enjoy",
    "your",
    "weekend",
    "nope",
    "k",
    "kk",
    "hows",
    "going",
];

/// Longest message, in words, that can be small talk.
const SMALL_TALK_MAX_WORDS: usize = 12;

/// Whether a message is small talk: one to 12 words, all of them greeting, thanks, farewell or
/// acknowledgement words ("Hi!", "Thanks, that's all for now. Bye!"). Anything naming a thing,
/// a person or a question word other than "how" is not.
pub fn is_small_talk(text: &str) -> bool {
    let words: Vec<String> = text
        .split(|c: char| c.is_whitespace() || (c.is_ascii_punctuation() && c != '\'' && c != '-'))
        .map(|w| {
            w.trim_matches(|c: char| c == '\'' || c == '-')
                .replace(['\'', '’'], "")
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect();
    !words.is_empty()
        && words.len() <= SMALL_TALK_MAX_WORDS
        && words.iter().all(|w| SMALL_TALK_WORDS.contains(&w.as_str()))
}

/// Applies the floors and the near-copy rule (see the module docs); `small_talk` says whether
/// the message asked with is small talk ([`is_small_talk`]).
pub fn select(candidates: &[Candidate<'_>], settings: &SelectionSettings, small_talk: bool) -> Selection {
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    order.sort_by(|&a, &b| {
        finite(candidates[b].score)
            .total_cmp(&finite(candidates[a].score))
            .then(a.cmp(&b))
    });
    let best = candidates
        .iter()
        .filter(|c| !is_standing(c.category))
        .map(|c| finite(c.relevance))
        .fold(0.0_f64, f64::max);
    let relative_floor = settings.relative_relevance * best;
    let mut selection = Selection::default();
    for i in order {
        let c = &candidates[i];
        let relevance = finite(c.relevance);
        if !is_standing(c.category) {
            if small_talk && relevance < settings.small_talk_relevance {
                selection.left_out.push((
                    i,
                    LeftOut::SmallTalk {
                        relevance,
                        floor: settings.small_talk_relevance,
                    },
                ));
                continue;
            }
            if relevance < settings.min_relevance {
                selection.left_out.push((
                    i,
                    LeftOut::BelowMinRelevance {
                        relevance,
                        floor: settings.min_relevance,
                    },
                ));
                continue;
            }
            if relevance < relative_floor {
                selection.left_out.push((
                    i,
                    LeftOut::BelowRelativeFloor {
                        relevance,
                        floor: relative_floor,
                    },
                ));
                continue;
            }
        }
        if let Some(copy) = near_copy(candidates, &selection.eligible, c, settings.near_copy_similarity) {
            selection.left_out.push((i, copy));
            continue;
        }
        selection.eligible.push(i);
    }
    selection
}

/// The kept candidate that `c` nearly copies, if any (the most similar one above the threshold).
fn near_copy(candidates: &[Candidate<'_>], kept: &[usize], c: &Candidate<'_>, threshold: f64) -> Option<LeftOut> {
    if threshold >= 1.0 {
        return None;
    }
    let mine = c.embedding?;
    kept.iter()
        .filter_map(|&k| {
            let theirs = candidates[k].embedding?;
            let similarity = f64::from(cosine_similarity(mine, theirs));
            (similarity > threshold).then_some((k, similarity))
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(of, similarity)| LeftOut::NearCopy { of, similarity })
}

/// How many candidates to ask of the cold search for a memory budget of `memory_tokens`:
/// enough lines of `tokens_per_memory` to fill it, at least `min` and at most `max`. A `min`
/// above `max` wins: a deployment that set a large fixed pool (`cold_k`) before the pool grew
/// with the budget keeps it.
pub fn cold_pool_size(memory_tokens: usize, tokens_per_memory: usize, min: usize, max: usize) -> usize {
    memory_tokens
        .div_ceil(tokens_per_memory.max(1))
        .clamp(min, max.max(min))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(category: Category, relevance: f64, score: f64) -> Candidate<'static> {
        Candidate {
            category,
            relevance,
            score,
            embedding: None,
        }
    }

    #[test]
    fn floors_leave_out_weak_candidates_but_not_standing_instructions() {
        let candidates = [
            cand(Category::Declarative, 0.80, 0.50),
            cand(Category::Episodic, 0.10, 0.40),   // below the absolute floor
            cand(Category::Episodic, 0.25, 0.45),   // below 0.35 x 0.8
            cand(Category::Procedural, 0.05, 0.30), // standing: kept
            cand(Category::Episodic, 0.50, 0.42),
        ];
        let s = select(&candidates, &SelectionSettings::default(), false);
        assert_eq!(s.eligible, vec![0, 4, 3]);
        assert_eq!(s.left_out.len(), 2);
        assert_eq!(s.left_out[0].0, 2);
        assert_eq!(s.left_out[0].1.code(), "below_relative_floor");
        assert!(matches!(s.left_out[1], (1, LeftOut::BelowMinRelevance { floor, .. }) if floor == 0.15));
    }

    #[test]
    fn a_question_that_matches_nothing_gets_no_memories() {
        let candidates = [
            cand(Category::Episodic, 0.12, 0.35),
            cand(Category::Declarative, 0.10, 0.30),
        ];
        let s = select(&candidates, &SelectionSettings::default(), false);
        assert!(s.eligible.is_empty());
        assert!(s.left_out.iter().all(|(_, r)| r.code() == "below_min_relevance"));
    }

    #[test]
    fn small_talk_gets_only_strong_matches_and_standing_instructions() {
        let candidates = [
            cand(Category::Episodic, 0.25, 0.35),
            cand(Category::Declarative, 0.22, 0.30),
            cand(Category::Procedural, 0.01, 0.20),
        ];
        let s = select(&candidates, &SelectionSettings::default(), true);
        assert_eq!(s.eligible, vec![2]);
        assert!(s.left_out.iter().all(|(_, r)| r.code() == "small_talk"));
        // The same relevance for a question is enough.
        let q = select(&candidates, &SelectionSettings::default(), false);
        assert_eq!(q.eligible, vec![0, 1, 2]);
        // A memory that matches the greeting itself well still goes in.
        let strong = [cand(Category::Episodic, 0.6, 0.5)];
        assert_eq!(select(&strong, &SelectionSettings::default(), true).eligible, vec![0]);
    }

    #[test]
    fn small_talk_is_greetings_thanks_and_farewells_only() {
        for text in [
            "Hi!",
            "hello there",
            "Good morning, how are you today?",
            "Thanks, that's all for now. Bye!",
            "Thank you so much, that’s very helpful",
            "ok cool",
        ] {
            assert!(is_small_talk(text), "{text:?} is small talk");
        }
        for text in [
            "",
            "   ",
            "Hi! What is my dog called?",
            "How old is my sister?",
            "thanks, and when is Inês moving?",
            "good morning good morning good morning good morning good morning good morning good morning",
        ] {
            assert!(!is_small_talk(text), "{text:?} is not small talk");
        }
    }

    #[test]
    fn near_copies_keep_the_better_scored_one() {
        let a = [1.0_f32, 0.0, 0.0];
        let a2 = [0.99_f32, 0.05, 0.0]; // cosine ~0.9987 with a
        let b = [0.6_f32, 0.8, 0.0]; // cosine 0.6 with a: related, not a copy
        let candidates = [
            Candidate {
                embedding: Some(&a2),
                ..cand(Category::Episodic, 0.7, 0.40)
            },
            Candidate {
                embedding: Some(&a),
                ..cand(Category::Episodic, 0.7, 0.50)
            },
            Candidate {
                embedding: Some(&b),
                ..cand(Category::Episodic, 0.7, 0.45)
            },
        ];
        let s = select(&candidates, &SelectionSettings::default(), false);
        assert_eq!(s.eligible, vec![1, 2]);
        match s.left_out.as_slice() {
            [(0, LeftOut::NearCopy { of: 1, similarity })] => assert!(*similarity > 0.99),
            other => panic!("unexpected {other:?}"),
        }
        // Off: both copies stay.
        let off = select(&candidates, &SelectionSettings::OFF, false);
        assert_eq!(off.eligible, vec![1, 2, 0]);
        assert!(off.left_out.is_empty());
    }

    #[test]
    fn off_keeps_everything_in_score_order() {
        let candidates = [
            cand(Category::Episodic, 0.0, 0.1),
            cand(Category::Episodic, f64::NAN, 0.3),
            cand(Category::Episodic, 0.9, f64::NAN),
        ];
        let s = select(&candidates, &SelectionSettings::OFF, false);
        assert_eq!(s.eligible, vec![1, 0, 2]);
    }

    #[test]
    fn the_cold_pool_grows_with_the_budget_within_bounds() {
        assert_eq!(cold_pool_size(4096, 24, 20, 100), 100);
        assert_eq!(cold_pool_size(1200, 24, 20, 100), 50);
        assert_eq!(cold_pool_size(100, 24, 20, 100), 20);
        assert_eq!(cold_pool_size(0, 0, 20, 100), 20);
        assert_eq!(cold_pool_size(10, 24, 120, 50), 120, "a larger min wins over max");
    }
}
