//! Deterministic benchmark inputs shared with the Python peers (written to a JSON file).

use serde::Serialize;

pub const SHORT: &str = "The cat sits on the mat";

/// About 128 model tokens of ordinary prose.
pub const LONG: &str = "The deployment failed on Tuesday night because the database migration \
timed out while rebuilding an index on the orders table. The on-call engineer rolled the release \
back, raised the statement timeout for the migration job, and scheduled the rebuild for the \
quieter weekend window. Customers saw slower checkouts for about twenty minutes, and the support \
team answered a handful of tickets about duplicate confirmation emails. Next time the team wants \
migrations that rebuild large indexes to run concurrently, with a dry run against a copy of \
production data first, and an alert that fires before the timeout rather than after it.";

const SUBJECTS: &[&str] = &[
    "The user",
    "My manager",
    "Our customer in Lisbon",
    "The assistant",
    "Priya",
    "The billing team",
    "Dr. Okafor",
    "Grandma",
];
const FACTS: &[&str] = &[
    "prefers Python for data work and TypeScript for the web front end",
    "wants every answer in formal English with sources cited at the end",
    "is allergic to peanuts and avoids restaurants that cannot guarantee it",
    "moved the weekly planning meeting from Monday to Thursday afternoon",
    "renewed the passport in March and plans a trip to Japan in the autumn",
    "asked to be reminded about the dentist appointment two days before",
    "keeps the production database credentials in the team's password manager",
    "likes green tea, dislikes coffee, and drinks it without sugar",
];
const TAILS: &[&str] = &[
    "",
    " since last year",
    ", according to the notes from the call",
    " and mentioned it twice this week",
];

#[derive(Serialize)]
pub struct BenchTexts {
    pub short: String,
    pub long: String,
    pub batch: Vec<String>,
}

/// `n` varied sentences (8 to 30 tokens), the same every run.
pub fn batch(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let s = SUBJECTS[i % SUBJECTS.len()];
            let f = FACTS[(i / SUBJECTS.len()) % FACTS.len()];
            let t = TAILS[(i / (SUBJECTS.len() * FACTS.len())) % TAILS.len()];
            format!("{s} {f}{t} (note {i}).")
        })
        .collect()
}

pub fn all(batch_size: usize) -> BenchTexts {
    BenchTexts {
        short: SHORT.into(),
        long: LONG.into(),
        batch: batch(batch_size),
    }
}
