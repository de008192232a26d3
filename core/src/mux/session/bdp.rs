//! (Mux) Sizing the connection's receive window from a measured round trip.
//!
//! The receiver pings the sender while Message data arrives and times the pong: that is a round
//! trip, and the Message bytes that arrived meanwhile over it are a delivery rate. The window
//! aims at twice the bandwidth-delay product, the highest recent rate times the lowest round
//! trip: enough that the sender never waits for credit on a link of that rate and delay, and
//! little more, so that a small frame never queues behind megabytes of someone else's data in
//! the socket buffers on the way (a window that only grows queues its whole size there).
//!
//! The window stays within `min_connection_window` and `max_connection_window`.
//!
//! The lowest round trip is the path without queues. It is taken afresh every
//! [`MIN_RTT_LIFETIME`]: the window drops to its floor for one round trip, so that what is in
//! flight drains and the next ping measures the path again (a path that grew slower would
//! otherwise keep a window too small for it for good).

use core::time::Duration;

use crate::time::Instant;

/// A new ping waits for this many Message bytes since the last round trip ended (64 KiB, or a
/// quarter of the initial window if that is less), so a connection carrying small calls pings
/// rarely.
pub(super) const PING_AFTER_BYTES: u64 = 64 << 10;
/// The window aims at this many bandwidth-delay products.
const GAIN: u64 = 2;
/// Rate samples the estimate takes the highest of.
const RATE_SAMPLES: usize = 8;
/// How long the lowest round trip counts before it is measured again (10 s, as BBR).
pub const MIN_RTT_LIFETIME: Duration = Duration::from_secs(10);

/// The estimator's state, for one connection.
#[derive(Clone, Debug)]
pub(super) struct Bdp {
    /// Message bytes between round trips (see [`PING_AFTER_BYTES`]).
    ping_after: u64,
    /// The ping in flight: its token, when it left and the Message bytes received by then.
    outstanding: Option<(u64, Instant, u64)>,
    next_token: u64,
    /// Message bytes received on the connection.
    received: u64,
    /// `received` when the last round trip ended.
    round_end: u64,
    /// The lowest round trip, and when it was measured.
    min_rtt: Option<(Duration, Instant)>,
    /// Recent delivery rates, bytes per second.
    rates: [u64; RATE_SAMPLES],
    next_rate: usize,
    /// The window is at its floor so that the next round trip measures the path empty.
    probing: bool,
}

impl Bdp {
    /// An estimator for a connection whose window starts at `initial` bytes.
    pub fn new(initial: u64) -> Bdp {
        Bdp {
            ping_after: PING_AFTER_BYTES.min(initial / 4).max(1),
            outstanding: None,
            next_token: 1,
            received: 0,
            round_end: 0,
            min_rtt: None,
            rates: [0; RATE_SAMPLES],
            next_rate: 0,
            probing: false,
        }
    }

    /// `n` Message bytes arrived: returns the token of a ping to send, if one is due.
    pub fn on_data(&mut self, n: u64, now: Instant) -> Option<u64> {
        self.received = self.received.saturating_add(n);
        if self.outstanding.is_some() || self.received - self.round_end < self.ping_after {
            return None;
        }
        let token = self.next_token;
        self.next_token = self.next_token.wrapping_add(1);
        self.outstanding = Some((token, now, self.received));
        Some(token)
    }

    /// The round trip a pong with `token` arriving at `now` would close, if it answers the
    /// ping in flight.
    pub fn round_trip(&self, token: u64, now: Instant) -> Option<Duration> {
        let (sent_token, sent_at, _) = self.outstanding?;
        (sent_token == token).then(|| now.duration_since(sent_at).max(Duration::from_nanos(1)))
    }

    /// A pong carrying `token` arrived. Returns the window to aim at, between `floor` and
    /// `max`, if the pong answered the ping in flight; `drained` says whether the window is at
    /// its floor (a shrink the session asked for is complete).
    pub fn on_pong(
        &mut self,
        token: u64,
        now: Instant,
        window: u64,
        drained: bool,
        (floor, max): (u64, u64),
    ) -> Option<u64> {
        let (sent_token, sent_at, received_then) = self.outstanding?;
        if sent_token != token {
            return None;
        }
        self.outstanding = None;
        self.round_end = self.received;
        let rtt = now.duration_since(sent_at).max(Duration::from_nanos(1));
        let delivered = self.received - received_then;
        let rate = u128::from(delivered) * 1_000_000_000 / rtt.as_nanos();
        self.rates[self.next_rate] = u64::try_from(rate).unwrap_or(u64::MAX);
        self.next_rate = (self.next_rate + 1) % RATE_SAMPLES;
        let min_rtt = match self.min_rtt {
            // Measured while the window was at its floor: the path as it is now.
            Some(_) if self.probing && drained => rtt,
            Some(_) if self.probing => return Some(floor),
            // A round trip within a quarter of the lowest confirms it.
            Some((min, _)) if rtt <= min + min / 4 => min.min(rtt),
            // The lowest is too old: measure the path again, with the window drained to its
            // floor unless it is there already.
            Some((_, at)) if now.duration_since(at) >= MIN_RTT_LIFETIME => {
                if !drained {
                    self.probing = true;
                    return Some(floor);
                }
                rtt
            }
            Some((min, _)) => return Some(self.estimate(min, window, floor, max)),
            None => rtt,
        };
        self.probing = false;
        self.min_rtt = Some((min_rtt, now));
        Some(self.estimate(min_rtt, window, floor, max))
    }

