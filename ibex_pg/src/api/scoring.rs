use pgrx::prelude::*;

use crate::gucs;
use crate::postgres::errors::SqlError;
use ibex_engine::knapsack::{self, Item};
use ibex_engine::score::{self, MemorySignals, ScoreBreakdown};

const MICROS_PER_HOUR: f64 = 3_600_000_000.0;

fn signals(
    confidence: f64,
    useful_count: i64,
    not_useful_count: i64,
    access_count: i64,
    last_touched_at: TimestampWithTimeZone,
    as_of: TimestampWithTimeZone,
) -> MemorySignals {
    let micros = as_of.into_inner().saturating_sub(last_touched_at.into_inner());
    MemorySignals {
        confidence,
        useful_count,
        not_useful_count,
        access_count,
        hours_since_touch: micros as f64 / MICROS_PER_HOUR,
    }
}

/// The composite score of DESIGN.md:
/// 0.40 relevance + 0.25 recency + 0.20 usefulness + 0.10 confidence + 0.05 access_frequency.
/// `last_touched_at` is `coalesce(last_accessed_at, occurred_at, created_at)`. STABLE: reads
/// ibex.recency_half_life_hours and defaults `as_of` to now().
#[pg_extern(stable, parallel_safe)]
fn ibex_composite_score(
    relevance: f64,
    confidence: f64,
    useful_count: i64,
    not_useful_count: i64,
    access_count: i64,
    last_touched_at: TimestampWithTimeZone,
    as_of: default!(TimestampWithTimeZone, "now()"),
) -> f64 {
    let s = signals(
        confidence,
        useful_count,
        not_useful_count,
        access_count,
        last_touched_at,
        as_of,
    );
    score::composite(relevance, &s, gucs::recency_half_life_hours()).total
}

/// The query-independent part of the score (the relevance term left out): how the hot cache
/// ranks an agent's memories.
#[pg_extern(stable, parallel_safe)]
fn ibex_hot_score(
    confidence: f64,
    useful_count: i64,
    not_useful_count: i64,
    access_count: i64,
    last_touched_at: TimestampWithTimeZone,
    as_of: default!(TimestampWithTimeZone, "now()"),
) -> f64 {
    let s = signals(
        confidence,
        useful_count,
        not_useful_count,
        access_count,
        last_touched_at,
        as_of,
    );
    score::query_independent(&s, gucs::recency_half_life_hours()).total
}

/// Every component of the composite score, to explain a ranking.
#[pg_extern(stable, parallel_safe)]
#[allow(clippy::type_complexity)]
fn ibex_score_components(
    relevance: f64,
    confidence: f64,
    useful_count: i64,
    not_useful_count: i64,
    access_count: i64,
    last_touched_at: TimestampWithTimeZone,
    as_of: default!(TimestampWithTimeZone, "now()"),
) -> TableIterator<
    'static,
    (
        name!(relevance, f64),
        name!(recency, f64),
        name!(usefulness, f64),
        name!(confidence, f64),
        name!(access_frequency, f64),
        name!(total, f64),
    ),
> {
    let s = signals(
        confidence,
        useful_count,
        not_useful_count,
        access_count,
        last_touched_at,
        as_of,
    );
    let ScoreBreakdown {
        relevance,
        recency,
        usefulness,
        confidence,
        access_frequency,
        total,
    } = score::composite(relevance, &s, gucs::recency_half_life_hours());
    TableIterator::once((relevance, recency, usefulness, confidence, access_frequency, total))
}

/// Greedy packing: the 1-based positions of the items chosen, in the order chosen (highest score
/// first, skipping what does not fit and going on; ties by fewer tokens, then position).
#[pg_extern(immutable, parallel_safe)]
fn ibex_knapsack(scores: Array<f64>, tokens: Array<i32>, budget: i32) -> Vec<i32> {
    if scores.len() != tokens.len() {
        SqlError::invalid_parameter("scores and tokens must have the same length")
            .detail(format!("{} scores, {} token counts", scores.len(), tokens.len()))
            .raise();
    }
    if budget < 0 {
        SqlError::invalid_parameter("budget must not be negative")
            .detail(format!("budget = {budget}"))
            .raise();
    }
    let items: Vec<Item> = scores
        .iter()
        .zip(tokens.iter())
        .enumerate()
        .map(|(i, (score, tokens))| match (score, tokens) {
            (Some(score), Some(tokens)) if tokens >= 0 => Item {
                score,
                tokens: tokens as usize,
            },
            (_, Some(tokens)) if tokens < 0 => SqlError::invalid_parameter("token counts must not be negative")
                .detail(format!("element {} is {tokens}", i + 1))
                .raise(),
            _ => SqlError::invalid_parameter("scores and tokens must not contain NULL")
                .detail(format!("element {} is NULL", i + 1))
                .hint("Use coalesce() to give missing scores a value, or filter those rows out.")
                .raise(),
        })
        .collect();
    knapsack::pack(&items, budget as usize)
        .chosen
        .into_iter()
        .map(|i| i as i32 + 1)
        .collect()
}

/// Relevance in [0, 1] from semantic similarity and lexical coverage:
/// `(1 - w) * semantic + w * lexical` with `w = ibex.lexical_weight` (docs/ARCHITECTURE.md).
#[pg_extern(stable, parallel_safe)]
fn ibex_relevance(semantic: f64, lexical: f64) -> f64 {
    ibex_engine::relevance::blend(semantic, lexical, gucs::lexical_weight())
}

/// BM25's inverse document frequency of a term found in `df` of the agent's `n` active memories:
/// `ln(1 + (n - df + 0.5) / (df + 0.5))` (`ibex_engine::relevance::idf`). Negative inputs count
/// as 0.
#[pg_extern(immutable, parallel_safe, strict)]
fn ibex_idf(n: i64, df: i64) -> f64 {
    ibex_engine::relevance::idf(df.max(0) as u64, n.max(0) as u64)
}
