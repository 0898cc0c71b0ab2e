//! Greedy packing of scored items into a token budget.
//!
//! Highest score first; an item that does not fit is skipped and packing goes on with the next,
//! so a long low-value memory never blocks short high-value ones behind it. Greedy is not the
//! optimal 0/1 knapsack, but it is what the ranking promises the reader: nothing is included
//! ahead of a better-scored item that would have fitted. Ties are broken by fewer tokens, then by
//! input order, so the same input always gives the same packing.

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Item {
    pub score: f64,
    pub tokens: usize,
}

/// The packing: indices into the input in the order they were chosen, and the tokens used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packing {
    pub chosen: Vec<usize>,
    pub tokens_used: usize,
}

/// Ranking order used by the packer: score descending (NaN last), tokens ascending, index ascending.
pub fn rank_order(items: &[Item]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    let key = |s: f64| if s.is_nan() { f64::NEG_INFINITY } else { s };
    order.sort_by(|&a, &b| {
        key(items[b].score)
            .total_cmp(&key(items[a].score))
            .then(items[a].tokens.cmp(&items[b].tokens))
            .then(a.cmp(&b))
    });
    order
}

pub fn pack(items: &[Item], budget: usize) -> Packing {
    let mut remaining = budget;
    let mut chosen = Vec::new();
    for index in rank_order(items) {
        let tokens = items[index].tokens;
        if tokens <= remaining {
            remaining -= tokens;
            chosen.push(index);
        }
    }
    Packing {
        chosen,
        tokens_used: budget - remaining,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn items(v: &[(f64, usize)]) -> Vec<Item> {
        v.iter().map(|&(score, tokens)| Item { score, tokens }).collect()
    }

    #[test]
    fn worked_example_skips_and_keeps_going() {
        // Budget 100: A(0.9, 60) fits; B(0.8, 50) does not (40 left); C(0.7, 30) fits; D(0.6, 20)
        // does not (10 left); E(0.5, 10) fits exactly.
        let v = items(&[(0.8, 50), (0.9, 60), (0.6, 20), (0.7, 30), (0.5, 10)]);
        let p = pack(&v, 100);
        assert_eq!(p.chosen, vec![1, 3, 4]);
        assert_eq!(p.tokens_used, 100);
    }

    #[test]
    fn ties_prefer_fewer_tokens_then_input_order() {
        let v = items(&[(0.5, 30), (0.5, 10), (0.5, 10)]);
        assert_eq!(pack(&v, 25).chosen, vec![1, 2]);
    }

    #[test]
    fn nan_scores_rank_last_and_zero_budget_takes_free_items() {
        let v = items(&[(f64::NAN, 1), (0.1, 1), (0.2, 0)]);
        assert_eq!(pack(&v, 1).chosen, vec![2, 1]);
        assert_eq!(pack(&v, 0).chosen, vec![2]);
        assert!(pack(&[], 10).chosen.is_empty());
    }

    proptest! {
        #[test]
        fn never_over_budget(v in prop::collection::vec((0.0f64..1.0, 0usize..500), 0..60), budget in 0usize..3000) {
            let p = pack(&items(&v), budget);
            let used: usize = p.chosen.iter().map(|&i| v[i].1).sum();
            prop_assert!(used <= budget);
            prop_assert_eq!(used, p.tokens_used);
        }

        #[test]
        fn deterministic_and_order_independent_selection(v in prop::collection::vec((0.0f64..1.0, 0usize..500), 0..60), budget in 0usize..3000) {
            let it = items(&v);
            prop_assert_eq!(pack(&it, budget), pack(&it, budget));
            // Reversing the input changes indices, never which (score, tokens) pairs are chosen
            // unless two items are identical, in which case either copy is fine.
            let reversed: Vec<Item> = it.iter().rev().copied().collect();
            let mut a: Vec<(u64, usize)> = pack(&it, budget).chosen.iter().map(|&i| (it[i].score.to_bits(), it[i].tokens)).collect();
            let mut b: Vec<(u64, usize)> = pack(&reversed, budget).chosen.iter().map(|&i| (reversed[i].score.to_bits(), reversed[i].tokens)).collect();
            a.sort_unstable();
            b.sort_unstable();
            prop_assert_eq!(a, b);
        }

        #[test]
        fn never_leaves_out_an_item_that_still_fits(v in prop::collection::vec((0.0f64..1.0, 0usize..500), 0..60), budget in 0usize..3000) {
            let p = pack(&items(&v), budget);
            let left = budget - p.tokens_used;
            for (i, &(_, tokens)) in v.iter().enumerate() {
                if !p.chosen.contains(&i) {
                    prop_assert!(tokens > left, "item {} ({} tokens) fits in the {} left", i, tokens, left);
                }
            }
        }

        #[test]
        fn chosen_in_score_order(v in prop::collection::vec((0.0f64..1.0, 0usize..500), 0..60), budget in 0usize..3000) {
            let p = pack(&items(&v), budget);
            for w in p.chosen.windows(2) {
                prop_assert!(v[w[0]].0 >= v[w[1]].0);
            }
        }
    }
}
