//! What a session hands back: bytes to write, reports for the application, and why it closed.

use alloc::collections::VecDeque;

use bytes::Bytes;

use super::Session;
use crate::mux::wire::{ErrorBody, Kind, Metadata, WireError};
use crate::time::Instant;

/// One thing a session hands back, drained with [`Session::poll_output`] until `None`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Bytes to write to the peer, in order: many frames in one buffer, or (for message data of
    /// [`ZERO_COPY_MIN`](super::ZERO_COPY_MIN) bytes or more) a slice of the message the
    /// application sent, uncopied.
    Transmit(Bytes),
    /// (Server) The peer opened a stream to call `rpc`.
    Opened {
        /// The new stream.
        stream: u64,
        /// The rpc name, as the peer sent it.
        rpc: Bytes,
        /// The metadata sent ahead of the Invoke (empty if none).
        metadata: Metadata,
    },
    /// A message arrived on the stream: [`Session::read`] returns it.
    Readable(u64),
    /// (Mux) The stream's `send` was refused for a full queue, and it can take messages again.
    Writable(u64),
    /// The peer will send no more messages on the stream; [`Session::read`] ends once its queue
    /// is empty.
    RemoteClosedSend(u64),
    /// The peer failed the stream with an error.
    RemoteError {
        /// The stream.
        stream: u64,
        /// The code and message it sent.
        error: ErrorBody,
    },
    /// The peer canceled the stream.
    RemoteCanceled(u64),
    /// The peer closed the stream.
    RemoteClosed(u64),
    /// The stream is over in both directions and everything received was read: its id is free.
    Finished(u64),
    /// The peer broke the protocol (or its data passed a configured limit): the connection has
    /// failed, and the caller closes the transport. DRPC has no frame that ends a connection,
    /// so no bytes precede this; bytes not yet handed out are dropped. It comes once, last, and
    /// every later call returns [`SessionError::Closed`](super::SessionError::Closed).
    Closed(CloseReason),
}

/// Why a session closed the connection: what the peer did wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CloseReason {
    /// The bytes do not follow the wire rules.
    #[error("protocol error: {0}")]
    Wire(#[from] WireError),
    /// A packet that makes no sense where it arrived.
    #[error("protocol error: unexpected {kind} packet on stream {stream}")]
    UnexpectedPacket {
        /// The packet's kind.
        kind: Kind,
        /// The stream it named.
        stream: u64,
    },
    /// An unknown kind without the control bit (with it, the packet is ignored).
    #[error("protocol error: unknown packet kind {0}")]
    UnknownKind(Kind),
    /// (Mux) Message data beyond the credit this side granted on the stream (stream 0: the
    /// connection's window).
    #[error("protocol error: flow control violated on stream {0}")]
    FlowControl(u64),
    /// (Mux) A WindowUpdate on the stream whose data is not one varint.
    #[error("protocol error: malformed window update on stream {0}")]
    BadWindowUpdate(u64),
    /// (Mux) A Ping or Pong not on stream 0 (the stream given), or whose data is not one varint.
    #[error("protocol error: malformed ping or pong on stream {0}")]
    BadPing(u64),
    /// A stream holds more unread data than `max_unread_per_stream`.
    #[error("stream {stream} has more than {max} unread bytes")]
    UnreadLimit {
        /// The stream.
        stream: u64,
        /// The configured limit.
        max: usize,
    },
    /// Metadata larger than `max_metadata_len`.
    #[error("metadata of {len} bytes is larger than {max}")]
    MetadataLimit {
        /// The metadata's size.
        len: usize,
        /// The configured limit.
        max: usize,
    },
}

impl CloseReason {
    /// The peer's data passed a limit of this side's `Config` (rather than breaking a rule of
    /// the protocol).
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            CloseReason::UnreadLimit { .. } | CloseReason::MetadataLimit { .. }
        )
    }
}

/// The queue behind [`Session::poll_output`].
#[derive(Debug, Default)]
pub(super) struct Outputs {
    /// Reports for the application, oldest first.
    reports: VecDeque<Output>,
    /// The rest of the batch being handed out.
    pub(super) transmits: VecDeque<Bytes>,
    /// Bytes handed out and not yet confirmed written (see `Config::max_unwritten`).
    pub(super) unwritten: u64,
    /// The connection failed: only the reports up to `Closed` remain.
    pub(super) closed: bool,
}

impl Session {
    /// The next output, or `None` when there is nothing to do until the next input or call.
    /// Drain it until `None` after every input and call. Outputs come in this order:
    ///
    /// 1. a batch of bytes already begun goes out whole first (a batch is split in several
    ///    [`Output::Transmit`] when it carries large message data uncopied);
    /// 2. then the reports of what happened since the last poll, in the order it happened
    ///    ([`Output::Opened`], [`Output::Readable`], ..., [`Output::Finished`] after a cancel);
    /// 3. then the bytes to write: control frames and Invokes encoded by the calls, and queued
    ///    messages framed now, one frame per ready stream per turn, up to `max_transmit` bytes
    ///    per batch. Reports the framing causes ([`Output::Writable`] once a queue has room,
    ///    [`Output::Finished`] after a stream's last frame) follow the batch that caused them;
    /// 4. [`Output::Closed`] last, once, if the connection failed: nothing follows it.
    pub fn poll_output(&mut self) -> Option<Output> {
        if let Some(bytes) = self.outputs.transmits.pop_front() {
            return Some(self.transmit(bytes));
        }
        if let Some(report) = self.outputs.reports.pop_front() {
            return Some(report);
        }
        if self.outputs.closed {
            return None;
        }
        self.fill_transmit();
        if let Some(bytes) = self.outputs.transmits.pop_front() {
            return Some(self.transmit(bytes));
        }
        self.outputs.reports.pop_front()
    }

    /// When [`Session::handle_timeout`] wants to be called next: always `None`, as no timer
    /// runs inside a session (time only feeds the window auto-tuning, through the inputs).
    pub fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    /// The transport took `len` bytes of the [`Output::Transmit`]s handed out: with
    /// `Config::max_unwritten` set, as many more bytes of queued messages may be framed.
    pub fn handle_written(&mut self, len: usize) {
        self.outputs.unwritten = self.outputs.unwritten.saturating_sub(len as u64);
    }

    fn transmit(&mut self, bytes: Bytes) -> Output {
        self.outputs.unwritten += bytes.len() as u64;
        Output::Transmit(bytes)
    }

    /// Queue a report for the application.
    pub(super) fn report(&mut self, report: Output) {
        if !self.outputs.closed {
            self.outputs.reports.push_back(report);
        }
    }

    /// Fail the connection: drop the bytes not handed out yet, report `reason` once, and refuse
    /// everything after.
    pub(super) fn close_with(&mut self, reason: CloseReason) {
        if self.outputs.closed {
            return;
        }
        self.outputs.reports.push_back(Output::Closed(reason));
        self.outputs.closed = true;
        self.outputs.transmits.clear();
        self.output.clear();
    }

    /// The connection has failed.
    pub fn is_closed(&self) -> bool {
        self.outputs.closed
    }
}
