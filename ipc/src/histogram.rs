//! Flat histogram buckets that index exactly as `hdrhistogram` does, so that
//! workers can record with one atomic add and the reader can rebuild a real
//! `hdrhistogram::Histogram`.

use hdrhistogram::Histogram;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Lowest trackable latency: 1 µs.
pub const HIST_LOW_US: u64 = 1;
/// Highest trackable latency: 100 s in µs.
pub const HIST_HIGH_US: u64 = 100_000_000;
/// Significant decimal digits kept.
pub const HIST_SIGFIG: u8 = 3;
/// Buckets per histogram for the bounds above (pinned by a unit test).
pub const HIST_BUCKETS: usize = 18_432;

/// Index arithmetic of an HdrHistogram with given bounds.
///
/// Values are grouped in power-of-two "buckets", each split into
/// `sub_count` linear sub-buckets; the first bucket uses all of its
/// sub-buckets, later ones only the upper half (the lower half overlaps the
/// previous bucket at half the resolution).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BucketLayout {
    unit_magnitude: u32,
    sub_half_magnitude: u32,
    sub_half: u64,
    sub_mask: u64,
    leading_zeros_base: u32,
    len: usize,
}

impl BucketLayout {
    /// The layout of the stats region's histograms.
    pub fn standard() -> BucketLayout {
        BucketLayout::new(HIST_LOW_US, HIST_HIGH_US, HIST_SIGFIG)
    }

    /// The layout for `low..=high` with `sigfig` significant digits
    /// (`low >= 1`, `sigfig` in 1..=5, as `hdrhistogram` requires).
    pub fn new(low: u64, high: u64, sigfig: u8) -> BucketLayout {
        let unit_magnitude = 63 - low.max(1).leading_zeros();
        let largest_single_unit = 2 * 10u64.pow(u32::from(sigfig));
        let sub_count_magnitude = 64 - (largest_single_unit - 1).leading_zeros();
        let sub_count = 1u64 << sub_count_magnitude;
        let mut smallest_untrackable = sub_count << unit_magnitude;
        let mut buckets = 1u64;
        while smallest_untrackable <= high {
            if smallest_untrackable > u64::MAX / 2 {
                buckets += 1;
                break;
            }
            smallest_untrackable <<= 1;
            buckets += 1;
        }
        BucketLayout {
            unit_magnitude,
            sub_half_magnitude: sub_count_magnitude - 1,
            sub_half: sub_count / 2,
            sub_mask: (sub_count - 1) << unit_magnitude,
            leading_zeros_base: 64 - unit_magnitude - sub_count_magnitude,
            len: ((buckets + 1) * (sub_count / 2)) as usize,
        }
    }

    /// Number of buckets.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a layout has at least one bucket.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bucket a value falls in; values above the range go to the last.
    #[inline]
    pub fn index(&self, value: u64) -> usize {
        let bucket = self.leading_zeros_base - (value | self.sub_mask).leading_zeros();
        let sub = value >> (bucket + self.unit_magnitude);
        let idx = ((u64::from(bucket) + 1) << self.sub_half_magnitude) + sub - self.sub_half;
        (idx as usize).min(self.len - 1)
    }

    /// The lowest value that lands in bucket `index`.
    pub fn value(&self, index: usize) -> u64 {
        let mut bucket = (index >> self.sub_half_magnitude) as i64 - 1;
        let mut sub = (index as u64 & (self.sub_half - 1)) + self.sub_half;
        if bucket < 0 {
            sub -= self.sub_half;
            bucket = 0;
        }
        sub << (bucket as u32 + self.unit_magnitude)
    }

    /// Adds the counts of `buckets` into `into` (which must share this
    /// layout's bounds).
    pub fn add_into(&self, buckets: &[AtomicU64], into: &mut Histogram<u64>) {
        for (i, b) in buckets.iter().enumerate() {
            let n = b.load(Relaxed);
            if n > 0 {
                // The value is within bounds by construction, so this
                // cannot fail; a failure would only mean a smaller count.
                let _ = into.record_n(self.value(i), n);
            }
        }
    }

    /// An empty histogram with the bounds of the stats region.
    pub fn empty_histogram() -> Histogram<u64> {
        // The constant bounds are valid for hdrhistogram, so `new_with_bounds`
        // succeeds; fall back to an auto-resizing one to stay panic-free.
        Histogram::new_with_bounds(HIST_LOW_US, HIST_HIGH_US, HIST_SIGFIG)
            .or_else(|_| Histogram::new(HIST_SIGFIG))
            .unwrap_or_else(|_| Histogram::new(3).expect("3 significant digits is valid"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_against_hdrhistogram(low: u64, high: u64, sigfig: u8) {
        let layout = BucketLayout::new(low, high, sigfig);
        let h = Histogram::<u64>::new_with_bounds(low, high, sigfig).expect("valid bounds");
        assert_eq!(layout.len(), h.distinct_values(), "bucket count");
        for (i, item) in h.iter_all().enumerate() {
            let v = item.value_iterated_to();
            let lowest = h.lowest_equivalent(v);
            assert_eq!(layout.value(i), lowest, "lowest value of bucket {i}");
            assert_eq!(layout.index(lowest), i, "index of {lowest}");
            assert_eq!(layout.index(v), i, "index of {v}");
        }
    }

    #[test]
    fn standard_layout_has_the_documented_bucket_count() {
        assert_eq!(BucketLayout::standard().len(), HIST_BUCKETS);
    }

    #[test]
    fn index_math_matches_hdrhistogram_for_the_region_bounds() {
        check_against_hdrhistogram(HIST_LOW_US, HIST_HIGH_US, HIST_SIGFIG);
    }

    #[test]
    fn index_math_matches_hdrhistogram_for_other_bounds() {
        check_against_hdrhistogram(1, 3_600_000_000, 2);
        check_against_hdrhistogram(1, 60_000_000, 3);
        check_against_hdrhistogram(1000, 1_000_000_000, 3);
    }

    #[test]
    fn values_above_the_range_go_to_the_last_bucket() {
        let layout = BucketLayout::standard();
        assert_eq!(layout.index(u64::MAX / 4), layout.len() - 1);
    }

    #[test]
    fn rebuilt_histogram_equals_a_directly_recorded_one() {
        let layout = BucketLayout::standard();
        let buckets: Vec<AtomicU64> = (0..layout.len()).map(|_| AtomicU64::new(0)).collect();
        let mut direct = BucketLayout::empty_histogram();
        let mut x: u64 = 88172645463325252;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = 1 + x % 5_000_000;
            buckets[layout.index(v)].fetch_add(1, Relaxed);
            direct.record(v).expect("in range");
        }
        let mut rebuilt = BucketLayout::empty_histogram();
        layout.add_into(&buckets, &mut rebuilt);
        assert_eq!(rebuilt.len(), direct.len());
        for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(
                rebuilt.value_at_quantile(q),
                direct.value_at_quantile(q),
                "q={q}"
            );
        }
    }
}
