//! The built-in rule-based extractor, used when no LLM is configured.
//!
//! It favours precision over recall: a memory that is wrong or trivial costs context budget in
//! every later conversation, a missed one costs little. So ordinary chatter yields nothing, and
//! only plain first-person statements in the user's own turns are taken.
//!
//! # How a turn is read
//!
//! 1. Only turns whose role is `user` are read; what the assistant said is never a memory.
//! 2. The content is split into sentences (at `.`, `!`, `?` followed by a space or the end, and
//!    at line breaks; "3.5" and "v1.2" are not split). Typographic apostrophes become `'`.
//! 3. Questions are skipped: a sentence ending in `?`, or starting like one ("do I", "is my",
//!    "can you", "what", "how", ...), even without the question mark.
//! 4. A sentence is cut into clauses before ", and I", "but my", "so I'm", "because I", ..., and
//!    at `;`, so "I'm a teacher and I live in Berlin" gives two memories.
//! 5. Leading fillers are dropped ("Oh,", "btw", "By the way,", "Also", "Remember that", ...),
//!    and so are trailing "please"/"thanks"/smileys and end punctuation. Skipped: clauses longer
//!    than 300 characters, clauses opening with a quotation mark (someone else's words) and
//!    jokes ("lol", "haha", "jk", "kidding").
//! 6. The first rule kind that matches the clause wins, in the order below; at most one memory
//!    per clause. Patterns are case-insensitive and anchored at the start of the clause, so
//!    "my friend prefers tea", "he lives in Paris" or "I think I like it" match nothing.
//!    Except for instructions, the clause ends at a comma that opens an aside ("My name is John,
//!    nice to meet you", "I work at night, so answer briefly", "..., I forgot"); commas in lists
//!    and names stay ("tea, coffee, and juice", "Portland, Oregon").
//! 7. In the copied text, first-person words become third-person ("my" → "their", "me" →
//!    "them", "I'm" → "they're", ...) and "your" (the assistant's) becomes "its". Every memory
//!    starts with "User" and ends with a full stop.
//! 8. Memories are de-duplicated on [`normalise`]d content, first occurrence kept.
//!
//! # Rule kinds, in the order they are tried
//!
//! **Standing instructions** → procedural, confidence 0.90:
//! - "(please) always X", "(please) never X", "don't ever X", "you should/must always X",
//!   "I want you to never X" → "User wants the assistant to always/never X."
//! - "from now on(,) X" → "User wants the assistant to X from now on." ("don't X" → "not X")
//! - "whenever C, X" → "User wants the assistant to X whenever C."
//!
//! X must look like an imperative: at least two words, not starting with a pronoun, article,
//! adjective of mood, past form, gerund or third-person verb. So "Always happy to help", "Never
//! mind", "Never heard of it", "Always works for me" are not instructions. A bare imperative
//! ("Use metric units") is a request for the answer at hand, not a standing instruction.
//!
//! **Dated events** → episodic, confidence 0.75, only when the clause holds a date expression:
//! - "I have/I've got/I had a|an|my|the|two ... E ..." where E is an event noun (appointment,
//!   interview, flight, meeting, birthday, exam, trip, call, ...) among the first three words and
//!   not after a preposition ("a question about the meeting" is a question) → "User has ...".
//! - "I'm flying/travelling/moving/visiting/starting/leaving/meeting/attending/graduating ...";
//!   "I'm going to/on" + a capitalised name, an event or a known place ("the dentist"); "I'm
//!   having" + an event → "User is ...".
//! - "I went to (as above)/flew/visited/moved/started/met/attended/graduated/finished ..." →
//!   "User went ..."; "I will/I'll be in/at/away/on ...", "I'll travel/fly/visit/move/start/meet/
//!   attend ..." → "User will ...".
//! - "we are meeting X", "we met X" → "User is meeting X." / "User met X."
//! - "my ... E is/was/got/has/will ..." → "User's ... E is ..."; "my P is/are Y" for a person or
//!   pet P (below) → "User's mom is visiting next week."
//!
//! **Explicit preferences** → declarative, confidence 0.80:
//! - "I (really) prefer/like/love/enjoy/adore/hate/dislike/detest X", "I can't stand X" → "User
//!   (really) prefers X." ...
//! - "I (really) don't like/love/enjoy X" → "User (really) does not like X."
//! - "my favourite/favorite X is Y" → "User's favourite X is Y."
//! - "I'm a (big) fan of X", "I'm not a fan of X" → "User is a (big) fan of X."
//!
//! X must not be a pronoun or about the assistant ("I like it", "I love that idea", "I like your
//! answer", "I love you"), nor point back into the conversation ("the second option", "the first
//! one", "a shorter answer"). "I'd like", "I'd prefer" and "I would" are requests, not
//! preferences.
//!
//! **Self-facts** → declarative, confidence 0.85:
//! - "my name is X" (at most five words) → "User's name is X."
//! - "I'm allergic to X", "I'm vegetarian/vegan/diabetic/left-handed/married/retired/a student/..."
//!   → "User is ...".
//! - "I have a/two P (named N)" for a family member or pet P → "User has a dog named Rex."
//! - "I'm N years old" → "User is N years old."
//! - "I am/I'm a/an X" → "User is a/an X." (not "a bit ...", "a little ...", "an idiot")
//! - "I live in X", "I'm based in X", "I'm from X" → "User lives in X." ...
//! - "I work at/for/as/from X" → "User works at X."
//! - "my X is called/named Y" → "User's X is called Y."
//! - "my X is/are Y" when the head of X is a family member, pet or personal attribute (wife, son,
//!   dog, boss, job, hometown, native language, ...) → "User's X is Y." Other heads ("my point
//!   is", "my code is broken") are conversation, not facts about the user.
//!
//! Date expressions: weekday names (also plural), today, tonight, tomorrow, yesterday,
//! "this/next/last week|weekend|month|year|<weekday>", month-name dates ("March 3", "3rd of
//! March", "Mar. 3"), "in/since/by/until <month>", "in/since <year>", ISO dates (2024-05-01),
//! "on the 5th", "in two weeks"/"in 3 days". A time alone ("at 3pm") is not a date.
//!
//! Confidences are fixed per kind: instructions are the most explicit thing a user says about how
//! to be helped; self-facts are stated plainly but can be jokes or role-play; preferences change
//! more often; events are the most likely to be misread (a date expression in the clause does not
//! guarantee the event is the user's own), and they go stale.

