//! Usage analytics arithmetic: which part of a time range the hourly rollup can answer, and
//! latency percentiles estimated from bucket counts.
//!
//! The rollup (`sql/api/usage_rollup.sql`) counts each hour's calls per latency bucket; bucket `k`
//! holds latencies in `(bounds[k-1], bounds[k]]` (bucket 0 from zero, the last one open). Sums of
//! such histograms over any set of hours are exact, and a percentile read from them stays inside
//! the bucket of the exact one.

/// Seconds in an hour: the rollup's resolution.
const HOUR: i64 = 3600;

/// The hours `[start, end)` (Unix seconds, whole hours) that the rollup answers for the range
/// `[from, to)`: hours wholly inside the range and before the watermark. The rest of the range,
/// `[from, start)` and `[end, to)`, is read from the raw events. `None` when nothing is rolled
/// up, the range holds no whole rolled hour, or the answer needs a resolution finer than an hour.
/// `from` is a whole second at or after the range's start (round a fraction up).
pub fn rolled_span(from: i64, to: i64, rolled_until: Option<i64>, finer_than_hour: bool) -> Option<(i64, i64)> {
    let watermark = rolled_until.filter(|_| !finer_than_hour)?;
    let start = from.div_euclid(HOUR) * HOUR + if from.rem_euclid(HOUR) == 0 { 0 } else { HOUR };
    let end = (to.div_euclid(HOUR) * HOUR).min(watermark.div_euclid(HOUR) * HOUR);
    (end > start).then_some((start, end))
}

/// Calls counted per latency bucket of `bounds` (one more bucket than bounds: the open last one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatencyHistogram {
    counts: Vec<i64>,
}

impl LatencyHistogram {
    pub fn new(bounds: &[i32]) -> Self {
        Self {
            counts: vec![0; bounds.len() + 1],
        }
    }

    /// Adds sparse counts: `counts[i]` calls in bucket `buckets[i]`. A bucket out of range (the
    /// bounds changed under stored rows) goes to the nearest end rather than being lost.
    pub fn add_sparse(&mut self, buckets: &[i32], counts: &[i64]) {
        let last = self.counts.len() - 1;
        for (&bucket, &count) in buckets.iter().zip(counts) {
            let at = usize::try_from(bucket).unwrap_or(0).min(last);
            self.counts[at] = self.counts[at].saturating_add(count.max(0));
        }
    }

