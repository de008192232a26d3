//! Counters and histograms of the migration machine.

use crate::histogram::Histogram;

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
    /// Transfer latency from request to outcome, in nanoseconds.
    pub latency_ns: Histogram,
    /// Length of the state query's DataRow, in bytes (at most `max_transfer_response_len`).
    pub response_bytes: Histogram,
    /// Client bytes forwarded to a server.
    pub client_bytes: u64,
    /// Server bytes forwarded to the client.
    pub server_bytes: u64,
    /// Bytes of late old-server messages discarded when a transfer succeeded.
    pub discarded_old_server_bytes: u64,
    /// Named prepared statements created again on new servers by successful transfers.
    pub prepared_statements_replayed: u64,
}

impl Metrics {
    /// Adds every counter and histogram of `other` to these, as if one machine had done both's
    /// work.
    pub fn merge(&mut self, other: &Metrics) {
        self.attempted += other.attempted;
        self.success += other.success;
        self.error_fatal += other.error_fatal;
        self.error_recoverable += other.error_recoverable;
        self.latency_ns.merge(&other.latency_ns);
        self.response_bytes.merge(&other.response_bytes);
        self.client_bytes += other.client_bytes;
        self.server_bytes += other.server_bytes;
        self.discarded_old_server_bytes += other.discarded_old_server_bytes;
        self.prepared_statements_replayed += other.prepared_statements_replayed;
    }
}
