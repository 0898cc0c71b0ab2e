//! Word lists and the checks built on them: what counts as a date, an event, a person of the
//! user's household, an imperative, a pronoun object. Kept apart from the rules so the lists can
//! grow without burying the patterns.
//!
//! Lists are `|`-separated strings rather than arrays: rustfmt would give every word its own line.

use std::sync::OnceLock;

use regex::Regex;

const WEEKDAY: &str = r"(?:mon|tues|wednes|thurs|fri|satur|sun)day";

const MONTH: &str = r"(?:january|february|march|april|may|june|july|august|september|october|november|december)";

const MONTH_ABBR: &str = r"(?:jan|feb|mar|apr|jun|jul|aug|sept?|oct|nov|dec)\.?";

/// Verbs of "I'm ...ing" that announce an event when a date follows.
pub(super) const EVENT_GERUNDS: &str = "flying|travelling|traveling|moving|visiting|starting|leaving|meeting|\
    attending|relocating|graduating|getting married|going|having";

pub(super) const EVENT_PAST: &str = "went|flew|visited|moved|started|met|attended|graduated|got married|celebrated|\
    finished";

/// What follows "I will"/"I'll" in an event.
pub(super) const EVENT_FUTURE: &str = "be in|be at|be away|be on|be off|be out of|be back in|travel|fly|visit|move|\
    start|meet|attend";

pub(super) const PREFERENCE_ADVERBS: &str = "really|truly|absolutely|definitely|generally|usually|much|strongly|\
    totally|kind of|kinda";

pub(super) const PREFERENCE_VERBS: &str = "prefer|like|love|enjoy|adore|hate|dislike|detest|can't stand|cannot stand";

/// "I'm ..." complements that are lasting facts about the user. Entries are regex fragments.
pub(super) const CONDITIONS: &str = "allergic to .+|severely allergic to .+|very allergic to .+|lactose intolerant|\
    lactose-intolerant|gluten intolerant|gluten-intolerant|vegan|vegetarian|pescatarian|diabetic|colou?rblind|\
    colou?r blind|colou?r-blind|left-handed|right-handed|deaf|hard of hearing|dyslexic|pregnant|retired|married|\
    divorced|single|self-employed|unemployed|a student";

/// Ages in words: "twenty-two", "thirty one", "seventeen".
pub(super) const TENS: &str = "twenty|thirty|forty|fifty|sixty|seventy|eighty|ninety";
pub(super) const UNITS: &str = "one|two|three|four|five|six|seven|eight|nine";
pub(super) const TEENS: &str = "ten|eleven|twelve|thirteen|fourteen|fifteen|sixteen|seventeen|eighteen|nineteen";

/// A `|`-separated list as a non-capturing regex alternation; a space inside an entry matches any
/// whitespace. Longest entries first: the regex crate takes the first alternative that leads to
/// a match, so "hi" would otherwise win over "hi there".
pub(super) fn any(list: &str) -> String {
    let mut alternatives: Vec<String> = list.split('|').map(|w| w.replace(' ', r"\s+")).collect();
    alternatives.sort_by_key(|a| std::cmp::Reverse(a.len()));
    format!("(?:{})", alternatives.join("|"))
}

/// Whether `word` is an entry of the `|`-separated `list`.
pub(crate) fn listed(list: &str, word: &str) -> bool {
    list.split('|').any(|w| w == word)
}

/// Objects that make a statement about the conversation rather than the user: "I like it",
/// "I love that", "my favourite part is when...".
pub(super) const PRONOUN_STARTS: &str = "it|it's|its|this|that|these|those|you|your|yours|him|her|them|what|how|when|\
    where|why|which|who|whatever|here|there|so|too|u|ur";

/// Words after "I'm a" that describe a passing state, not who the user is.
pub(super) const NOT_A_ROLE: &str = "bit|little|lot|tad|while|moment|minute|second|sec|few|couple|idiot|moron|dummy";

