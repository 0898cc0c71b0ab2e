//! Relative dates resolved against when a turn was said.
//!
//! "I went hiking yesterday" means nothing a month later unless the memory says which yesterday.
//! Every relative expression is kept as the speaker said it, followed by the calendar date it
//! means in parentheses: "I went hiking yesterday (29 November 2026)". The speaker's words stay
//! (they are what a later question paraphrases), and the date makes "when did" questions and
//! searches by month answerable from the text alone.
//!
//! Resolved (case-insensitive, whole words):
//! - today, tonight, this morning/afternoon/evening, yesterday, tomorrow, the day before
//!   yesterday, the day after tomorrow → that day;
//! - last/next `<weekday>` → the latest such day strictly before, or the first strictly after;
//! - last/this/next week → "the week of <its Monday>"; last/this/next weekend → "the weekend of
//!   <its Saturday>";
//! - last/this/next month → "<Month> <year>"; last/this/next year → "<year>";
//! - N days/weeks/months/years ago, in N days/weeks/months/years (N in digits, or a/an/one to
//!   twelve, "a couple of", "a few" is too vague and stays as it is).
//!
//! A bare weekday ("on Friday") is left alone: whether it is the last or the next one depends on
//! the verb's tense, which a pattern cannot tell reliably. An expression already followed by a
//! parenthesis is not annotated again, so resolving twice changes nothing.

use std::sync::OnceLock;

use chrono::{Datelike, Duration, Month, Months, NaiveDate, Weekday};
use regex::{Captures, Regex};

const NUMBER_WORDS: [&str; 13] = [
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
];

/// `text` with every relative date it holds followed by the date it means, counted from `said_on`.
pub fn resolve_relative_dates(text: &str, said_on: NaiveDate) -> String {
    let re = pattern();
    let mut out = String::with_capacity(text.len() + 32);
    let mut last = 0;
    for caps in re.captures_iter(text) {
        let whole = caps.get(0).expect("match");
        // Already annotated (by an earlier pass, or by the speaker): leave it.
        if text[whole.end()..].trim_start().starts_with('(') {
            continue;
        }
        let Some(meaning) = meaning(&caps, said_on) else {
            continue;
        };
        out.push_str(&text[last..whole.end()]);
        out.push_str(" (");
        out.push_str(&meaning);
        out.push(')');
        last = whole.end();
    }
    out.push_str(&text[last..]);
    out
}

/// "29 November 2026".
pub fn long_date(date: NaiveDate) -> String {
    format!("{} {} {}", date.day(), month_name(date.month()), date.year())
}

fn month_name(month: u32) -> &'static str {
    u8::try_from(month)
        .ok()
        .and_then(|m| Month::try_from(m).ok())
        .map_or("", |m| m.name())
}

fn pattern() -> &'static Regex {
    static PATTERN: OnceLock<Regex> = OnceLock::new();
    PATTERN.get_or_init(|| {
        let number = format!(r"(\d{{1,3}}|an?|{}|a\s+couple\s+of)", NUMBER_WORDS.join("|"));
        let unit = r"(days?|weeks?|months?|years?)";
        Regex::new(&format!(
            concat!(
                r"(?i)\b(?:",
                r"(?P<day>the\s+day\s+before\s+yesterday|the\s+day\s+after\s+tomorrow|today|tonight|yesterday|tomorrow",
                r"|this\s+(?:morning|afternoon|evening))",
                r"|(?P<rel>last|this|next)\s+(?P<span>week|weekend|month|year",
                r"|monday|tuesday|wednesday|thursday|friday|saturday|sunday)",
                r"|(?P<n_ago>{number})\s+(?P<unit_ago>{unit})\s+ago",
                r"|in\s+(?P<n_in>{number})\s+(?P<unit_in>{unit})",
                r")\b",
            ),
            number = number,
            unit = unit
        ))
        .expect("relative date pattern")
    })
}

