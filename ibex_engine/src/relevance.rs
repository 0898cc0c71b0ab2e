//! Relevance: how well a memory answers a query, in [0, 1], from two kinds of evidence.
//!
//! * semantic: cosine similarity of the MiniLM embeddings, `max(0, 1 - cosine_distance)`.
//!   Good at paraphrases, blind to which name or number was asked about.
//! * lexical: the share of the query's information that the memory contains literally:
//!   `sum(idf of query terms found in the memory) / sum(idf of all query terms)`, with
//!   BM25's idf = ln(1 + (N - df + 0.5) / (df + 0.5)) over the agent's active memories. A rare
//!   name or number carries most of a query's weight, so a memory that has it scores high, and
//!   one that only shares common words scores low. Memories are short, so term frequency and
//!   length normalisation (the rest of BM25) add nothing and are left out.
//!
//! The blend is a convex combination, `(1 - w) * semantic + w * lexical`, with
//! `w = ibex.lexical_weight`. docs/ARCHITECTURE.md gives the labelled retrieval test that chose
//! the default weight.

/// Default weight of the lexical evidence (see the module docs).
pub const DEFAULT_LEXICAL_WEIGHT: f64 = 0.35;

/// BM25's inverse document frequency of a term found in `df` of `n` documents.
pub fn idf(df: u64, n: u64) -> f64 {
    let (df, n) = (df as f64, n.max(df) as f64);
    (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
}

/// Blends semantic similarity and lexical coverage (both clamped to [0, 1]).
pub fn blend(semantic: f64, lexical: f64, lexical_weight: f64) -> f64 {
    let clamp = |x: f64| if x.is_nan() { 0.0 } else { x.clamp(0.0, 1.0) };
    let w = clamp(lexical_weight);
    (1.0 - w) * clamp(semantic) + w * clamp(lexical)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rare_terms_weigh_more() {
        assert!(idf(1, 1000) > idf(100, 1000));
        assert!(idf(1000, 1000) > 0.0 && idf(1000, 1000) < 0.01);
        assert!((idf(0, 0) - 2f64.ln()).abs() < 1e-12);
    }

    #[test]
    fn blend_is_convex_and_clamped() {
        assert_eq!(blend(0.8, 0.2, 0.0), 0.8);
        assert_eq!(blend(0.8, 0.2, 1.0), 0.2);
        assert!((blend(0.6, 1.0, 0.25) - 0.7).abs() < 1e-12);
        assert_eq!(blend(-0.3, f64::NAN, 0.5), 0.0);
        assert_eq!(blend(2.0, 2.0, 0.5), 1.0);
    }
}
