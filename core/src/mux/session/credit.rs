//! Receive windows: how much the peer may send, and when to give credit back.
//!
//! Credit counts Message data bytes. The invariant, for a stream and for the connection alike:
//! `available + held + unreturned = target`, where `held` is what the peer sent that has not
//! left the session yet and `unreturned` what left it and was not yet granted back.

use core::time::Duration;

use crate::time::Instant;

/// One receive window (a stream's or the connection's).
#[derive(Clone, Debug)]
pub(super) struct RecvWindow {
    /// Bytes the peer may still send.
    available: u64,
    /// Bytes read or discarded and not yet granted back.
    unreturned: u64,
    /// The window's current size.
    target: u64,
    max: u64,
    /// When the current round of `target` bytes started being consumed.
    round_started: Instant,
    /// Bytes released in the current round.
    round_released: u64,
    /// Credit granted beyond the window for one message larger than it; absorbed, not granted
    /// again, as those bytes are released.
    stretched: u64,
    /// Bytes the window is to shrink by; absorbed the same way, after `stretched`.
    shrinking: u64,
}

impl RecvWindow {
    pub fn new(initial: u64, max: u64, now: Instant) -> RecvWindow {
        RecvWindow {
            available: initial,
            unreturned: 0,
            target: initial,
            max: max.max(initial),
            round_started: now,
            round_released: 0,
            stretched: 0,
            shrinking: 0,
        }
    }

    /// The peer sent `n` bytes: false if that is more than it was allowed.
    pub fn consume(&mut self, n: u64) -> bool {
        match self.available.checked_sub(n) {
            Some(left) => {
                self.available = left;
                true
            }
            None => false,
        }
    }

    /// `n` bytes left the session (read, or discarded): returns the credit to grant the peer,
    /// if it is time to, and how much the window grew.
    ///
    /// Credit goes back once half a window is unreturned, so a reader that keeps up never
    /// stalls the sender. When a whole window is released faster than `autotune`, the reader is
    /// keeping up and the window doubles, by at most `may_grow` bytes and up to its maximum, so
    /// one stream can fill a fast link.
    pub fn release(
        &mut self,
        n: u64,
        now: Instant,
        autotune: Duration,
        may_grow: u64,
    ) -> (Option<u64>, u64) {
        let absorbed = n.min(self.stretched);
        self.stretched -= absorbed;
        let shrunk = (n - absorbed).min(self.shrinking);
        self.shrinking -= shrunk;
        self.target -= absorbed + shrunk;
        let n = n - absorbed - shrunk;
        self.unreturned += n;
        self.round_released += n;
        let mut grant = 0;
        let mut grew = 0;
        if self.round_released >= self.target {
            if now.duration_since(self.round_started) < autotune {
                let grown = self.target.saturating_mul(2).min(self.max);
                grew = (grown - self.target).min(may_grow);
                self.target += grew;
                grant += grew;
            }
            self.round_started = now;
            self.round_released = 0;
        }
        if self.unreturned >= self.target / 2 {
            grant += self.unreturned;
            self.unreturned = 0;
        }
        self.available += grant;
        ((grant > 0).then_some(grant), grew)
    }

    /// Let the peer send `n` bytes more than the window: for a message that does not fit in it.
    /// Returns the credit to grant.
    pub fn stretch(&mut self, n: u64) -> u64 {
        self.stretched += n;
        self.target += n;
        self.available += n;
        n
    }

    /// Aim the window at `size` bytes: returns the credit to grant. A larger window is granted
    /// at once; a smaller one takes effect as bytes are released and not granted back.
    pub fn retarget(&mut self, size: u64) -> u64 {
        let aimed = self.aimed();
        if size < aimed {
            self.shrinking += aimed - size;
            return 0;
        }
        let more = size - aimed;
        let cancelled = more.min(self.shrinking);
        self.shrinking -= cancelled;
        let grant = more - cancelled;
        self.target += grant;
        self.available += grant;
        grant
    }

    /// The size the window is heading for: its size once stretches and shrinks are absorbed.
    pub fn aimed(&self) -> u64 {
        self.target - self.stretched - self.shrinking
    }

    /// Credit granted beyond the window and not yet absorbed.
    pub fn stretched(&self) -> u64 {
        self.stretched
    }

