//! Counters and histograms of the migration machine.

use core::time::Duration;

/// Power-of-two buckets: bucket `i` counts values in `[2^i, 2^(i+1))`, bucket 0 also counts 0,
/// and the last bucket counts everything above.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Histogram {
    /// The bucket counts.
    pub buckets: [u64; 32],
    /// How many values were recorded.
    pub count: u64,
    /// Their sum (saturating).
    pub sum: u64,
}

impl Histogram {
    /// Record one value.
    pub fn record(&mut self, value: u64) {
        let bucket = (63 - (value | 1).leading_zeros() as usize).min(self.buckets.len() - 1);
        if let Some(b) = self.buckets.get_mut(bucket) {
            *b += 1;
        }
        self.count += 1;
        self.sum = self.sum.saturating_add(value);
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

/// What a [`super::Machine`] has done so far. `attempted == success + error_fatal +
/// error_recoverable` whenever no transfer is running.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Metrics {
    /// Transfers that ended (requests refused as misuse are not counted).
    pub attempted: u64,
    /// Transfers that moved the session.
    pub success: u64,
    /// Transfers that failed and closed the client.
    pub error_fatal: u64,
    /// Transfers that failed and left the session on the old server.
    pub error_recoverable: u64,
    /// Transfer latency from request to outcome, in microseconds.
    pub latency_us: Histogram,
    /// Length of the state query's DataRow, in bytes (at most `max_transfer_response_len`).
    pub response_bytes: Histogram,
    /// Client bytes forwarded to a server.
    pub client_bytes: u64,
    /// Server bytes forwarded to the client.
    pub server_bytes: u64,
    /// Bytes of late old-server messages discarded when a transfer succeeded.
    pub discarded_old_server_bytes: u64,
}

impl Metrics {
    pub(crate) fn record_latency(&mut self, latency: Duration) {
        self.latency_us
            .record(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
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
        assert_eq!(h.buckets[0], 2);
        assert_eq!(h.buckets[1], 2);
        assert_eq!(h.buckets[2], 1);
        assert_eq!(h.buckets[9], 1);
        assert_eq!(h.buckets[31], 1);
        assert_eq!(h.count, 7);
        assert_eq!(h.sum, u64::MAX);
        assert_eq!(h.quantile_lower_bound(0.5), Some(2));
        assert_eq!(Histogram::default().quantile_lower_bound(0.5), None);
    }
}
