//! What a session hands back: bytes to write, reports for the application, and why it closed.

use alloc::collections::VecDeque;

use core::time::Duration;

use bytes::Bytes;

use super::Session;
use crate::mux::wire::{ErrorBody, Kind, Metadata, WireError};

/// The most bytes a session writes in answer to one frame from the peer (a refusal, window
/// updates, a ping): how far past `Config::max_queued_output` the last frame it took can
/// leave its output (256).
pub const FRAME_OUTPUT_MAX: usize = 256;

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
    /// Input arrived while `max_queued_output` bytes waited for the transport: the peer does
    /// not read, and the caller did not stop reading it.
    #[error("more than {max} bytes of output wait for the peer to read them")]
    OutputLimit {
        /// The configured limit.
        max: usize,
    },
    /// (Server) No whole frame arrived within `handshake_timeout`.
    #[error("no whole frame within {0:?}")]
    HandshakeTimeout(Duration),
    /// (Server) No stream was open for `idle_timeout`.
    #[error("no stream for {0:?}")]
    IdleTimeout(Duration),
}

impl CloseReason {
    /// The peer passed a limit of this side's `Config`, in bytes or in time (rather than
    /// breaking a rule of the protocol).
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            CloseReason::UnreadLimit { .. }
                | CloseReason::MetadataLimit { .. }
                | CloseReason::OutputLimit { .. }
                | CloseReason::HandshakeTimeout(_)
                | CloseReason::IdleTimeout(_)
        )
    }
}

/// The queue behind [`Session::poll_output`].
#[derive(Debug, Default)]
pub(super) struct Outputs {
    /// Reports for the application, oldest first.
    reports: VecDeque<Output>,
    /// The rest of the batch being handed out.
    transmits: VecDeque<Bytes>,
    /// Bytes in `transmits`.
    held: u64,
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
        if let Some(bytes) = self.take_transmit() {
            return Some(bytes);
        }
        if let Some(report) = self.outputs.reports.pop_front() {
            return Some(report);
        }
        if self.outputs.closed {
            return None;
        }
        self.fill_transmit();
        if let Some(bytes) = self.take_transmit() {
            return Some(bytes);
        }
        self.outputs.reports.pop_front()
    }

    /// The transport took `len` bytes of the [`Output::Transmit`]s handed out. Every adapter
    /// calls it after each write: the bytes count against `Config::max_queued_output` (and
    /// `Config::max_unwritten`) until it does. Once the output is back under the bound, input
    /// held back is handled, so drain [`Session::poll_output`] after it.
    pub fn handle_written(&mut self, len: usize) {
        self.outputs.unwritten = self.outputs.unwritten.saturating_sub(len as u64);
        if !self.outputs.closed && self.wants_input() && !self.input.is_empty() {
            let mut input = core::mem::take(&mut self.input);
            self.decode_from(&mut input);
            self.input = input;
        }
    }

    /// Whether the session takes input: false once the connection has failed, or while
    /// `Config::max_queued_output` bytes wait for the transport. While it is false the adapter
    /// stops reading the peer; it turns true again after [`Session::handle_written`].
    pub fn wants_input(&self) -> bool {
        !self.outputs.closed && self.queued_output() < self.config.max_queued_output as u64
    }

    /// Bytes produced for the peer and not yet confirmed written: handed out, or still to be.
    pub fn queued_output(&self) -> u64 {
        self.outputs.unwritten + self.outputs.held + self.output.len() as u64
    }

    fn take_transmit(&mut self) -> Option<Output> {
        let bytes = self.outputs.transmits.pop_front()?;
        let len = bytes.len() as u64;
        self.outputs.held -= len;
        self.outputs.unwritten += len;
        Some(Output::Transmit(bytes))
    }

    /// Queue bytes to hand out, after those already queued.
    pub(super) fn push_transmit(&mut self, bytes: Bytes) {
        self.outputs.held += bytes.len() as u64;
        self.outputs.transmits.push_back(bytes);
        self.note_queued();
    }

    /// Record how much output waits, after it grew.
    pub(super) fn note_queued(&mut self) {
        let queued = self.queued_output();
        let peak = &mut self.metrics.peak_queued_output;
        *peak = (*peak).max(queued);
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
        self.outputs.held = 0;
        self.output.clear();
    }

    /// The connection has failed.
    pub fn is_closed(&self) -> bool {
        self.outputs.closed
    }
}
