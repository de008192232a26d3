//! What a flow controller counts, under CockroachDB's metric names.

use core::time::Duration;

/// Upper bounds of the wait-duration histogram buckets, in nanoseconds; the last bucket takes
/// everything above the last bound.
pub const WAIT_BUCKETS_NS: [u64; 12] = [
    1_000,
    10_000,
    100_000,
    1_000_000,
    5_000_000,
    10_000_000,
    50_000_000,
    100_000_000,
    500_000_000,
    1_000_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// A fixed-bucket histogram of wait durations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct WaitHistogram {
    /// Counts per bucket: `buckets[i]` counts waits of at most `WAIT_BUCKETS_NS[i]`, and the last
    /// one everything longer.
    pub buckets: [u64; WAIT_BUCKETS_NS.len() + 1],
    /// Waits recorded.
    pub count: u64,
    /// Sum of all waits, in nanoseconds.
    pub sum_ns: u64,
    /// The longest wait, in nanoseconds.
    pub max_ns: u64,
}

impl WaitHistogram {
    /// Records one wait.
    pub fn record(&mut self, wait: Duration) {
        let ns = u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX);
        let bucket = WAIT_BUCKETS_NS
            .iter()
            .position(|&bound| ns <= bound)
            .unwrap_or(WAIT_BUCKETS_NS.len());
        if let Some(slot) = self.buckets.get_mut(bucket) {
            *slot += 1;
        }
        self.count += 1;
        self.sum_ns = self.sum_ns.saturating_add(ns);
        self.max_ns = self.max_ns.max(ns);
    }
}

/// The figures of one work class. Field names follow CockroachDB's
/// `kvadmission.flow_controller.{regular,elastic}_<field>` metrics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ClassMetrics {
    /// Gauge: tokens available over all connected streams (negative in debt).
    pub tokens_available: i64,
    /// Counter: tokens deducted by work of this class.
    pub tokens_deducted: u64,
    /// Counter: tokens returned to this class's work, by any path.
    pub tokens_returned: u64,
    /// Counter: tokens returned without the receiver reporting their entries admitted
    /// (disconnect, removal, an admitted request released before it got a position).
    pub tokens_unaccounted: u64,
    /// Gauge: requests waiting for tokens.
    pub requests_waiting: u64,
    /// Counter: requests admitted, at once or after waiting.
    pub requests_admitted: u64,
    /// Counter: requests that left the queue without tokens (timed out or cancelled), or were
    /// turned away at a queue limit.
    pub requests_errored: u64,
    /// Counter: waiting requests admitted because a stream they waited on disconnected or was
    /// removed.
    pub requests_bypassed: u64,
    /// Histogram: how long admitted requests waited.
    pub wait_duration: WaitHistogram,
    /// Gauge: connected streams with no tokens in this class's pool.
    pub blocked_stream_count: u64,
    /// Gauge: connected streams.
    pub stream_count: u64,
}

/// Everything a [`FlowControl`](super::FlowControl) counts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Metrics {
    /// Regular work (`kvadmission.flow_controller.regular_*`).
    pub regular: ClassMetrics,
    /// Elastic work (`kvadmission.flow_controller.elastic_*`).
    pub elastic: ClassMetrics,
    /// Counter: control requests, all admitted at once without tokens.
    pub control_requests: u64,
    /// Gauge: bytes waiting requests ask for.
    pub waiting_bytes: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_by_upper_bound() {
        let mut h = WaitHistogram::default();
        h.record(Duration::ZERO);
        h.record(Duration::from_micros(1));
        h.record(Duration::from_millis(7));
        h.record(Duration::from_secs(60));
        assert_eq!(h.buckets[0], 2);
        assert_eq!(h.buckets[5], 1);
        assert_eq!(h.buckets[WAIT_BUCKETS_NS.len()], 1);
        assert_eq!(h.count, 4);
        assert_eq!(h.max_ns, 60_000_000_000);
    }
}
