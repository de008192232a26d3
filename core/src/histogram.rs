//! One histogram type for every distribution a machine records: latencies in nanoseconds, sizes
//! in bytes.
//!
//! ```
//! use core::time::Duration;
//! use weir::histogram::Histogram;
//!
//! let mut latency = Histogram::default();
//! latency.record_duration(Duration::from_micros(3));
//! latency.record_duration(Duration::from_millis(2));
//! assert_eq!(latency.count, 2);
//! // Bucket i holds [2^i, 2^(i+1)): 2 ms = 2,000,000 ns falls in [2^20, 2^21).
//! assert_eq!(latency.quantile_lower_bound(1.0), Some(1 << 20));
//! assert_eq!(latency.max, 2_000_000);
//! ```

use alloc::vec::Vec;
use core::time::Duration;

/// Power-of-two buckets: bucket `i` counts values in `[2^i, 2^(i+1))`, and bucket 0 also counts
/// 0. The bucket vector grows to the highest bucket seen, at most 64 entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Histogram {
    /// The bucket counts, up to the highest non-empty bucket.
    pub buckets: Vec<u64>,
    /// How many values were recorded.
    pub count: u64,
    /// Their sum (saturating).
    pub sum: u64,
    /// The largest value recorded (0 when empty).
    pub max: u64,
}

impl Histogram {
    /// Records one value.
    pub fn record(&mut self, value: u64) {
        let bucket = 63 - (value | 1).leading_zeros() as usize;
        if self.buckets.len() <= bucket {
            self.buckets.resize(bucket + 1, 0);
        }
        if let Some(b) = self.buckets.get_mut(bucket) {
            *b += 1;
        }
        self.count += 1;
        self.sum = self.sum.saturating_add(value);
        self.max = self.max.max(value);
    }

    /// Records a duration, in nanoseconds (saturating at `u64::MAX`, about 584 years).
    pub fn record_duration(&mut self, duration: Duration) {
        self.record(u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Adds every value recorded in `other`, as if each had been recorded here.
    pub fn merge(&mut self, other: &Histogram) {
        if self.buckets.len() < other.buckets.len() {
            self.buckets.resize(other.buckets.len(), 0);
        }
        for (into, n) in self.buckets.iter_mut().zip(&other.buckets) {
            *into += n;
        }
        self.count += other.count;
        self.sum = self.sum.saturating_add(other.sum);
        self.max = self.max.max(other.max);
    }

    /// The lower bound of the bucket holding the `q`-quantile (0.0 to 1.0), or `None` if empty.
    pub fn quantile_lower_bound(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        // The rank is ceil(count * q), without `f64::ceil`, which needs std.
        let scaled = self.count as f64 * q.clamp(0.0, 1.0);
        let mut rank = scaled as u64;
        if (rank as f64) < scaled {
            rank += 1;
        }
        let rank = rank.max(1);
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(if i == 0 { 0 } else { 1 << i });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_powers_of_two() {
        let mut h = Histogram::default();
        for v in [0, 1, 2, 3, 4, 1000, u64::MAX] {
            h.record(v);
        }
        assert_eq!(h.buckets.len(), 64);
        assert_eq!(h.buckets[0], 2);
        assert_eq!(h.buckets[1], 2);
        assert_eq!(h.buckets[2], 1);
        assert_eq!(h.buckets[9], 1);
        assert_eq!(h.buckets[63], 1);
        assert_eq!((h.count, h.sum, h.max), (7, u64::MAX, u64::MAX));
        assert_eq!(h.quantile_lower_bound(0.5), Some(2));
        assert_eq!(Histogram::default().quantile_lower_bound(0.5), None);
    }

    #[test]
    fn merge_is_recording_both() {
        let (mut a, mut b, mut both) = (
            Histogram::default(),
            Histogram::default(),
            Histogram::default(),
        );
        for v in [3, 1000] {
            a.record(v);
            both.record(v);
        }
        for v in [7, 1 << 40] {
            b.record(v);
            both.record(v);
        }
        a.merge(&b);
        assert_eq!(a, both);
    }

    #[test]
    fn durations_are_nanoseconds() {
        let mut h = Histogram::default();
        h.record_duration(Duration::from_micros(1));
        h.record_duration(Duration::MAX);
        assert_eq!((h.sum, h.max), (u64::MAX, u64::MAX));
        assert_eq!(h.buckets[9], 1); // 1,000 ns is in [512, 1024)
    }
}
