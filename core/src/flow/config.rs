//! Limits and pool sizes of a flow controller.

use core::time::Duration;

/// One mebibyte.
const MIB: u64 = 1 << 20;

/// The limits of a [`FlowControl`](super::FlowControl). Every queue it keeps is bounded by one of
/// these.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct Config {
    /// Regular tokens per stream, in bytes. Default 16 MiB (CockroachDB's default).
    pub regular_tokens: u64,
    /// Elastic tokens per stream, in bytes. Default 8 MiB (CockroachDB's default).
    pub elastic_tokens: u64,
    /// Requests that may wait at once. Default 1,024. Outputs not yet drained through
    /// `poll_output` are bounded by it too: `admit` refuses while any are left, so at most one
    /// output per waiting request, plus the admission's own, is ever undrained.
    pub max_waiting: usize,
    /// Bytes that waiting requests may ask for in total. Default 64 MiB.
    pub max_waiting_bytes: u64,
    /// Requests in flight: waiting, or admitted and not yet bound to a log position or released.
    /// Default 65,536.
    pub max_in_flight: usize,
    /// How long a request may wait before it is rejected. Default 10 s.
    pub max_wait: Duration,
    /// Streams known at once. Default 10,000.
    pub max_streams: usize,
    /// Replicas one request may target. Default 16.
    pub max_targets: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            regular_tokens: 16 * MIB,
            elastic_tokens: 8 * MIB,
            max_waiting: 1024,
            max_waiting_bytes: 64 * MIB,
            max_in_flight: 65_536,
            max_wait: Duration::from_secs(10),
            max_streams: 10_000,
            max_targets: 16,
        }
    }
}

impl Config {
    /// The pool size for `pool` (an index from `Class::pool`).
    pub(crate) fn limit(&self, pool: usize) -> u64 {
        if pool == super::types::REGULAR {
            self.regular_tokens
        } else {
            self.elastic_tokens
        }
    }
}
