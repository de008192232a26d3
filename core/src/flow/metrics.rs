//! What a flow controller counts, under CockroachDB's metric names.

use crate::histogram::Histogram;

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
    /// Histogram: how long admitted requests waited, in nanoseconds (zero for a request
    /// admitted at once).
    pub wait_duration_ns: Histogram,
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