/// Heads of "my X is Y" that describe the user's own world. Anything else ("my point is", "my
/// code is broken", "my question is") is conversation, not a fact about the user.
pub(super) const PERSONAL_NOUNS: &str = "wife|husband|partner|boyfriend|girlfriend|fiance|fiancé|fiancee|fiancée|\
    spouse|son|daughter|kid|kids|child|children|baby|brother|sister|siblings|mother|mom|mum|father|dad|parents|\
    grandmother|grandma|grandfather|grandpa|grandparents|aunt|uncle|cousin|niece|nephew|dog|cat|pet|pets|puppy|kitten|\
    boss|manager|employer|company|job|occupation|profession|role|hometown|birthday|nationality|language|tongue|\
    timezone|zone|diet|allergy|allergies|religion|pronouns|major|degree|age";

/// What "I have a/two ..." may name as a self-fact: people and animals of the user's household.
pub(super) const FAMILY_AND_PETS: &str = "wife|husband|partner|boyfriend|girlfriend|son|daughter|kid|child|children|\
    baby|brother|sister|sibling|twin|stepson|stepdaughter|dog|cat|puppy|kitten|parrot|rabbit|hamster|horse|pet|\
    grandchild|grandson|granddaughter";

/// Things that happen on a date.
pub(super) const EVENT_NOUNS: &str = "appointment|interview|meeting|flight|birthday|exam|wedding|surgery|operation|\
    trip|party|deadline|class|lesson|presentation|call|concert|conference|vacation|holiday|checkup|check-up|date|\
    dinner|lunch|reservation|session|match|game|recital|graduation|anniversary|ceremony|visit|review|demo|talk|race|\
    marathon|funeral|shift|hearing|show|performance|workshop|seminar|webinar|standup|stand-up|retreat|festival|\
    exhibition|move|treatment|therapy";

/// Where people go on a date, besides capitalised names: "I'm going to the dentist tomorrow".
pub(super) const PLACES: &str = "dentist|doctor|doctor's|dentist's|hospital|vet|gym|office|airport|beach|mountains|\
    theater|theatre|cinema|movies|school|university|college|church|clinic|museum|zoo|countryside|coast|lake";

/// Words that end a noun phrase: "a question about the meeting" is not a meeting.
pub(super) const PREPOSITIONS: &str = "about|for|regarding|on|with|of|to|in|at|from|by|like|than|and|or|but|that|which";

pub(super) const DETERMINERS: &str = "a|an|my|the|another|our|one|two|three";

/// First words after "always"/"never" that show the sentence is not an instruction.
pub(super) const NOT_IMPERATIVE: &str = "the|a|an|this|that|these|those|it|it's|its|i|i'm|we|you|you're|he|she|they|\
    my|our|your|his|her|their|there|here|so|such|be|been|being|was|were|is|are|am|has|had|have|did|does|done|mind|\
    again|ever|more|less|too|happy|glad|good|great|nice|fun|same|late|early|busy|sure|know|knew|thought|heard|seen|\
    saw|said|got|gone|felt|met|made|came|went|took|gave|ran|found|told|worth|enough|once|twice|on|in|at|for|with|of|\
    to|about|like|as|when|if|because|and|or|but|not|yes|no|ok|okay|something|anything|nothing|everything|someone|\
    anyone|everyone|nobody|all|always|never|lol|haha|thanks|thank|forgotten";

/// Imperatives that end like past tenses or gerunds.
pub(super) const IMPERATIVE_EXCEPTIONS: &str = "embed|feed|proceed|exceed|succeed|speed|shred|seed|heed|bring|ring|\
    sing";

pub(super) fn first_word(text: &str) -> String {
    text.split_whitespace()
        .next()
        .unwrap_or("")
        .trim_matches(|c: char| !c.is_alphanumeric() && c != '\'' && c != '-')
        .to_lowercase()
}

pub(super) fn starts_with_word(text: &str, list: &str) -> bool {
    listed(list, &first_word(text))
}

pub(crate) fn words_lower(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split_whitespace().map(|w| {
        w.trim_matches(|c: char| !c.is_alphanumeric() && c != '\'' && c != '-')
            .to_lowercase()
    })
}

pub(super) fn mentions_assistant(text: &str) -> bool {
    words_lower(text).any(|w| matches!(w.as_str(), "you" | "your" | "yours" | "you're" | "u" | "ur"))
}

/// A complement worth copying: has a letter and does not start with a pronoun.
pub(super) fn object_ok(text: &str) -> bool {
    text.chars().any(char::is_alphabetic) && !starts_with_word(text, PRONOUN_STARTS)
}

