//! The composite memory score (docs/ARCHITECTURE.md, "Composite score"):
//!
//! ```text
//! score = 0.40*relevance + 0.25*recency + 0.20*usefulness + 0.10*confidence + 0.05*access_frequency
//! recency          = 0.5 ^ (hours since coalesce(last_accessed_at, occurred_at, created_at) / half_life)
//! usefulness       = (useful + 1) / (useful + not_useful + 2)
//! access_frequency = min(1, ln(1 + access_count) / ln(101))
//! ```
//! The hot cache ranks by the same formula without the relevance term (it is query-independent);
//! context assembly re-scores every candidate with the full formula.

use serde::Serialize;

pub const W_RELEVANCE: f64 = 0.40;
pub const W_RECENCY: f64 = 0.25;
pub const W_USEFULNESS: f64 = 0.20;
pub const W_CONFIDENCE: f64 = 0.10;
pub const W_ACCESS: f64 = 0.05;
/// Default recency half-life: a memory untouched for a week counts half as recent.
pub const DEFAULT_HALF_LIFE_HOURS: f64 = 168.0;
/// access_frequency reaches 1 at 100 accesses: ln(1 + 100) / ln(101).
const ACCESS_SATURATION: f64 = 100.0;

/// The score's two settings. They live in the database (`ibex.recency_half_life_hours`,
/// `ibex.lexical_weight`); the sidecar reads them from there with each search, so a hot-only
/// candidate is scored with exactly the parameters of the cold ones.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ScoreParams {
    pub half_life_hours: f64,
    pub lexical_weight: f64,
}

impl Default for ScoreParams {
    fn default() -> Self {
        Self {
            half_life_hours: DEFAULT_HALF_LIFE_HOURS,
            lexical_weight: crate::relevance::DEFAULT_LEXICAL_WEIGHT,
        }
    }
}

/// The query-independent facts about a memory that the score uses.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MemorySignals {
    pub confidence: f64,
    pub useful_count: i64,
    pub not_useful_count: i64,
    pub access_count: i64,
    /// Hours since `coalesce(last_accessed_at, occurred_at, created_at)`. Negative values (clock skew) count as 0.
    pub hours_since_touch: f64,
}

/// Every component, so callers can explain a ranking, and the weighted total.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ScoreBreakdown {
    pub relevance: f64,
    pub recency: f64,
    pub usefulness: f64,
    pub confidence: f64,
    pub access_frequency: f64,
    pub total: f64,
}

pub fn recency(hours_since_touch: f64, half_life_hours: f64) -> f64 {
    let half_life = if half_life_hours > 0.0 {
        half_life_hours
    } else {
        DEFAULT_HALF_LIFE_HOURS
    };
    0.5f64.powf(hours_since_touch.max(0.0) / half_life)
}

/// Laplace-smoothed share of useful feedback: 0.5 with no feedback at all.
pub fn usefulness(useful_count: i64, not_useful_count: i64) -> f64 {
    let useful = useful_count.max(0) as f64;
    let not_useful = not_useful_count.max(0) as f64;
    (useful + 1.0) / (useful + not_useful + 2.0)
}

pub fn access_frequency(access_count: i64) -> f64 {
    ((1.0 + access_count.max(0) as f64).ln() / (1.0 + ACCESS_SATURATION).ln()).min(1.0)
}

/// The full score with a relevance in [0, 1] (clamped).
pub fn composite(relevance: f64, signals: &MemorySignals, half_life_hours: f64) -> ScoreBreakdown {
    let relevance = clamp01(relevance);
    let base = query_independent(signals, half_life_hours);
    ScoreBreakdown {
        relevance,
        total: base.total + W_RELEVANCE * relevance,
        ..base
    }
}

/// The score without the relevance term, used to rank the hot cache.
pub fn query_independent(signals: &MemorySignals, half_life_hours: f64) -> ScoreBreakdown {
    let recency = recency(signals.hours_since_touch, half_life_hours);
    let usefulness = usefulness(signals.useful_count, signals.not_useful_count);
    let confidence = clamp01(signals.confidence);
    let access_frequency = access_frequency(signals.access_count);
    let total =
        W_RECENCY * recency + W_USEFULNESS * usefulness + W_CONFIDENCE * confidence + W_ACCESS * access_frequency;
    ScoreBreakdown {
        relevance: 0.0,
        recency,
        usefulness,
        confidence,
        access_frequency,
        total,
    }
}

fn clamp01(x: f64) -> f64 {
    if x.is_nan() {
        0.0
    } else {
        x.clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn weights_sum_to_one() {
        assert!(close(
            W_RELEVANCE + W_RECENCY + W_USEFULNESS + W_CONFIDENCE + W_ACCESS,
            1.0
        ));
    }

    #[test]
    fn worked_example() {
        // relevance 0.8; touched one half-life ago; 3 useful, 1 not; confidence 0.9; 9 accesses.
        let s = MemorySignals {
            confidence: 0.9,
            useful_count: 3,
            not_useful_count: 1,
            access_count: 9,
            hours_since_touch: 168.0,
        };
        let b = composite(0.8, &s, 168.0);
        assert!(close(b.recency, 0.5));
        assert!(close(b.usefulness, 4.0 / 6.0));
        assert!(close(b.access_frequency, 10f64.ln() / 101f64.ln()));
        let expected = 0.40 * 0.8 + 0.25 * 0.5 + 0.20 * (4.0 / 6.0) + 0.10 * 0.9 + 0.05 * (10f64.ln() / 101f64.ln());
        assert!(close(b.total, expected), "{} vs {expected}", b.total);
        // By hand: 0.32 + 0.125 + 0.1333333 + 0.09 + 0.0249461 = 0.6932794
        assert!((b.total - 0.6932794).abs() < 1e-6);
    }

    #[test]
    fn fresh_memory_without_feedback() {
        let s = MemorySignals {
            confidence: 1.0,
            useful_count: 0,
            not_useful_count: 0,
            access_count: 0,
            hours_since_touch: 0.0,
        };
        let b = composite(1.0, &s, 168.0);
        assert!(close(b.total, 0.40 + 0.25 + 0.20 * 0.5 + 0.10));
        assert!(close(query_independent(&s, 168.0).total, 0.25 + 0.10 + 0.10));
    }

    #[test]
    fn inputs_are_clamped() {
        let s = MemorySignals {
            confidence: 7.0,
            useful_count: -3,
            not_useful_count: -1,
            access_count: -5,
            hours_since_touch: -10.0,
        };
        let b = composite(f64::NAN, &s, 168.0);
        assert_eq!(
            (b.relevance, b.confidence, b.recency, b.usefulness, b.access_frequency),
            (0.0, 1.0, 1.0, 0.5, 0.0)
        );
        assert_eq!(access_frequency(1_000_000), 1.0);
        assert!(close(access_frequency(100), 1.0));
    }

    #[test]
    fn recency_halves_each_half_life() {
        assert!(close(recency(24.0, 24.0), 0.5));
        assert!(close(recency(48.0, 24.0), 0.25));
        assert!(close(recency(10.0, 0.0), recency(10.0, DEFAULT_HALF_LIFE_HOURS)));
    }
}