use std::collections::HashSet;
use std::sync::OnceLock;

use regex::Regex;

use self::lexicon::{
    any, clean_word, goes_somewhere, has_date, is_event_noun, is_personal, listed, looks_imperative,
    mentions_assistant, names_an_event, object_ok, preference_object_ok, starts_with_event_noun, starts_with_word,
    CONDITIONS, EVENT_FUTURE, EVENT_GERUNDS, EVENT_PAST, FAMILY_AND_PETS, NOT_A_ROLE, PREFERENCE_ADVERBS,
    PREFERENCE_VERBS, TEENS, TENS, UNITS,
};
use self::text::{clauses, cut_at_comma, is_question, sentences, third_person};
use super::{Category, ExtractedMemory, Turn};
use crate::content::normalise;

pub(crate) mod lexicon;
pub(crate) mod text;

/// "always answer in formal English" and the like.
pub const INSTRUCTION_CONFIDENCE: f32 = 0.9;

/// "my name is Sam", "I live in Berlin".
pub const SELF_FACT_CONFIDENCE: f32 = 0.85;

/// "I prefer tea over coffee".
pub const PREFERENCE_CONFIDENCE: f32 = 0.8;

/// "I have a dentist appointment on Friday".
pub const EVENT_CONFIDENCE: f32 = 0.75;

/// Memories from the user turns of `turns`, in turn and sentence order, without duplicates.
pub fn extract_with_rules(turns: &[Turn]) -> Vec<ExtractedMemory> {
    let mut memories = Vec::new();
    let mut seen = HashSet::new();
    for turn in turns.iter().filter(|t| t.is_user()) {
        for sentence in sentences(&turn.content) {
            if is_question(&sentence) {
                continue;
            }
            for clause in clauses(&sentence) {
                if let Some(mut memory) = extract_clause(&clause) {
                    memory.turns = vec![turn.index];
                    if seen.insert(normalise(&memory.content)) {
                        memories.push(memory);
                    }
                }
            }
        }
    }
    memories
}

/// Whether a sentence holds a standing instruction the rules recognise ("From now on, answer in
/// Portuguese"): such words reach the agent only as a procedural memory, through review.
pub(crate) fn is_instruction(sentence: &str) -> bool {
    clauses(sentence).iter().any(|clause| instruction(clause).is_some())
}

fn extract_clause(clause: &str) -> Option<ExtractedMemory> {
    let memory = |category, content: String, confidence| ExtractedMemory {
        category,
        content,
        confidence,
        turns: Vec::new(),
    };
    // Instructions keep their commas ("whenever C, X"; "never use emojis, unless I ask").
    if let Some(text) = instruction(clause) {
        return Some(memory(Category::Procedural, text, INSTRUCTION_CONFIDENCE));
    }
    let clause = cut_at_comma(clause);
    if let Some(text) = event(clause) {
        return Some(memory(Category::Episodic, text, EVENT_CONFIDENCE));
    }
    if let Some(text) = preference(clause) {
        return Some(memory(Category::Declarative, text, PREFERENCE_CONFIDENCE));
    }
    self_fact(clause).map(|text| memory(Category::Declarative, text, SELF_FACT_CONFIDENCE))
}

