//! One stream's token pools and the deductions it tracks.
//!
//! Two pools, regular and elastic. Regular work draws on both, elastic only on its own, so
//! regular work can starve elastic work but never the reverse. Every deducted byte is tracked,
//! either against an admitted request that has no log position yet (`held`) or against the log
//! position of the entry it paid for (`tracked`), until the receiver reports that position
//! admitted or the stream disconnects. Hence, per pool, at all times:
//!
//! ```text
//! available + held + tracked = limit
//! ```

use alloc::collections::VecDeque;

use super::types::{LogPosition, ELASTIC, REGULAR};

/// Bytes going back to the pools, split by the class of the work that took them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Refund {
    /// Bytes per class of the work that had deducted them.
    pub bytes: [u64; 2],
    /// Whether a pool went from empty (or in debt) to having tokens.
    pub unblocked: bool,
}

impl Refund {
    fn add(&mut self, other: Refund) {
        self.bytes[REGULAR] += other.bytes[REGULAR];
        self.bytes[ELASTIC] += other.bytes[ELASTIC];
        self.unblocked |= other.unblocked;
    }
}

/// The pools and books of one stream.
#[derive(Clone, Debug)]
pub(crate) struct Stream {
    /// Whether the stream is replicating. A disconnected stream holds no tokens and paces nothing.
    pub connected: bool,
    /// Which connection of this stream this is (see `FlowControl`'s epochs).
    pub epoch: u64,
    limits: [u64; 2],
    /// Tokens available per pool; negative is debt.
    available: [i64; 2],
    /// Bytes deducted by admitted requests that are not bound to a log position yet, per class.
    held: [u64; 2],
    /// Bytes deducted per class, by log position in ascending order. Entries mostly arrive in
    /// order, so this is an append and a pop from the front; it keeps its capacity across
    /// deductions.
    tracked: [VecDeque<(LogPosition, u64)>; 2],
    /// Sum of `tracked`, per class.
    tracked_bytes: [u64; 2],
    /// Per class, the highest position the receiver reported admitted: the low-water mark below
    /// which reports and deductions are stale.
    admitted: [LogPosition; 2],
}

impl Stream {
    /// A connected stream with full pools whose receiver starts after `position`.
    pub fn new(limits: [u64; 2], position: LogPosition, epoch: u64) -> Stream {
        Stream {
            connected: true,
            epoch,
            limits,
            available: limits.map(to_i64),
            held: [0; 2],
            tracked: [VecDeque::new(), VecDeque::new()],
            tracked_bytes: [0; 2],
            admitted: [position; 2],
        }
    }

    /// Tokens available in `pool`.
    pub fn available(&self, pool: usize) -> i64 {
        self.available[pool]
    }

    /// Whether work of class `pool` may be admitted on this stream now.
    pub fn has_tokens(&self, pool: usize) -> bool {
        self.connected && self.available[pool] > 0
    }

    /// Bytes deducted from `pool` and not yet returned, whatever class of work took them.
    pub fn outstanding(&self, pool: usize) -> u64 {
        let regular = self.held[REGULAR] + self.tracked_bytes[REGULAR];
        if pool == REGULAR {
            regular
        } else {
            regular + self.held[ELASTIC] + self.tracked_bytes[ELASTIC]
        }
    }

    /// The pool size of `pool`.
    pub fn limit(&self, pool: usize) -> u64 {
        self.limits[pool]
    }

    /// Whether `available + outstanding = limit` holds for `pool`.
    pub fn conserves(&self, pool: usize) -> bool {
        i128::from(self.available[pool]) + i128::from(self.outstanding(pool))
            == i128::from(self.limits[pool])
    }

    /// Takes `bytes` for an admitted request of class `pool`, held until it gets a position.
    pub fn hold(&mut self, pool: usize, bytes: u64) {
        self.take(pool, bytes);
        self.held[pool] += bytes;
    }