fn meaning(caps: &Captures, said_on: NaiveDate) -> Option<String> {
    if let Some(day) = caps.name("day") {
        let day = day.as_str().to_lowercase();
        let offset = if day.contains("before") {
            -2
        } else if day.contains("after") {
            2
        } else if day == "yesterday" {
            -1
        } else if day == "tomorrow" {
            1
        } else {
            0
        };
        return Some(long_date(said_on + Duration::days(offset)));
    }
    if let (Some(rel), Some(span)) = (caps.name("rel"), caps.name("span")) {
        let step: i32 = match rel.as_str().to_lowercase().as_str() {
            "last" => -1,
            "next" => 1,
            _ => 0,
        };
        return relative_span(&span.as_str().to_lowercase(), step, said_on);
    }
    let (n, unit, sign) = match (
        caps.name("n_ago"),
        caps.name("unit_ago"),
        caps.name("n_in"),
        caps.name("unit_in"),
    ) {
        (Some(n), Some(unit), _, _) => (n, unit, -1),
        (_, _, Some(n), Some(unit)) => (n, unit, 1),
        _ => return None,
    };
    let n = count(n.as_str())?;
    let unit = unit.as_str().to_lowercase();
    let shifted = shift(said_on, unit.trim_end_matches('s'), sign * n)?;
    Some(match unit.trim_end_matches('s') {
        "day" => long_date(shifted),
        "week" => format!("around {}", long_date(shifted)),
        "month" => format!("{} {}", month_name(shifted.month()), shifted.year()),
        _ => shifted.year().to_string(),
    })
}

fn relative_span(span: &str, step: i32, said_on: NaiveDate) -> Option<String> {
    let monday = said_on - Duration::days(i64::from(said_on.weekday().num_days_from_monday()));
    match span {
        "week" => Some(format!(
            "the week of {}",
            long_date(monday + Duration::weeks(i64::from(step)))
        )),
        "weekend" => {
            let saturday = monday + Duration::days(5) + Duration::weeks(i64::from(step));
            Some(format!("the weekend of {}", long_date(saturday)))
        }
        "month" => {
            let first = said_on.with_day(1)?;
            let month = shift(first, "month", step)?;
            Some(format!("{} {}", month_name(month.month()), month.year()))
        }
        "year" => Some((said_on.year() + step).to_string()),
        weekday => {
            let target: Weekday = weekday.parse().ok()?;
            match step {
                -1 => Some(long_date(previous(said_on, target))),
                1 => Some(long_date(following(said_on, target))),
                // "this Friday" leans to the coming one, as it does in speech.
                _ if said_on.weekday() == target => Some(long_date(said_on)),
                _ => Some(long_date(following(said_on, target))),
            }
        }
    }
}

/// The latest `target` day strictly before `day`.
fn previous(day: NaiveDate, target: Weekday) -> NaiveDate {
    let back = (7 + day.weekday().num_days_from_monday() - target.num_days_from_monday()) % 7;
    day - Duration::days(i64::from(if back == 0 { 7 } else { back }))
}

/// The first `target` day strictly after `day`.
fn following(day: NaiveDate, target: Weekday) -> NaiveDate {
    let ahead = (7 + target.num_days_from_monday() - day.weekday().num_days_from_monday()) % 7;
    day + Duration::days(i64::from(if ahead == 0 { 7 } else { ahead }))
}

fn shift(day: NaiveDate, unit: &str, n: i32) -> Option<NaiveDate> {
    let months = |m: i32| {
        let months = Months::new(m.unsigned_abs());
        if m < 0 {
            day.checked_sub_months(months)
        } else {
            day.checked_add_months(months)
        }
    };
    match unit {
        "day" => day.checked_add_signed(Duration::days(i64::from(n))),
        "week" => day.checked_add_signed(Duration::weeks(i64::from(n))),
        "month" => months(n),
        "year" => months(n.checked_mul(12)?),
        _ => None,
    }
}