    /// `GAIN` bandwidth-delay products, between `floor` and `max`: at most twice `window`, so
    /// one burst cannot make it leap, and `window` itself unless the aim is a quarter below it,
    /// so that it does not shrink and grow back with every sample.
    fn estimate(&self, min_rtt: Duration, window: u64, floor: u64, max: u64) -> u64 {
        let rate = self.rates.iter().copied().max().unwrap_or(0);
        let bdp = u128::from(rate) * min_rtt.as_nanos() / 1_000_000_000;
        let aim = u64::try_from(bdp)
            .unwrap_or(u64::MAX)
            .saturating_mul(GAIN)
            .min(window.saturating_mul(2));
        let aim = if aim < window && aim > window - window / 4 {
            window
        } else {
            aim
        };
        aim.clamp(floor, max.max(floor))
    }

    /// The lowest round trip measured, if any.
    pub fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt.map(|(rtt, _)| rtt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: (u64, u64) = (1 << 20, 64 << 20);

    /// One round trip of `rtt` during which `bytes` arrive, with the window at `window`.
    fn round(bdp: &mut Bdp, now: &mut Instant, rtt: Duration, bytes: u64, window: u64) -> u64 {
        let token = bdp.on_data(PING_AFTER_BYTES, *now).expect("a ping is due");
        *now = *now + rtt;
        assert_eq!(bdp.on_data(bytes, *now), None, "one ping at a time");
        bdp.on_pong(token, *now, window, window <= LIMITS.0, LIMITS)
            .expect("the pong answers the ping")
    }

    #[test]
    fn the_window_follows_rate_times_round_trip() {
        let mut bdp = Bdp::new(LIMITS.0);
        let mut now = Instant::ZERO;
        // 100 MB/s over 50 ms: 5 MB per round trip, a window of 10 MB, reached by doubling.
        let rtt = Duration::from_millis(50);
        let mut window = LIMITS.0;
        for _ in 0..8 {
            let delivered = window.min(5_000_000);
            window = round(&mut bdp, &mut now, rtt, delivered, window);
        }
        assert_eq!(window, 10_000_000);
        assert_eq!(bdp.min_rtt(), Some(rtt));
    }

    #[test]
    fn queueing_delay_does_not_grow_the_window() {
        let mut bdp = Bdp::new(LIMITS.0);
        let mut now = Instant::ZERO;
        // Loopback: 2 GB/s and 50 us, a product far below the floor.
        let window = round(
            &mut bdp,
            &mut now,
            Duration::from_micros(50),
            100_000,
            LIMITS.0,
        );
        assert_eq!(window, LIMITS.0);
        // The window fills the socket buffers: the round trip grows with it, the rate does not.
        for _ in 0..20 {
            let window = round(
                &mut bdp,
                &mut now,
                Duration::from_micros(500),
                1_000_000,
                window,
            );
            assert_eq!(window, LIMITS.0);
        }
    }

    #[test]
    fn an_old_minimum_is_measured_again_at_the_floor() {
        let mut bdp = Bdp::new(LIMITS.0);
        let mut now = Instant::ZERO;
        // 400 MB/s over 10 ms: a window of 8 MB.
        let mut window = LIMITS.0;
        for _ in 0..8 {
            let delivered = window.min(4_000_000);
            window = round(
                &mut bdp,
                &mut now,
                Duration::from_millis(10),
                delivered,
                window,
            );
        }
        assert_eq!(window, 8_000_000);
        // The path now takes 40 ms. Once the minimum is old, the window drops to the floor...
        now = now + MIN_RTT_LIFETIME;
        let slow = Duration::from_millis(40);
        window = round(&mut bdp, &mut now, slow, window, window);
        assert_eq!(window, LIMITS.0);
        // ...the next round trip measures the path, and the window grows back to twice its
        // product.
        for _ in 0..8 {
            let delivered = window.min(16_000_000);
            window = round(&mut bdp, &mut now, slow, delivered, window);
        }
        assert_eq!(bdp.min_rtt(), Some(slow));
        assert_eq!(window, 32_000_000);
    }

    #[test]
    fn a_stale_or_unknown_pong_changes_nothing() {
        let mut bdp = Bdp::new(LIMITS.0);
        let now = Instant::ZERO;
        assert_eq!(bdp.on_pong(1, now, LIMITS.0, true, LIMITS), None);
        let token = bdp.on_data(PING_AFTER_BYTES, now).unwrap();
        assert_eq!(bdp.on_pong(token + 1, now, LIMITS.0, true, LIMITS), None);
        assert!(bdp.on_pong(token, now, LIMITS.0, true, LIMITS).is_some());
        assert_eq!(bdp.on_pong(token, now, LIMITS.0, true, LIMITS), None);
    }

    #[test]
    fn small_traffic_pings_rarely() {
        let mut bdp = Bdp::new(LIMITS.0);
        let now = Instant::ZERO;
        let pings = (0..10_000).filter_map(|_| bdp.on_data(64, now)).count();
        assert_eq!(pings, 1);
    }
}
