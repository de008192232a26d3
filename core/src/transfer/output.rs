//! What the migration machine asks its caller to do.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

use bytes::Bytes;

use super::error::{CloseReason, Failure};
use super::message::BackendKey;
use super::metrics::Metrics;

/// The caller's name for one server connection: it picks one for the first server in
/// [`super::Machine::new`] and one for each transfer's new server in
/// [`super::Machine::request_transfer`]. An id names the same connection for as long as the
/// machine knows it, whatever moves happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ServerId(pub u64);

/// A connection the machine talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Peer {
    /// The client.
    Client,
    /// That server connection: the one the session is on, or a transfer's new one.
    Server(ServerId),
}

/// Where the bytes of a [`Transmit`] come from. Adapters can ignore it; it lets tests and
/// monitors check that relayed streams are never reordered, lost or repeated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Source {
    /// Relayed from the client.
    Client,
    /// Relayed from a server.
    Server,
    /// Written by the machine itself (state query, StartupMessage, deserialize query,
    /// Terminate).
    Machine,
}

/// Bytes to write to one peer, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Who to write to.
    pub to: Peer,
    /// Where the bytes come from.
    pub source: Source,
    /// The bytes (a slice of an input where they were relayed unchanged).
    pub data: Bytes,
}

/// How a transfer ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferResult {
    /// The session is on the new server; the old one was closed.
    Success,
    /// The transfer failed; the session goes on, on the old server.
    Recoverable(Failure),
    /// The transfer failed where the session's state was unknown; the client was closed.
    Fatal(Failure),
}

/// The end of one transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferOutcome {
    /// The key the caller passed to `request_transfer`.
    pub key: String,
    /// How it ended.
    pub result: TransferResult,
    /// From the request to this outcome, waiting for a safe point included.
    pub latency: Duration,
    /// From the safe point (the state query sent) to this outcome: how long the session was
    /// held, its client's bytes waiting. Zero when it ended before reaching a safe point.
    pub suspended: Duration,
}

/// An action for the caller, drained with [`super::Machine::poll_output`] in the order the
/// machine produced them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Write bytes to a peer.
    Transmit(Transmit),
    /// Connect to the transfer's new server (TCP, and TLS if the adapter wants it) and report
    /// `handle_new_server_connected`; the machine then writes a StartupMessage with exactly
    /// these parameters, the revival token among them.
    DialNewServer {
        /// The id the caller gave the new server in `request_transfer`.
        server: ServerId,
        /// The client's startup parameters plus the revival token.
        params: Vec<(String, String)>,
    },
    /// Close the connection to the server the session just left (a Terminate was written to
    /// it). The session is on the transfer's new server now.
    CloseOldServer(ServerId),
    /// Only with `Config::reuse_old_server`: the session left the old server, which is idle and
    /// at a message boundary (it answered the state query with ReadyForQuery `I` and sent
    /// nothing since). No Terminate was written: the adapter may reset the connection (for
    /// PostgreSQL, `DISCARD ALL`) and offer it to a later transfer through
    /// `Machine::handle_new_server_started`, or close it. The session is on the transfer's new
    /// server now, as after [`Output::CloseOldServer`].
    ReleaseOldServer {
        /// The released server; the machine forgets this id.
        server: ServerId,
        /// The BackendKeyData of the released server, for routing CancelRequests to whichever
        /// session uses it next.
        key: Option<BackendKey>,
    },
    /// Close the connection to the transfer's new server: the transfer failed, the session
    /// stays where it was.
    CloseNewServer(ServerId),
    /// The session is over: close the client connection and every server connection. Always
    /// the last output; every later call returns [`super::TransferError::Closed`].
    Closed(CloseReason),
    /// A transfer ended.
    Outcome(TransferOutcome),
    /// The client connection carried a CancelRequest for this key, which the machine does not
    /// forward: route it to the server that owns the key (see `Machine::cancel_keys`).
    CancelRequest(BackendKey),
}

/// The cancel keys of a session: what the client knows and what the current server expects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CancelKeys {
    /// The BackendKeyData the client received at startup (from the first server).
    pub client: Option<BackendKey>,
    /// The BackendKeyData of the server the session is on now.
    pub server: Option<BackendKey>,
}

/// The outputs a machine produced that the caller has not drained yet, with the counters that
/// sum them up. They live together so that relayed bytes are counted as they are queued and a
/// transfer's end as its outcome is, and a counter never disagrees with the outputs.
#[derive(Debug, Default)]
pub(super) struct Outputs {
    queue: VecDeque<Output>,
    metrics: Metrics,
}

impl Outputs {
    pub(super) fn push(&mut self, output: Output) {
        self.queue.push_back(output);
    }

    pub(super) fn pop(&mut self) -> Option<Output> {
        self.queue.pop_front()
    }

    /// Queue bytes for `to`, counting relayed ones in the metrics. Empty data queues nothing.
    pub(super) fn transmit(&mut self, to: Peer, source: Source, data: Bytes) {
        if data.is_empty() {
            return;
        }
        match source {
            Source::Client => self.metrics.client_bytes += data.len() as u64,
            Source::Server => self.metrics.server_bytes += data.len() as u64,
            Source::Machine => {}
        }
        self.queue
            .push_back(Output::Transmit(Transmit { to, source, data }));
    }

    /// Count how a transfer ended and queue its outcome.
    pub(super) fn report(&mut self, outcome: TransferOutcome) {
        match outcome.result {
            TransferResult::Success => self.metrics.success += 1,
            TransferResult::Recoverable(_) => self.metrics.error_recoverable += 1,
            TransferResult::Fatal(_) => self.metrics.error_fatal += 1,
        }
        self.metrics.latency_ns.record_duration(outcome.latency);
        self.queue.push_back(Output::Outcome(outcome));
    }

    pub(super) fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub(super) fn metrics_mut(&mut self) -> &mut Metrics {
        &mut self.metrics
    }
}