fn count(text: &str) -> Option<i32> {
    let text = text.to_lowercase();
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match text.as_str() {
        "a" | "an" => Some(1),
        "a couple of" => Some(2),
        _ => text
            .parse::<i32>()
            .ok()
            .or_else(|| NUMBER_WORDS.iter().position(|w| *w == text).map(|i| i as i32)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Sunday.
    fn said_on() -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, 29).unwrap()
    }

    fn resolved(text: &str) -> String {
        resolve_relative_dates(text, said_on())
    }

    #[test]
    fn days() {
        assert_eq!(
            resolved("I went hiking yesterday."),
            "I went hiking yesterday (28 November 2026)."
        );
        assert_eq!(resolved("Today was long"), "Today (29 November 2026) was long");
        assert_eq!(
            resolved("the exam is tomorrow"),
            "the exam is tomorrow (30 November 2026)"
        );
        assert_eq!(
            resolved("I saw her the day before yesterday"),
            "I saw her the day before yesterday (27 November 2026)"
        );
        assert_eq!(
            resolved("We talked this morning"),
            "We talked this morning (29 November 2026)"
        );
    }

    #[test]
    fn weekdays_weeks_months_years() {
        assert_eq!(resolved("last Friday"), "last Friday (27 November 2026)");
        assert_eq!(resolved("last Sunday"), "last Sunday (22 November 2026)");
        assert_eq!(resolved("next Sunday"), "next Sunday (6 December 2026)");
        assert_eq!(resolved("next Monday"), "next Monday (30 November 2026)");
        assert_eq!(resolved("this Wednesday"), "this Wednesday (2 December 2026)");
        assert_eq!(resolved("last week"), "last week (the week of 16 November 2026)");
        assert_eq!(resolved("next week"), "next week (the week of 30 November 2026)");
        assert_eq!(
            resolved("last weekend"),
            "last weekend (the weekend of 21 November 2026)"
        );
        assert_eq!(
            resolved("this weekend"),
            "this weekend (the weekend of 28 November 2026)"
        );
        assert_eq!(resolved("Last month was busy"), "Last month (October 2026) was busy");
        assert_eq!(resolved("next month"), "next month (December 2026)");
        assert_eq!(resolved("last year"), "last year (2025)");
        assert_eq!(resolved("next year"), "next year (2027)");
    }

    #[test]
    fn counted_spans() {
        assert_eq!(resolved("3 days ago"), "3 days ago (26 November 2026)");
        assert_eq!(resolved("two weeks ago"), "two weeks ago (around 15 November 2026)");
        assert_eq!(resolved("a month ago"), "a month ago (October 2026)");
        assert_eq!(resolved("a couple of years ago"), "a couple of years ago (2024)");
        assert_eq!(resolved("in 10 days"), "in 10 days (9 December 2026)");
        assert_eq!(resolved("in six months"), "in six months (May 2027)");
        assert_eq!(resolved("a few days ago"), "a few days ago", "too vague to resolve");
    }

    #[test]
    fn months_end_and_leap_days_stay_valid() {
        let jan31 = NaiveDate::from_ymd_opt(2024, 3, 31).unwrap();
        assert_eq!(
            resolve_relative_dates("a month ago", jan31),
            "a month ago (February 2024)"
        );
        let leap = NaiveDate::from_ymd_opt(2024, 2, 29).unwrap();
        assert_eq!(resolve_relative_dates("a year ago", leap), "a year ago (2023)");
        let huge = resolve_relative_dates("999 years ago and in 999 years", NaiveDate::MIN);
        assert!(
            huge.starts_with("999 years ago"),
            "out of range dates are left alone: {huge}"
        );
    }

    #[test]
    fn idempotent_and_whole_words_only() {
        let once = resolved("I moved here last year and met Ana yesterday.");
        assert_eq!(
            once,
            "I moved here last year (2025) and met Ana yesterday (28 November 2026)."
        );
        assert_eq!(resolve_relative_dates(&once, said_on()), once);
        for untouched in [
            "on Friday",
            "todays news",
            "the yesterdays",
            "mistoday",
            "in a while",
            "last weekday",
            "",
        ] {
            assert_eq!(resolved(untouched), untouched);
        }
    }
}