/// Objects that point back into the conversation ("the second option", "the first one", "the
/// new version") are choices of the moment, not preferences worth remembering.
pub(super) fn preference_object_ok(object: &str) -> bool {
    const VAGUE: &str = "the idea|the way|to think|to believe|to say|to know|to hear|hearing";
    const DEICTIC: &str = "first|second|third|fourth|last|latter|former|other|previous|next|new|original|above|below|\
        one|same|current|updated|revised|shorter|longer";
    let lower = object.to_lowercase();
    let mut words = words_lower(object);
    let first = words.next().unwrap_or_default();
    let deictic = match first.as_str() {
        "the" | "that" | "this" => words.next().is_some_and(|w| listed(DEICTIC, &w)),
        "one" | "both" | "either" | "neither" | "option" | "version" | "a" => {
            first != "a"
                || words
                    .next()
                    .is_some_and(|w| matches!(w.as_str(), "shorter" | "longer" | "different" | "mix"))
        }
        _ => false,
    };
    object_ok(object) && !deictic && !mentions_assistant(object) && !VAGUE.split('|').any(|v| lower.starts_with(v))
}

pub(super) fn looks_imperative(action: &str) -> bool {
    let word = first_word(action);
    if action.split_whitespace().count() < 2 || word.is_empty() || listed(NOT_IMPERATIVE, &word) {
        return false;
    }
    if listed(IMPERATIVE_EXCEPTIONS, &word) {
        return true;
    }
    // "works", "happens" (third person), "used", "liked" (past), "being", "giving" (gerunds) do
    // not start an instruction; "discuss", "focus", "address" do.
    let third_person_s = word.ends_with('s') && !word.ends_with("ss") && !word.ends_with("us");
    !(third_person_s || word.ends_with("ed") || word.ends_with("ing"))
}

pub(super) fn clean_word(word: &str) -> String {
    word.trim_matches(|c: char| !c.is_alphanumeric() && c != '-' && c != '\'')
        .to_lowercase()
}

pub(super) fn is_event_noun(word: &str) -> bool {
    let word = clean_word(word);
    listed(EVENT_NOUNS, &word) || word.strip_suffix('s').is_some_and(|w| listed(EVENT_NOUNS, w))
}

pub(super) fn starts_with_event_noun(text: &str) -> bool {
    text.split_whitespace().next().is_some_and(is_event_noun)
}

/// "a dentist appointment on Friday": a determiner, then an event noun within three words, with
/// no preposition before it ("a question about the meeting" names a question).
pub(super) fn names_an_event(text: &str) -> bool {
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.is_empty() || !listed(DETERMINERS, &clean_word(words[0])) {
        return false;
    }
    for word in words.iter().skip(1).take(3) {
        if is_event_noun(word) {
            return true;
        }
        if listed(PREPOSITIONS, &clean_word(word)) {
            return false;
        }
    }
    false
}

/// "to Paris", "to the dentist", "on a trip", "on vacation" — not "to bed", "to try it".
pub(super) fn goes_somewhere(text: &str) -> bool {
    let mut words = text.split_whitespace();
    if !matches!(words.next().map(clean_word).as_deref(), Some("to" | "on")) {
        return false;
    }
    let mut next = words.next();
    if next.is_some_and(|w| listed(DETERMINERS, &clean_word(w))) {
        next = words.next();
    }
    next.is_some_and(|w| {
        let capitalised = w.chars().next().is_some_and(char::is_uppercase);
        capitalised || is_event_noun(w) || listed(PLACES, &clean_word(w))
    })
}

pub(super) fn is_personal(what: &str) -> bool {
    let words: Vec<String> = words_lower(what).collect();
    match words.last().map(String::as_str) {
        // "my dog's name is Rex"; a bare "my name is" has its own rule.
        Some("name") => words.len() >= 2,
        Some(head) => listed(PERSONAL_NOUNS, head) && !mentions_assistant(what),
        None => false,
    }
}