    /// Moves held bytes onto the log position of the entry they paid for. A position the receiver
    /// already reported admitted returns them at once.
    pub fn bind(&mut self, pool: usize, bytes: u64, position: LogPosition) -> Refund {
        self.held[pool] -= bytes;
        if position <= self.admitted[pool] {
            return self.give(pool, bytes);
        }
        self.track(pool, bytes, position);
        Refund::default()
    }

    /// Returns held bytes of an admitted request that will never be sent.
    pub fn unhold(&mut self, pool: usize, bytes: u64) -> Refund {
        self.held[pool] -= bytes;
        self.give(pool, bytes)
    }

    /// Deducts `bytes` for an entry at `position` directly. Returns `false`, changing nothing,
    /// when the receiver already admitted that position.
    pub fn deduct(&mut self, pool: usize, bytes: u64, position: LogPosition) -> bool {
        if position <= self.admitted[pool] {
            return false;
        }
        self.take(pool, bytes);
        self.track(pool, bytes, position);
        true
    }

    /// The receiver admitted every entry of class `pool` up to `up_to`: returns their tokens.
    /// A report at or below the low-water mark is stale and returns nothing.
    pub fn admit_up_to(&mut self, pool: usize, up_to: LogPosition) -> Refund {
        if up_to <= self.admitted[pool] {
            return Refund::default();
        }
        self.admitted[pool] = up_to;
        let mut bytes = 0u64;
        while let Some(&(at, b)) = self.tracked[pool].front() {
            if at > up_to {
                break;
            }
            bytes += b;
            self.tracked[pool].pop_front();
        }
        self.tracked_bytes[pool] -= bytes;
        self.give(pool, bytes)
    }

    /// Returns every token (disconnect or removal) and forgets the books. The low-water marks
    /// stay until a reconnect sets new ones.
    pub fn reset(&mut self) -> Refund {
        let mut refund = Refund::default();
        for pool in [REGULAR, ELASTIC] {
            let bytes = self.held[pool] + self.tracked_bytes[pool];
            self.held[pool] = 0;
            self.tracked[pool].clear();
            self.tracked_bytes[pool] = 0;
            refund.add(self.give(pool, bytes));
        }
        refund
    }

    /// Reconnects a reset stream whose receiver resumes after `position`.
    pub fn reconnect(&mut self, position: LogPosition, epoch: u64) {
        debug_assert!(self.outstanding(ELASTIC) == 0, "reconnect after reset only");
        self.connected = true;
        self.epoch = epoch;
        self.admitted = [position; 2];
    }

    fn track(&mut self, pool: usize, bytes: u64, position: LogPosition) {
        let entries = &mut self.tracked[pool];
        match entries.back_mut() {
            Some(last) if last.0 == position => last.1 += bytes,
            Some(last) if last.0 > position => {
                // Out of order: find its place (or its equal) among the later entries.
                match entries.binary_search_by(|e| e.0.cmp(&position)) {
                    Ok(at) => {
                        if let Some(e) = entries.get_mut(at) {
                            e.1 += bytes;
                        }
                    }
                    Err(at) => entries.insert(at, (position, bytes)),
                }
            }
            _ => entries.push_back((position, bytes)),
        }
        self.tracked_bytes[pool] += bytes;
    }

    /// Deducts `bytes` of class `pool` work: regular work draws on both pools.
    fn take(&mut self, pool: usize, bytes: u64) {
        let bytes = to_i64(bytes);
        if pool == REGULAR {
            self.available[REGULAR] -= bytes;
        }
        self.available[ELASTIC] -= bytes;
    }