struct Patterns {
    // Instructions.
    directive: Regex,
    from_now_on: Regex,
    whenever: Regex,
    // Events.
    have: Regex,
    am_doing: Regex,
    did: Regex,
    will: Regex,
    we_meet: Regex,
    my_event: Regex,
    // Preferences.
    favourite: Regex,
    dont_like: Regex,
    like: Regex,
    fan_of: Regex,
    // Self-facts.
    name: Regex,
    has_family: Regex,
    condition: Regex,
    age: Regex,
    i_am_a: Regex,
    lives: Regex,
    works: Regex,
    my_called: Regex,
    my_x_is: Regex,
}

fn patterns() -> &'static Patterns {
    static PATTERNS: OnceLock<Patterns> = OnceLock::new();
    PATTERNS.get_or_init(|| {
        let re = |pattern: &str| Regex::new(&format!("(?i){pattern}")).expect("rules pattern");
        let i_am = r"^i(?:\s+am|'m)\s+";
        let i_have = r"^i(?:'ve\s+got|\s+have\s+got|\s+have)";
        Patterns {
            directive: re(concat!(
                r"^(?:please,?\s+)?",
                r"(?:(?:you\s+(?:should|must|need\s+to|have\s+to)|i\s+want\s+you\s+to|i'd\s+like\s+you\s+to)\s+)?",
                r"(?:(always|never)\s+|(don't|do\s+not)\s+(ever\s+)?)?",
                r"(?:please,?\s+)?(.+)$",
            )),
            from_now_on: re(r"^from\s+now\s+on,?\s+(.+)$"),
            whenever: re(r"^whenever\s+([^,]+),\s*(.+)$"),

            have: re(r"^i(?:'ve\s+got|\s+have\s+got|\s+have|\s+(had))\s+(.+)$"),
            am_doing: re(&format!(r"{i_am}({})\s+(.+)$", any(EVENT_GERUNDS))),
            did: re(&format!(r"^i\s+({})\s+(.+)$", any(EVENT_PAST))),
            will: re(&format!(r"^i(?:\s+will|'ll)\s+({})\s+(.+)$", any(EVENT_FUTURE))),
            we_meet: re(r"^we(?:\s+are\s+meeting|'re\s+meeting|\s+(met))\s+(.+)$"),
            // "my" + up to three modifiers + the head noun + a verb and the rest.
            my_event: re(concat!(
                r"^my\s+((?:[\w'-]+\s+){0,3}?)([\w-]+)\s+",
                r"((?:is|was|are|were|has|had|got|will|starts|begins|moved)\b.*)$",
            )),

            favourite: re(r"^my\s+((?:all[- ]time\s+)?favou?rite)\s+((?:[\w'-]+\s+){0,3}?[\w'-]+)\s+(is|are)\s+(.+)$"),
            dont_like: re(&format!(
                r"^i\s+(?:({})\s+)?(?:don't|do\s+not)\s+(?:really\s+)?(like|love|enjoy)\s+(.+)$",
                any(PREFERENCE_ADVERBS)
            )),
            like: re(&format!(
                r"^i\s+(?:({})\s+)?({})\s+(.+)$",
                any(PREFERENCE_ADVERBS),
                any(PREFERENCE_VERBS)
            )),
            fan_of: re(&format!(
                r"{i_am}(not\s+)?(?:a\s+)?((?:big\s+|huge\s+|great\s+)?fan\s+of)\s+(.+)$"
            )),

            name: re(r"^my\s+name(?:\s+is|'s)\s+(.+)$"),
            // "I have" + a count + at most one adjective + the noun + an optional name.
            has_family: re(&format!(
                concat!(
                    r"{i_have}\s+((?:a|an|one|two|three|four|five|\d)\s+(?:[\w-]+\s+)?([\w-]+))",
                    r"(?:\s+(?:named|called)\s+(.+))?$",
                ),
                i_have = i_have
            )),
            condition: re(&format!(r"{i_am}({})$", any(CONDITIONS))),
            age: re(&format!(
                r"{i_am}(\d{{1,3}}|{}(?:[- ]{})?|{})\s+(years?\s+old|yo)$",
                any(TENS),
                any(UNITS),
                any(TEENS)
            )),
            i_am_a: re(&format!(r"{i_am}(an?)\s+(.+)$")),
            lives: re(concat!(
                r"^i(?:\s+(live)\s+in|\s+am\s+(based)\s+in|'m\s+(based)\s+in|\s+am\s+(from)|'m\s+(from))",
                r"\s+(.+)$",
            )),
            works: re(r"^i\s+work\s+(at|for|as|from)\s+(.+)$"),
            my_called: re(r"^my\s+((?:[\w'-]+\s+){0,2}?[\w'-]+)\s+(is|are)\s+(called|named)\s+(.+)$"),
            my_x_is: re(r"^my\s+((?:[\w'-]+\s+){0,2}?[\w'-]+)\s+(is|are)\s+(.+)$"),
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Rule kinds.

fn instruction(clause: &str) -> Option<String> {
    let p = patterns();
    if let Some(caps) = p.from_now_on.captures(clause) {
        let action = directive(&caps[1], false)?;
        return Some(format!("User wants the assistant to {action} from now on."));
    }
    if let Some(caps) = p.whenever.captures(clause) {
        let condition = caps[1].trim();
        let action = directive(&caps[2], false)?;
        return Some(format!(
            "User wants the assistant to {action} whenever {}.",
            third_person(condition)
        ));
    }
    let action = directive(clause, true)?;
    Some(format!("User wants the assistant to {action}."))
}

/// "please always use X" → "always use X", "don't ever X" → "never X", "don't X" → "not X" (only
/// when `need_adverb` is false: a bare "don't worry" is chatter, not a standing instruction).
fn directive(text: &str, need_adverb: bool) -> Option<String> {
    let caps = patterns().directive.captures(text.trim())?;
    let adverb = match (caps.get(1), caps.get(2), caps.get(3)) {
        (Some(a), _, _) => Some(a.as_str().to_lowercase()),
        (None, Some(_), Some(_)) => Some("never".to_string()),
        (None, Some(_), None) if !need_adverb => Some("not".to_string()),
        (None, None, None) if !need_adverb => None,
        _ => return None,
    };
    let action = caps.get(4)?.as_str().trim();
    if !looks_imperative(action) {
        return None;
    }
    let action = third_person(action);
    Some(match adverb {
        Some(adverb) => format!("{adverb} {action}"),
        None => action,
    })
}

fn event(clause: &str) -> Option<String> {
    let p = patterns();
    if !has_date(clause) {
        return None;
    }
    if let Some(caps) = p.have.captures(clause) {
        let verb = if caps.get(1).is_some() { "had" } else { "has" };
        let rest = &caps[2];
        return names_an_event(rest).then(|| format!("User {verb} {}.", third_person(rest)));
    }
    if let Some(caps) = p.am_doing.captures(clause) {
        let verb = caps[1].to_lowercase();
        let rest = &caps[2];
        let fits = match verb.as_str() {
            "going" => goes_somewhere(rest),
            "having" => starts_with_event_noun(rest) || names_an_event(rest),
            "starting" => !starts_with_word(rest, "to") && object_ok(rest),
            _ => object_ok(rest),
        };
        return fits.then(|| format!("User is {verb} {}.", third_person(rest)));
    }
    if let Some(caps) = p.did.captures(clause) {
        let verb = caps[1].to_lowercase();
        let rest = &caps[2];
        let fits = if verb == "went" {
            goes_somewhere(rest)
        } else {
            object_ok(rest)
        };
        return fits.then(|| format!("User {verb} {}.", third_person(rest)));
    }
    if let Some(caps) = p.will.captures(clause) {
        let rest = &caps[2];
        return object_ok(rest).then(|| format!("User will {} {}.", caps[1].to_lowercase(), third_person(rest)));
    }
    if let Some(caps) = p.we_meet.captures(clause) {
        let rest = &caps[2];
        let verb = if caps.get(1).is_some() { "met" } else { "is meeting" };
        return object_ok(rest).then(|| format!("User {verb} {}.", third_person(rest)));
    }
    if let Some(caps) = p.my_x_is.captures(clause) {
        // "my mom is visiting next week": a dated statement about the user's people is an event.
        let (what, value) = (&caps[1], &caps[3]);
        if is_personal(what) && object_ok(value) && !is_event_noun(what.split_whitespace().last().unwrap_or("")) {
            return Some(format!(
                "User's {} {} {}.",
                third_person(what),
                caps[2].to_lowercase(),
                third_person(value)
            ));
        }
    }
    if let Some(caps) = p.my_event.captures(clause) {
        if is_event_noun(&caps[2]) && !mentions_assistant(&caps[1]) {
            // The words before the event noun ("job" in "my job interview"), if any.
            let modifiers: String = caps[1]
                .split_whitespace()
                .map(|w| format!("{} ", third_person(w)))
                .collect();
            return Some(format!("User's {modifiers}{} {}.", &caps[2], third_person(&caps[3])));
        }
    }
    None
}

fn preference(clause: &str) -> Option<String> {
    let p = patterns();
    if let Some(caps) = p.favourite.captures(clause) {
        let (thing, value) = (&caps[2], &caps[4]);
        return (object_ok(value) && !mentions_assistant(thing)).then(|| {
            format!(
                "User's {} {} {} {}.",
                caps[1].to_lowercase(),
                third_person(thing),
                caps[3].to_lowercase(),
                third_person(value)
            )
        });
    }
    if let Some(caps) = p.dont_like.captures(clause) {
        let object = &caps[3];
        return preference_object_ok(object).then(|| {
            format!(
                "User {}does not {} {}.",
                with_space(caps.get(1).map(|m| m.as_str())),
                caps[2].to_lowercase(),
                third_person(object)
            )
        });
    }
    if let Some(caps) = p.like.captures(clause) {
        let object = &caps[3];
        let verb = caps[2].to_lowercase();
        let verb = if verb.contains("stand") {
            "can't stand".to_string()
        } else {
            format!("{verb}s")
        };
        return preference_object_ok(object).then(|| {
            format!(
                "User {}{verb} {}.",
                with_space(caps.get(1).map(|m| m.as_str())),
                third_person(object)
            )
        });
    }
    if let Some(caps) = p.fan_of.captures(clause) {
        let object = &caps[3];
        // The article is written back even when the user left it out ("I'm big fan of X").
        let not = if caps.get(1).is_some() { "not " } else { "" };
        return preference_object_ok(object)
            .then(|| format!("User is {not}a {} {}.", caps[2].to_lowercase(), third_person(object)));
    }
    None
}

fn self_fact(clause: &str) -> Option<String> {
    let p = patterns();
    if let Some(caps) = p.name.captures(clause) {
        let name = &caps[1];
        let ok = name.split_whitespace().count() <= 5 && object_ok(name) && !starts_with_word(name, "not");
        return ok.then(|| format!("User's name is {name}."));
    }
    if let Some(caps) = p.condition.captures(clause) {
        return Some(format!("User is {}.", third_person(&caps[1])));
    }
    if let Some(caps) = p.has_family.captures(clause) {
        let head = clean_word(&caps[2]);
        let singular = head.strip_suffix('s').unwrap_or(&head);
        let named = caps.get(3).map(|m| m.as_str());
        let ok = (listed(FAMILY_AND_PETS, &head) || listed(FAMILY_AND_PETS, singular))
            && named.is_none_or(|n| object_ok(n) && n.split_whitespace().count() <= 3);
        return ok.then(|| match named {
            Some(name) => format!("User has {} named {name}.", &caps[1]),
            None => format!("User has {}.", &caps[1]),
        });
    }
    if let Some(caps) = p.age.captures(clause) {
        return Some(format!("User is {} {}.", &caps[1], caps[2].to_lowercase()));
    }
    if let Some(caps) = p.i_am_a.captures(clause) {
        let what = &caps[2];
        let ok = object_ok(what) && !mentions_assistant(what) && !starts_with_word(what, NOT_A_ROLE);
        return ok.then(|| format!("User is {} {}.", caps[1].to_lowercase(), third_person(what)));
    }
    if let Some(caps) = p.lives.captures(clause) {
        let place = &caps[6];
        let phrase = if caps.get(1).is_some() {
            "lives in"
        } else if caps.get(2).or(caps.get(3)).is_some() {
            "is based in"
        } else {
            "is from"
        };
        return object_ok(place).then(|| format!("User {phrase} {}.", third_person(place)));
    }
    if let Some(caps) = p.works.captures(clause) {
        let place = &caps[2];
        return object_ok(place).then(|| format!("User works {} {}.", caps[1].to_lowercase(), third_person(place)));
    }
    if let Some(caps) = p.my_called.captures(clause) {
        let (what, name) = (&caps[1], &caps[4]);
        let ok = !mentions_assistant(what) && object_ok(name) && name.split_whitespace().count() <= 5;
        return ok.then(|| {
            format!(
                "User's {} {} {} {name}.",
                third_person(what),
                caps[2].to_lowercase(),
                caps[3].to_lowercase()
            )
        });
    }
    if let Some(caps) = p.my_x_is.captures(clause) {
        let (what, value) = (&caps[1], &caps[3]);
        return (is_personal(what) && object_ok(value)).then(|| {
            format!(
                "User's {} {} {}.",
                third_person(what),
                caps[2].to_lowercase(),
                third_person(value)
            )
        });
    }
    None
}

fn with_space(adverb: Option<&str>) -> String {
    adverb.map(|a| format!("{} ", a.to_lowercase())).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(content: &str) -> Vec<Turn> {
        vec![Turn::new(0, "user", content)]
    }

    /// Contents extracted from one user turn.
    fn contents(text: &str) -> Vec<String> {
        extract_with_rules(&user(text)).into_iter().map(|m| m.content).collect()
    }

    /// The single memory extracted from one user turn.
    fn one(text: &str) -> ExtractedMemory {
        let mut memories = extract_with_rules(&user(text));
        assert_eq!(memories.len(), 1, "{text:?} gave {memories:?}");
        memories.remove(0)
    }

    fn assert_one(text: &str, category: Category, expected: &str) {
        let memory = one(text);
        assert_eq!(memory.content, expected, "{text:?}");
        assert_eq!(memory.category, category, "{text:?}");
    }

    fn assert_none(text: &str) {
        assert_eq!(contents(text), Vec::<String>::new(), "{text:?} should yield nothing");
    }

    #[test]
    fn preferences() {
        let d = Category::Declarative;
        assert_one("I prefer tea over coffee", d, "User prefers tea over coffee.");
        assert_one("I like jazz.", d, "User likes jazz.");
        assert_one(
            "i really love hiking in the Alps!",
            d,
            "User really loves hiking in the Alps.",
        );
        assert_one("I enjoy cooking Thai food", d, "User enjoys cooking Thai food.");
        assert_one("I hate Mondays.", d, "User hates Mondays.");
        assert_one("I dislike loud music", d, "User dislikes loud music.");
        assert_one("I can't stand cilantro", d, "User can't stand cilantro.");
        assert_one("I don't like spicy food.", d, "User does not like spicy food.");
        assert_one(
            "I really do not enjoy meetings",
            d,
            "User really does not enjoy meetings.",
        );
        assert_one("My favourite colour is green.", d, "User's favourite colour is green.");
        assert_one("my favorite band is Radiohead", d, "User's favorite band is Radiohead.");
        assert_one("I like my coffee black", d, "User likes their coffee black.");
        assert_one(
            "I'm a big fan of Italian cinema",
            d,
            "User is a big fan of Italian cinema.",
        );
        assert_one("I'm not a fan of horror films", d, "User is not a fan of horror films.");
        assert_one("I like to hike on weekends", d, "User likes to hike on weekends.");
        assert_one(
            "I like tea, coffee, and juice.",
            d,
            "User likes tea, coffee, and juice.",
        );
        assert_one(
            "Not really, I prefer cats over dogs.",
            d,
            "User prefers cats over dogs.",
        );
        assert_one("I prefer dark mode.", d, "User prefers dark mode.");
        // The third party's preference is not the user's.
        assert_one(
            "I like dogs more than cats, my wife prefers cats.",
            d,
            "User likes dogs more than cats.",
        );
        assert_eq!(one("I prefer tea").confidence, PREFERENCE_CONFIDENCE);
    }

    #[test]
    fn not_preferences() {
        for text in [
            "I like it.",
            "I love that idea!",
            "I like this a lot",
            "I like your answer.",
            "I love you",
            "I like how you explained that.",
            "I hate when that happens.",
            "I'd prefer a window seat.",
            "I would love a summary.",
            "I'd like a shorter version",
            "Do I like coffee?",
            "I like tea?",
            "do i prefer tea",
            "My friend prefers tea over coffee.",
            "My wife likes coffee.",
            "He likes jazz.",
            "She said she hates Mondays.",
            "I think I prefer the second option.",
            "\"I prefer tea\", my friend said.",
            "My favourite part is that it works.",
            "I like the way you write.",
            "I like the second option better.",
            "I prefer the first one.",
            "I prefer a shorter answer.",
            "I love the new update you made yesterday.",
        ] {
            assert_none(text);
        }
    }

    #[test]
    fn self_facts() {
        let d = Category::Declarative;
        assert_one("My name is Sam Lee.", d, "User's name is Sam Lee.");
        assert_one("my name's sam", d, "User's name is sam.");
        assert_one(
            "Hi, I'm a software engineer at Google.",
            d,
            "User is a software engineer at Google.",
        );
        assert_one("I am an early riser", d, "User is an early riser.");
        assert_one("I live in Berlin.", d, "User lives in Berlin.");
        assert_one("I'm based in Lisbon", d, "User is based in Lisbon.");
        assert_one("I'm from Brazil.", d, "User is from Brazil.");
        assert_one("I work at Acme Corp.", d, "User works at Acme Corp.");
        assert_one("I work for myself", d, "User works for themselves.");
        assert_one("I work as a nurse", d, "User works as a nurse.");
        assert_one("I'm 34 years old.", d, "User is 34 years old.");
        assert_one("I am thirty-two years old", d, "User is thirty-two years old.");
        assert_one("My dog is called Rex.", d, "User's dog is called Rex.");
        assert_one("my cat is named Miso", d, "User's cat is named Miso.");
        assert_one("My dog's name is Rex", d, "User's dog's name is Rex.");
        assert_one("My wife is a doctor.", d, "User's wife is a doctor.");
        assert_one("My parents are from Italy", d, "User's parents are from Italy.");
        assert_one(
            "My native language is Portuguese.",
            d,
            "User's native language is Portuguese.",
        );
        assert_one("By the way, I’m a teacher.", d, "User is a teacher.");
        assert_one("Hi there, I'm a nurse.", d, "User is a nurse.");
        assert_one("My name is John, nice to meet you!", d, "User's name is John.");
        assert_one("I live in Portland, Oregon.", d, "User lives in Portland, Oregon.");
        assert_one("I work at night, so answer briefly.", d, "User works at night.");
        assert_one("I work from home most days", d, "User works from home most days.");
        assert_one("I have a dog named Rex.", d, "User has a dog named Rex.");
        assert_one("I have two kids", d, "User has two kids.");
        assert_one(
            "Remember that I'm allergic to peanuts.",
            d,
            "User is allergic to peanuts.",
        );
        assert_one("I'm vegetarian, so no meat recipes please.", d, "User is vegetarian.");
        assert_one("I'm colorblind.", d, "User is colorblind.");
        assert_one("I am twenty-two years old", d, "User is twenty-two years old.");
        assert_eq!(one("I live in Oslo").confidence, SELF_FACT_CONFIDENCE);
    }

    #[test]
    fn not_self_facts() {
        for text in [
            "I'm a bit tired.",
            "I'm a little confused by this",
            "I'm not a doctor.",
            "My point is that it doesn't work.",
            "My code is broken.",
            "My question is simple.",
            "My friend is a doctor.",
            "What is my name?",
            "Is my dog called Rex?",
            "Do I live in Berlin",
            "She lives in Paris.",
            "My sister lives in Rome.",
            "He works at Google.",
            "My name is not important.",
            "I'm a fan of your work.",
            "My name is Sam and this is a very long story about many things",
            "I have a boss who hates me.",
            "I have a headache.",
            "I'm from the future lol",
            "I'm an idiot, I forgot the semicolon.",
            "I'm tired today.",
            "I'm writing a novel.",
        ] {
            assert_none(text);
        }
    }

    #[test]
    fn instructions() {
        let p = Category::Procedural;
        assert_one(
            "Always answer in formal English.",
            p,
            "User wants the assistant to always answer in formal English.",
        );
        assert_one("Never use emojis!", p, "User wants the assistant to never use emojis.");
        assert_one(
            "Please always cite your sources.",
            p,
            "User wants the assistant to always cite its sources.",
        );
        assert_one(
            "please never call me Bob",
            p,
            "User wants the assistant to never call them Bob.",
        );
        assert_one("Don't ever use tabs.", p, "User wants the assistant to never use tabs.");
        assert_one(
            "From now on, answer in Spanish please.",
            p,
            "User wants the assistant to answer in Spanish from now on.",
        );
        assert_one(
            "from now on don't use bullet points",
            p,
            "User wants the assistant to not use bullet points from now on.",
        );
        assert_one(
            "From now on, always show units.",
            p,
            "User wants the assistant to always show units from now on.",
        );
        assert_one(
            "Whenever I ask for code, use Rust.",
            p,
            "User wants the assistant to use Rust whenever they ask for code.",
        );
        assert_one(
            "Whenever I'm stuck, please give me a hint first",
            p,
            "User wants the assistant to give them a hint first whenever they're stuck.",
        );
        assert_one(
            "You should always double-check dates.",
            p,
            "User wants the assistant to always double-check dates.",
        );
        assert_one(
            "I want you to never mention prices",
            p,
            "User wants the assistant to never mention prices.",
        );
        assert_one(
            "Always discuss trade-offs",
            p,
            "User wants the assistant to always discuss trade-offs.",
        );
        assert_one(
            "Please always respond in Spanish, gracias.",
            p,
            "User wants the assistant to always respond in Spanish.",
        );
        assert_one(
            "Never use emojis, unless I ask for them.",
            p,
            "User wants the assistant to never use emojis, unless they ask for them.",
        );
        assert_eq!(one("Always use metric units.").confidence, INSTRUCTION_CONFIDENCE);
    }

    #[test]
    fn not_instructions() {
        for text in [
            "Always happy to help!",
            "Never mind.",
            "Never again!",
            "Never heard of it.",
            "Always works for me.",
            "It always breaks.",
            "I always drink tea.",
            "You always say that.",
            "Always?",
            "Can you always answer in English?",
            "Could you never do that again",
            "Don't worry about it.",
            "Whenever I go there, it rains.",
            "From now on I will be working remotely.",
            "Never stop.",
            "Always being late is annoying.",
            "Never liked that song.",
            // A bare imperative is a request for this answer, not a standing instruction.
            "Use metric units.",
            "Keep answers under 100 words.",
        ] {
            assert_none(text);
        }
    }

    #[test]
    fn events() {
        let e = Category::Episodic;
        assert_one(
            "I have a dentist appointment on Friday at 3pm",
            e,
            "User has a dentist appointment on Friday at 3pm.",
        );
        assert_one(
            "I had a job interview yesterday.",
            e,
            "User had a job interview yesterday.",
        );
        assert_one(
            "I've got a meeting with my boss tomorrow",
            e,
            "User has a meeting with their boss tomorrow.",
        );
        assert_one(
            "My flight is on March 3 at 9am.",
            e,
            "User's flight is on March 3 at 9am.",
        );
        assert_one("My birthday is on the 5th.", e, "User's birthday is on the 5th.");
        assert_one(
            "My job interview got moved to next Monday",
            e,
            "User's job interview got moved to next Monday.",
        );
        assert_one(
            "We are meeting the client next Tuesday.",
            e,
            "User is meeting the client next Tuesday.",
        );
        assert_one(
            "I'm flying to Paris next week.",
            e,
            "User is flying to Paris next week.",
        );
        assert_one(
            "I'm visiting my parents next weekend",
            e,
            "User is visiting their parents next weekend.",
        );
        assert_one(
            "I'm going to the dentist tomorrow.",
            e,
            "User is going to the dentist tomorrow.",
        );
        assert_one(
            "I'm going on vacation in two weeks",
            e,
            "User is going on vacation in two weeks.",
        );
        assert_one(
            "I have a conference on 2024-05-01.",
            e,
            "User has a conference on 2024-05-01.",
        );
        assert_one("I have an exam on the 12th", e, "User has an exam on the 12th.");
        assert_one("I went to Rome last month.", e, "User went to Rome last month.");
        assert_one("I started a new job in March", e, "User started a new job in March.");
        assert_one("I'll be in London next week", e, "User will be in London next week.");
        assert_one("I'm having surgery on Monday.", e, "User is having surgery on Monday.");
        assert_one("We met Anna yesterday", e, "User met Anna yesterday.");
        assert_one("My mom is visiting next week.", e, "User's mom is visiting next week.");
        assert_eq!(one("I have a call tomorrow").confidence, EVENT_CONFIDENCE);
    }

    #[test]
    fn not_events() {
        for text in [
            "I have a meeting.",
            "I have a question about tomorrow.",
            "I have a question about my flight tomorrow.",
            "I have a lot of meetings today.",
            "I had a great time yesterday.",
            "I'm having a bad day today.",
            "Do I have a meeting tomorrow?",
            "do i have a meeting tomorrow",
            "What is on Friday?",
            "My friend has a dentist appointment on Friday.",
            "Her flight is on March 3.",
            "I'm going to try it tomorrow.",
            "I'm going to bed tonight.",
            "I went there yesterday.",
            "I'm starting to think it was yesterday.",
            "I'm meeting you tomorrow.",
            "The weather was nice yesterday.",
            "I may come later today.",
            "My team is meeting on Friday.",
            "I have a cold today.",
        ] {
            assert_none(text);
        }
    }

    #[test]
    fn ordinary_chatter_yields_nothing() {
        let chatter = [
            Turn::new(0, "user", "Hi there! How are you today?"),
            Turn::new(1, "assistant", "I'm great, thanks! I love helping. How can I help?"),
            Turn::new(2, "user", "Can you help me write an email to my landlord?"),
            Turn::new(3, "user", "Thanks, that's really helpful. Sure, sounds good."),
            Turn::new(4, "user", "I think that's right. OK. lol"),
            Turn::new(5, "user", "It was good. Let's meet tomorrow. I'm not sure."),
            Turn::new(6, "user", "What's the weather tomorrow? I need to go now."),
            Turn::new(7, "user", "Hmm, interesting. The price is 3.5 dollars, v1.2 is out."),
            Turn::new(8, "user", "Please summarise the article above in three bullet points."),
            Turn::new(9, "user", "My point is that the build keeps failing since yesterday."),
            Turn::new(10, "user", "I'd like a shorter version, please."),
            Turn::new(11, "user", "```\nfn main() { println!(\"I like Rust\") }\n```"),
        ];
        assert_eq!(extract_with_rules(&chatter), Vec::new());
    }

    #[test]
    fn only_user_turns_count() {
        let turns = [
            Turn::new(0, "assistant", "I prefer tea over coffee."),
            Turn::new(1, "system", "Always answer in formal English."),
            Turn::new(2, "tool", "My name is Sam."),
            Turn::new(3, "User", "I live in Berlin."),
        ];
        let memories = extract_with_rules(&turns);
        assert_eq!(memories.len(), 1);
        assert_eq!(memories[0].content, "User lives in Berlin.");
    }

    #[test]
    fn several_memories_per_turn_in_order() {
        assert_eq!(
            contents(
                "Hi! I'm a teacher and I live in Berlin. Always answer briefly; I prefer tea over coffee.\n\
                 Also I have a dentist appointment on Friday."
            ),
            vec![
                "User is a teacher.",
                "User lives in Berlin.",
                "User wants the assistant to always answer briefly.",
                "User prefers tea over coffee.",
                "User has a dentist appointment on Friday.",
            ]
        );
    }

    #[test]
    fn categories_and_confidences_per_kind() {
        let memories = extract_with_rules(&user(
            "Never use emojis. My name is Ada. I love opera. I have a flight tomorrow.",
        ));
        let kinds: Vec<(Category, f32)> = memories.iter().map(|m| (m.category, m.confidence)).collect();
        assert_eq!(
            kinds,
            vec![
                (Category::Procedural, 0.9),
                (Category::Declarative, 0.85),
                (Category::Declarative, 0.8),
                (Category::Episodic, 0.75),
            ]
        );
    }

    #[test]
    fn duplicates_across_turns_are_kept_once() {
        let turns = [
            Turn::new(0, "user", "I prefer tea over coffee."),
            Turn::new(1, "assistant", "Noted."),
            Turn::new(2, "user", "i prefer  TEA over coffee!"),
            Turn::new(3, "user", "Honestly, I prefer tea over coffee"),
        ];
        let memories = extract_with_rules(&turns);
        assert_eq!(memories.len(), 1, "{memories:?}");
        assert_eq!(memories[0].content, "User prefers tea over coffee.");
    }
}
