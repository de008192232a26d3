//! Time as the caller sees it.
//!
//! The core never reads a clock. Every input that depends on time carries a [`Instant`]: a count of
//! nanoseconds since an epoch the caller picks (process start, a virtual clock in a simulation, the
//! Unix epoch). A `now` earlier than one a machine has already seen is taken as that one: every
//! machine passes its inputs' `now` through a [`Monotonic`], so time that goes backwards (a clock
//! stepped back, two threads racing to read it) means "no time passed", the same way everywhere.
//!
//! ```
//! use core::time::Duration;
//! use weir::time::Instant;
//!
//! let start = Instant::from_millis(5);
//! let deadline = start + Duration::from_secs(15);
//! assert_eq!(deadline.duration_since(start), Duration::from_secs(15));
//! assert_eq!(start.duration_since(deadline), Duration::ZERO);
//! ```

use core::ops::{Add, Sub};
use core::time::Duration;

/// A point in time: nanoseconds since an epoch chosen by the caller.
///
/// Arithmetic saturates instead of overflowing, so a deadline far in the future is simply
/// [`Instant::MAX`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Instant(u64);

impl Instant {
    /// The epoch itself.
    pub const ZERO: Instant = Instant(0);
    /// The latest representable instant, about 584 years after the epoch.
    pub const MAX: Instant = Instant(u64::MAX);

    /// The instant `nanos` nanoseconds after the epoch.
    pub const fn from_nanos(nanos: u64) -> Instant {
        Instant(nanos)
    }

    /// The instant `micros` microseconds after the epoch (saturating).
    pub const fn from_micros(micros: u64) -> Instant {
        Instant(micros.saturating_mul(1_000))
    }

    /// The instant `millis` milliseconds after the epoch (saturating).
    pub const fn from_millis(millis: u64) -> Instant {
        Instant(millis.saturating_mul(1_000_000))
    }

    /// The instant `secs` seconds after the epoch (saturating).
    pub const fn from_secs(secs: u64) -> Instant {
        Instant(secs.saturating_mul(1_000_000_000))
    }

    /// Nanoseconds since the epoch.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Time elapsed from `earlier` to `self`, or zero if `earlier` is later.
    pub const fn duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// `self + duration`, or `None` past [`Instant::MAX`].
    pub fn checked_add(self, duration: Duration) -> Option<Instant> {
        let nanos = u64::try_from(duration.as_nanos()).ok()?;
        self.0.checked_add(nanos).map(Instant)
    }

    /// `self + duration`, clamped to [`Instant::MAX`].
    pub fn saturating_add(self, duration: Duration) -> Instant {
        self.checked_add(duration).unwrap_or(Instant::MAX)
    }

    /// `self - duration`, clamped to [`Instant::ZERO`].
    pub fn saturating_sub(self, duration: Duration) -> Instant {
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_sub(nanos))
    }
}

/// The latest `now` a machine has been given: the one place where time that goes backwards is
/// clamped.
///
/// ```
/// use weir::time::{Instant, Monotonic};
///
/// let mut clock = Monotonic::default();
/// assert_eq!(clock.observe(Instant::from_secs(5)), Instant::from_secs(5));
/// assert_eq!(clock.observe(Instant::from_secs(3)), Instant::from_secs(5)); // went backwards
/// assert_eq!(clock.now(), Instant::from_secs(5));
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Monotonic {
    latest: Instant,
}

impl Monotonic {
    /// Takes in a caller's `now` and gives back the machine's: the later of it and every earlier
    /// one.
    pub fn observe(&mut self, now: Instant) -> Instant {
        self.latest = self.latest.max(now);
        self.latest
    }

    /// The latest `now` observed ([`Instant::ZERO`] before the first).
    pub const fn now(self) -> Instant {
        self.latest
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;

    /// Saturating: see [`Instant::saturating_add`].
    fn add(self, duration: Duration) -> Instant {
        self.saturating_add(duration)
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;

    /// Saturating: see [`Instant::saturating_sub`].
    fn sub(self, duration: Duration) -> Instant {
        self.saturating_sub(duration)
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;

    /// Saturating: see [`Instant::duration_since`].
    fn sub(self, earlier: Instant) -> Duration {
        self.duration_since(earlier)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_agree() {
        assert_eq!(Instant::from_secs(2), Instant::from_millis(2_000));
        assert_eq!(Instant::from_millis(3), Instant::from_micros(3_000));
        assert_eq!(Instant::from_micros(4).as_nanos(), 4_000);
    }

    #[test]
    fn arithmetic_saturates() {
        assert_eq!(Instant::from_secs(u64::MAX), Instant::MAX);
        assert_eq!(Instant::MAX + Duration::from_nanos(1), Instant::MAX);
        assert_eq!(Instant::ZERO - Duration::from_secs(1), Instant::ZERO);
        assert_eq!(
            Instant::from_nanos(5) - Instant::from_nanos(9),
            Duration::ZERO
        );
        assert_eq!(Instant::ZERO.checked_add(Duration::MAX), None);
        assert_eq!(
            Instant::from_nanos(10).checked_add(Duration::from_nanos(5)),
            Some(Instant::from_nanos(15))
        );
    }
}