    /// Gives back `bytes` that class `pool` work had deducted.
    fn give(&mut self, pool: usize, bytes: u64) -> Refund {
        let mut refund = Refund::default();
        if bytes == 0 {
            return refund;
        }
        refund.bytes[pool] = bytes;
        let bytes = to_i64(bytes);
        let pools: &[usize] = if pool == REGULAR {
            &[REGULAR, ELASTIC]
        } else {
            &[ELASTIC]
        };
        for &p in pools {
            let before = self.available[p];
            self.available[p] += bytes;
            refund.unblocked |= before <= 0 && self.available[p] > 0;
        }
        refund
    }
}

/// Pool sizes and request sizes are at most the pool size, which `Config` keeps far below
/// `i64::MAX`; saturate rather than wrap if a caller configures something absurd.
fn to_i64(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: [u64; 2] = [16, 8];

    fn pos(index: u64) -> LogPosition {
        LogPosition::new(1, index)
    }

    fn conserved(s: &Stream) -> bool {
        s.conserves(REGULAR) && s.conserves(ELASTIC)
    }

    #[test]
    fn regular_draws_on_both_pools_elastic_on_its_own() {
        let mut s = Stream::new(LIMITS, pos(0), 1);
        s.hold(REGULAR, 5);
        assert_eq!((s.available(REGULAR), s.available(ELASTIC)), (11, 3));
        s.hold(ELASTIC, 4);
        assert_eq!((s.available(REGULAR), s.available(ELASTIC)), (11, -1));
        assert!(conserved(&s));
    }

    #[test]
    fn absolute_returns_are_idempotent_and_reorder_safe() {
        let mut s = Stream::new(LIMITS, pos(0), 1);
        for i in 1..=4 {
            assert!(s.deduct(REGULAR, 2, pos(i)));
        }
        assert_eq!(s.available(REGULAR), 8);
        assert_eq!(s.admit_up_to(REGULAR, pos(3)).bytes[REGULAR], 6);
        // A duplicate and a late, smaller report change nothing.
        assert_eq!(s.admit_up_to(REGULAR, pos(3)), Refund::default());
        assert_eq!(s.admit_up_to(REGULAR, pos(1)), Refund::default());
        assert_eq!(s.available(REGULAR), 14);
        // A deduction at an admitted position is stale.
        assert!(!s.deduct(REGULAR, 2, pos(2)));
        assert!(conserved(&s));
    }

    #[test]
    fn out_of_order_deductions_return_by_position() {
        let mut s = Stream::new(LIMITS, pos(0), 1);
        for (index, bytes) in [(5, 1), (2, 2), (9, 3), (2, 4), (7, 5)] {
            assert!(s.deduct(REGULAR, bytes, pos(index)));
        }
        assert_eq!(s.admit_up_to(REGULAR, pos(2)).bytes[REGULAR], 6);
        assert_eq!(s.admit_up_to(REGULAR, pos(7)).bytes[REGULAR], 6);
        assert_eq!(s.admit_up_to(REGULAR, pos(9)).bytes[REGULAR], 3);
        assert!(conserved(&s));
        assert_eq!(s.available(REGULAR), 16);
    }

    #[test]
    fn binding_below_the_low_water_mark_returns_at_once() {
        let mut s = Stream::new(LIMITS, pos(0), 1);
        s.admit_up_to(ELASTIC, pos(10));
        s.hold(ELASTIC, 3);
        let refund = s.bind(ELASTIC, 3, pos(9));
        assert_eq!(refund.bytes, [0, 3]);
        assert_eq!(s.available(ELASTIC), 8);
        assert!(conserved(&s));
    }

    #[test]
    fn reset_returns_everything_and_reports_unblocking() {
        let mut s = Stream::new(LIMITS, pos(0), 1);
        s.hold(REGULAR, 16);
        s.deduct(ELASTIC, 1, pos(1));
        let refund = s.reset();
        assert_eq!(refund.bytes, [16, 1]);
        assert!(refund.unblocked);
        assert_eq!(s.available(REGULAR), 16);
        assert_eq!(s.available(ELASTIC), 8);
        assert!(conserved(&s));
    }
}
