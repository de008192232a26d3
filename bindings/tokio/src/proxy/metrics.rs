//! What the proxy reports: sessions per backend and the migration machines' counters.

use weir::transfer::Metrics;

/// A snapshot of the proxy, from [`super::Proxy::metrics`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyMetrics {
    /// Sessions on each backend now, by [`super::BackendId`].
    pub sessions_per_backend: Vec<usize>,
    /// Clients accepted since the proxy started (cancel requests not counted).
    pub sessions_accepted: u64,
    /// Clients closed because no backend could be reached.
    pub sessions_refused: u64,
    /// Clients closed because they had not finished their startup within
    /// [`super::ProxyConfig::login_timeout`].
    pub login_timeouts: u64,
    /// Connections refused because [`super::ProxyConfig::max_client_connections`] were open.
    pub connections_over_limit: u64,
    /// Transfer attempts that were retries of a recoverable failure.
    pub transfer_retries: u64,
    /// CancelRequests forwarded to the server a session is on.
    pub cancels_forwarded: u64,
    /// Transfer attempts that took a kept, already started server instead of dialling (see
    /// [`super::ProxyConfig::max_idle_per_backend`]).
    pub idle_servers_taken: u64,
    /// Server connections kept: those that sessions left, once reset, and those an attempt
    /// took but gave back unused (its transfer failed before reaching the new server).
    pub idle_servers_kept: u64,
    /// The most bytes any session held for its client at once: results the client had not
    /// read yet (see [`super::ProxyConfig::max_buffered_per_direction`]).
    pub peak_buffered_to_client: u64,
    /// The most bytes any session held for its server at once: client messages the server
    /// had not read yet.
    pub peak_buffered_to_server: u64,
    /// Connections kept for each backend now.
    pub idle_per_backend: Vec<usize>,
    /// The sum of every session's machine counters: those of ended sessions, and for live
    /// ones as of their last transfer (byte counters of a live session lag until then).
    pub transfers: Metrics,
}

/// Add `m`'s counters to `into`.
pub(crate) fn add(into: &mut Metrics, m: &Metrics) {
    into.merge(m);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_counters_and_buckets() {
        let mut a = Metrics::default();
        let mut b = Metrics::default();
        a.attempted = 2;
        a.success = 1;
        a.error_recoverable = 1;
        a.latency_ns.record(1000);
        b.attempted = 1;
        b.error_fatal = 1;
        b.latency_ns.record(1000);
        b.latency_ns.record(3);
        b.client_bytes = 10;
        let mut total = Metrics::default();
        add(&mut total, &a);
        add(&mut total, &b);
        assert_eq!(
            (
                total.attempted,
                total.success,
                total.error_fatal,
                total.error_recoverable
            ),
            (3, 1, 1, 1)
        );
        assert_eq!(total.latency_ns.count, 3);
        assert_eq!(total.latency_ns.buckets[9], 2);
        assert_eq!(total.latency_ns.buckets[1], 1);
        assert_eq!(total.latency_ns.sum, 2003);
        assert_eq!(total.client_bytes, 10);
    }
}