    /// The window's size now.
    pub fn target(&self) -> u64 {
        self.target
    }

    /// Bytes the peer may still send.
    pub fn available(&self) -> u64 {
        self.available
    }

    /// Bytes read or discarded and not yet granted back.
    pub fn unreturned(&self) -> u64 {
        self.unreturned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TUNE: Duration = Duration::from_millis(10);

    #[test]
    fn credit_returns_at_half_a_window_and_the_invariant_holds() {
        let now = Instant::ZERO;
        let mut w = RecvWindow::new(100, 100, now);
        assert!(w.consume(60));
        assert!(!w.consume(41), "more than the window");
        assert_eq!(w.release(40, now + TUNE * 2, TUNE, u64::MAX), (None, 0));
        assert_eq!(w.available() + 20 + w.unreturned(), w.target());
        assert_eq!(w.release(20, now + TUNE * 2, TUNE, u64::MAX), (Some(60), 0));
        assert_eq!((w.available(), w.unreturned()), (100, 0));
    }

    #[test]
    fn a_reader_that_keeps_up_grows_the_window_to_its_maximum() {
        let mut now = Instant::ZERO;
        let mut w = RecvWindow::new(100, 400, now);
        let mut granted = 0;
        for _ in 0..10 {
            assert!(w.consume(w.available()));
            let held = w.target() - w.available() - w.unreturned();
            now = now + Duration::from_millis(1);
            granted += w.release(held, now, TUNE, u64::MAX).0.unwrap_or(0);
        }
        assert_eq!(w.target(), 400);
        assert!(granted > 0);
        assert_eq!(w.available() + w.unreturned(), w.target());
    }

    #[test]
    fn a_slow_reader_keeps_the_window_where_it_is() {
        let mut now = Instant::ZERO;
        let mut w = RecvWindow::new(100, 400, now);
        for _ in 0..10 {
            assert!(w.consume(w.available()));
            now = now + Duration::from_millis(50);
            let held = w.target() - w.available() - w.unreturned();
            w.release(held, now, TUNE, u64::MAX);
        }
        assert_eq!(w.target(), 100);
    }

    #[test]
    fn a_stretch_is_absorbed_as_its_bytes_are_released() {
        let now = Instant::ZERO;
        let mut w = RecvWindow::new(100, 100, now);
        assert!(w.consume(100));
        assert_eq!(w.stretch(50), 50);
        assert!(w.consume(50));
        assert_eq!(w.release(60, now, TUNE, 0), (None, 0));
        assert_eq!((w.target(), w.stretched(), w.unreturned()), (100, 0, 10));
        assert_eq!(w.release(90, now, TUNE, 0), (Some(100), 0));
        assert_eq!(w.available(), 100);
    }

    #[test]
    fn a_window_shrinks_as_its_bytes_come_back_and_grows_at_once() {
        let now = Instant::ZERO;
        let mut w = RecvWindow::new(100, 400, now);
        assert!(w.consume(100));
        assert_eq!(w.retarget(40), 0);
        assert_eq!((w.target(), w.aimed()), (100, 40));
        // The first 60 bytes back are kept; the rest is granted as usual.
        assert_eq!(w.release(50, now, Duration::ZERO, 0), (None, 0));
        assert_eq!(w.release(30, now, Duration::ZERO, 0), (Some(20), 0));
        assert_eq!((w.target(), w.aimed(), w.available()), (40, 40, 20));
        // Growing past a shrink in progress cancels it first.
        // 40 bytes are held: 20 of the first 100, and these 20.
        assert!(w.consume(20));
        assert_eq!(w.retarget(10), 0);
        assert_eq!(w.retarget(50), 10);
        assert_eq!((w.target(), w.aimed(), w.available()), (50, 50, 10));
        assert_eq!(w.available() + 40 + w.unreturned(), w.target());
    }

    #[test]
    fn growth_stops_at_the_budget_it_is_given() {
        let now = Instant::ZERO;
        let mut w = RecvWindow::new(100, 400, now);
        assert!(w.consume(100));
        assert_eq!(w.release(100, now, TUNE, 30), (Some(130), 30));
        assert_eq!(w.target(), 130);
    }
}
