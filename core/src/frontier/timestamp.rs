//! Hybrid-logical-clock timestamps and the distance between two timestamps.

use core::fmt;
use core::time::Duration;

/// A hybrid-logical-clock timestamp: wall-clock nanoseconds and a logical counter that orders
/// events within one nanosecond. Ordered by wall time, then logical.
///
/// ```
/// use weir::frontier::Timestamp;
///
/// let t = Timestamp::new(5, i32::MAX);
/// assert_eq!(t.next(), Timestamp::new(6, 0));
/// assert!(Timestamp::new(5, 1) < Timestamp::new(6, 0));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Timestamp {
    /// Wall-clock nanoseconds since the Unix epoch.
    pub wall: i64,
    /// Orders events that share a wall time.
    pub logical: i32,
}

impl Timestamp {
    /// The zero timestamp, which CockroachDB treats as "not set".
    pub const ZERO: Timestamp = Timestamp::new(0, 0);
    /// The largest timestamp.
    pub const MAX: Timestamp = Timestamp::new(i64::MAX, i32::MAX);

    /// The timestamp `(wall, logical)`.
    pub const fn new(wall: i64, logical: i32) -> Timestamp {
        Timestamp { wall, logical }
    }

    /// The smallest timestamp after this one: the logical counter plus one, carrying into the wall
    /// time when the counter is full. [`Timestamp::MAX`] has no successor and is returned as is.
    pub const fn next(self) -> Timestamp {
        if self.logical < i32::MAX {
            Timestamp::new(self.wall, self.logical + 1)
        } else if self.wall < i64::MAX {
            Timestamp::new(self.wall + 1, 0)
        } else {
            self
        }
    }
}

/// Seconds with nine decimals, then the logical counter: `1700000000.000000001,2`.
impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.wall.div_euclid(1_000_000_000);
        let nanos = self.wall.rem_euclid(1_000_000_000);
        write!(f, "{secs}.{nanos:09},{}", self.logical)
    }
}

/// Timestamps that have a wall-clock distance, which is what a lag threshold is measured in.
pub trait Elapsed {
    /// Wall time from `earlier` to `self`; zero if `earlier` is not earlier.
    fn elapsed_since(&self, earlier: &Self) -> Duration;
}

impl Elapsed for Timestamp {
    fn elapsed_since(&self, earlier: &Timestamp) -> Duration {
        let nanos = i128::from(self.wall) - i128::from(earlier.wall);
        Duration::from_nanos(u64::try_from(nanos.max(0)).unwrap_or(u64::MAX))
    }
}

/// Plain nanosecond counts.
impl Elapsed for u64 {
    fn elapsed_since(&self, earlier: &u64) -> Duration {
        Duration::from_nanos(self.saturating_sub(*earlier))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn next_carries_and_saturates() {
        assert_eq!(Timestamp::new(1, 2).next(), Timestamp::new(1, 3));
        assert_eq!(Timestamp::new(1, i32::MAX).next(), Timestamp::new(2, 0));
        assert_eq!(Timestamp::MAX.next(), Timestamp::MAX);
        assert!(Timestamp::new(-1, 5) < Timestamp::ZERO);
    }

    #[test]
    fn elapsed_is_wall_time_and_saturates() {
        let a = Timestamp::new(1_000, 7);
        let b = Timestamp::new(4_000, 0);
        assert_eq!(b.elapsed_since(&a), Duration::from_nanos(3_000));
        assert_eq!(a.elapsed_since(&b), Duration::ZERO);
        let far = Timestamp::new(i64::MAX, 0).elapsed_since(&Timestamp::new(i64::MIN, 0));
        assert_eq!(far, Duration::from_nanos(u64::MAX));
        assert_eq!(9u64.elapsed_since(&4), Duration::from_nanos(5));
    }

    #[test]
    fn display_reads_like_cockroachdb() {
        assert_eq!(
            Timestamp::new(1_500_000_000, 3).to_string(),
            "1.500000000,3"
        );
        assert_eq!(Timestamp::new(-1, 0).to_string(), "-1.999999999,0");
    }
}