/// Whether `text` holds a date expression (see the list in the module documentation of `rules`).
pub(super) fn has_date(text: &str) -> bool {
    static DATE: OnceLock<Regex> = OnceLock::new();
    DATE.get_or_init(|| {
        let dates = [
            format!("{WEEKDAY}s?"),
            "today|tonight|tomorrow|yesterday".to_string(),
            r"this\s+(?:morning|afternoon|evening|weekend|week|month|year)".to_string(),
            format!(r"(?:next|last|this\s+coming)\s+(?:week|weekend|month|year|{WEEKDAY})"),
            format!(r"(?:{MONTH}|{MONTH_ABBR})\s+\d{{1,2}}(?:st|nd|rd|th)?"),
            format!(r"\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?(?:{MONTH}|{MONTH_ABBR})"),
            format!(r"(?:in|since|during|until|by)\s+{MONTH}"),
            r"(?:in|since)\s+(?:19|20)\d{2}".to_string(),
            r"\d{4}-\d{2}-\d{2}".to_string(),
            r"on\s+the\s+\d{1,2}(?:st|nd|rd|th)".to_string(),
            r"in\s+(?:a|one|two|three|four|five|six|\d+)\s+(?:days?|weeks?|months?)".to_string(),
        ];
        Regex::new(&format!(r"(?i)\b(?:{})\b", dates.join("|"))).expect("date pattern")
    })
    .is_match(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_recognised() {
        for text in [
            "on Friday",
            "every Mondays",
            "today",
            "tonight",
            "tomorrow",
            "yesterday",
            "this weekend",
            "next week",
            "last year",
            "next Thursday",
            "on March 3",
            "on Mar. 3rd",
            "the 3rd of March",
            "12 December",
            "in May",
            "since 2019",
            "2024-05-01",
            "on the 5th",
            "in two weeks",
            "in 3 days",
        ] {
            assert!(has_date(text), "{text}");
        }
        for text in [
            "I may go",
            "march on",
            "the 5 of us",
            "version 2024",
            "mondayish",
            "2024-5-1",
        ] {
            assert!(!has_date(text), "{text}");
        }
    }

    #[test]
    fn alternations_prefer_the_longest_entry() {
        let re = Regex::new(&format!("^{}", any("hi|hi there|by the way"))).unwrap();
        assert_eq!(re.find("hi there, Sam").unwrap().as_str(), "hi there");
        assert_eq!(re.find("by  the\tway").unwrap().as_str(), "by  the\tway");
    }

    #[test]
    fn listed_matches_whole_entries_only() {
        assert!(listed("cat|dog|time zone", "dog"));
        assert!(listed("cat|dog|time zone", "time zone"));
        assert!(!listed("cat|dog", "ca"));
        assert!(!listed("cat|dog", "at|d"));
    }

    #[test]
    fn event_phrases() {
        assert!(names_an_event("a dentist appointment on Friday"));
        assert!(names_an_event("the big team meeting tomorrow"));
        assert!(names_an_event("two exams next week"));
        assert!(!names_an_event("a question about the meeting"));
        assert!(!names_an_event("a lot of meetings"));
        assert!(!names_an_event("meeting tomorrow"));
        assert!(!names_an_event("a great time yesterday"));
    }

    #[test]
    fn imperatives() {
        for action in [
            "use metric units",
            "discuss trade-offs",
            "embed images inline",
            "cite sources",
        ] {
            assert!(looks_imperative(action), "{action}");
        }
        for action in [
            "happy to help",
            "works for me",
            "being late",
            "heard of it",
            "stop",
            "the same",
            "mind",
        ] {
            assert!(!looks_imperative(action), "{action}");
        }
    }

    #[test]
    fn destinations() {
        for rest in [
            "to Paris next week",
            "to the dentist",
            "on a trip",
            "on vacation",
            "to my doctor's",
        ] {
            assert!(goes_somewhere(rest), "{rest}");
        }
        for rest in ["to bed", "to try it", "there", "home", "to the store"] {
            assert!(!goes_somewhere(rest), "{rest}");
        }
    }

    #[test]
    fn personal_heads() {
        assert!(is_personal("dog"));
        assert!(is_personal("older brother"));
        assert!(is_personal("native language"));
        assert!(is_personal("dog's name"));
        assert!(!is_personal("name"));
        assert!(!is_personal("point"));
        assert!(!is_personal("code"));
    }
}