    pub fn merge(&mut self, other: &Self) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine = mine.saturating_add(*theirs);
        }
    }

    pub fn total(&self) -> i64 {
        self.counts.iter().sum()
    }

    /// The `q` quantile (0..=1), interpolated linearly inside its bucket; `None` without calls.
    /// The open last bucket answers its lower bound: nothing is known above it.
    pub fn quantile(&self, bounds: &[i32], q: f64) -> Option<f64> {
        let total = self.total();
        if total == 0 {
            return None;
        }
        // The rank of the wanted call, 1-based, like nearest-rank percentiles.
        let rank = (q.clamp(0.0, 1.0) * total as f64).max(1.0);
        let mut below = 0i64;
        for (k, &count) in self.counts.iter().enumerate() {
            if count == 0 {
                continue;
            }
            if (below + count) as f64 >= rank {
                let lower = if k == 0 { 0.0 } else { f64::from(bounds[k - 1]) };
                let Some(&upper) = bounds.get(k) else {
                    return Some(lower);
                };
                let inside = (rank - below as f64) / count as f64;
                return Some(lower + inside * (f64::from(upper) - lower));
            }
            below += count;
        }
        bounds.last().map(|&b| f64::from(b))
    }

    /// Regroups into the coarser upper bounds `coarse` (plus an open last bucket): each fine
    /// bucket goes to the first coarse bucket whose bound is at or above its own. Exact when
    /// every coarse bound is also a fine one.
    pub fn regroup(&self, bounds: &[i32], coarse: &[i32]) -> Vec<i64> {
        let mut out = vec![0i64; coarse.len() + 1];
        for (k, &count) in self.counts.iter().enumerate() {
            let at = match bounds.get(k) {
                Some(&upper) => coarse.iter().position(|&c| c >= upper).unwrap_or(coarse.len()),
                None => coarse.len(),
            };
            out[at] += count;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: &[i32] = &[10, 20, 50, 100];

    #[test]
    fn the_rolled_span_holds_whole_hours_inside_the_range_and_before_the_watermark() {
        let h = HOUR;
        // Aligned range, watermark beyond it: all of it.
        assert_eq!(rolled_span(10 * h, 20 * h, Some(30 * h), false), Some((10 * h, 20 * h)));
        // Partial first and last hours are left to the raw events.
        assert_eq!(
            rolled_span(10 * h + 5, 20 * h + 5, Some(30 * h), false),
            Some((11 * h, 20 * h))
        );
        // The watermark cuts it.
        assert_eq!(rolled_span(10 * h, 20 * h, Some(15 * h), false), Some((10 * h, 15 * h)));
        // Nothing rolled up, a watermark before the range, minute resolution: none.
        assert_eq!(rolled_span(10 * h, 20 * h, None, false), None);
        assert_eq!(rolled_span(10 * h, 20 * h, Some(5 * h), false), None);
        assert_eq!(rolled_span(10 * h, 20 * h, Some(30 * h), true), None);
        // Less than one whole hour.
        assert_eq!(rolled_span(10 * h + 5, 11 * h + 5, Some(30 * h), false), None);
        // Before 1970 too.
        assert_eq!(rolled_span(-2 * h - 5, 0, Some(0), false), Some((-2 * h, 0)));
    }

    #[test]
    fn quantiles_interpolate_inside_the_bucket() {
        let mut h = LatencyHistogram::new(BOUNDS);
        assert_eq!(h.quantile(BOUNDS, 0.5), None);
        // 10 calls in (10, 20]: the median is halfway through it.
        h.add_sparse(&[1], &[10]);
        assert_eq!(h.quantile(BOUNDS, 0.5), Some(15.0));
        assert_eq!(h.quantile(BOUNDS, 1.0), Some(20.0));
        // 90 more in (0, 10]: p50 falls in the first bucket, p95 in the second.
        h.add_sparse(&[0], &[90]);
        let p50 = h.quantile(BOUNDS, 0.5).unwrap();
        assert!((p50 - 50.0 / 90.0 * 10.0).abs() < 1e-9, "{p50}");
        assert_eq!(h.quantile(BOUNDS, 0.95), Some(15.0));
        // The open bucket answers its lower bound.
        h.add_sparse(&[4], &[1000]);
        assert_eq!(h.quantile(BOUNDS, 0.99), Some(100.0));
    }

    #[test]
    fn estimates_stay_within_one_bucket_of_the_exact_percentile() {
        let bounds = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000];
        let latencies: Vec<i32> = (0..1000).map(|i| (i * 37) % 900 + 1).collect();
        let mut h = LatencyHistogram::new(&bounds);
        for &l in &latencies {
            let bucket = bounds.iter().position(|&b| l <= b).unwrap_or(bounds.len());
            h.add_sparse(&[bucket as i32], &[1]);
        }
        let mut sorted = latencies.clone();
        sorted.sort();
        for q in [0.5, 0.95, 0.99] {
            let exact = f64::from(sorted[(q * 1000.0) as usize - 1]);
            let estimate = h.quantile(&bounds, q).unwrap();
            let bucket = bounds.iter().position(|&b| f64::from(b) >= exact).unwrap();
            let (lower, upper) = (if bucket == 0 { 0 } else { bounds[bucket - 1] }, bounds[bucket]);
            assert!(
                estimate >= f64::from(lower) && estimate <= f64::from(upper),
                "q {q}: {estimate} vs {exact}"
            );
        }
    }

    #[test]
    fn sparse_counts_merge_and_regroup() {
        let mut a = LatencyHistogram::new(BOUNDS);
        a.add_sparse(&[0, 2, 4], &[1, 2, 3]);
        let mut b = LatencyHistogram::new(BOUNDS);
        b.add_sparse(&[2, 9, -1], &[5, 1, 1]);
        a.merge(&b);
        // Out-of-range buckets land at the ends.
        assert_eq!(a.counts, vec![2, 0, 7, 0, 4]);
        assert_eq!(a.total(), 13);
        // Coarse bounds 20 and 100: (0,20] gets buckets 0-1, (20,100] buckets 2-3, the rest open.
        assert_eq!(a.regroup(BOUNDS, &[20, 100]), vec![2, 7, 4]);
    }
}
