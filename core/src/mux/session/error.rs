//! What can go wrong with a session.

use crate::mux::wire::{Kind, WireError};

/// A session error. The variants fall in three groups: calls the application made at the wrong
/// time (the session is unchanged), violations by the peer (the connection has failed), and
/// configured limits reached (the connection has failed, with the limit named).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// Local misuse: no such stream, or it is finished.
    #[error("unknown stream {0}")]
    UnknownStream(u64),
    /// Local misuse: this role cannot do that (a server opening a stream, say).
    #[error("not allowed in this role")]
    WrongRole,
    /// Local misuse: compat mode allows one active stream at a time.
    #[error("another stream is still active")]
    StreamBusy,
    /// Local misuse: the stream's send side is closed or the stream is terminated.
    #[error("stream {0} cannot send any more")]
    SendClosed(u64),
    /// Local: the stream's send queue is full; wait for `Event::Writable`. Nothing was queued.
    #[error("stream {0} has a full send queue")]
    SendBufferFull(u64),
    /// Local: as many streams are open as `max_concurrent_streams` allows.
    #[error("too many concurrent streams (limit {0})")]
    TooManyStreams(usize),
    /// The connection has failed or was closed; the reason was reported in an event.
    #[error("connection closed")]
    ConnectionClosed,

    /// Peer violation: the bytes do not follow the wire rules.
    #[error("protocol error: {0}")]
    Wire(#[from] WireError),
    /// Peer violation: a packet that makes no sense where it arrived.
    #[error("protocol error: unexpected {kind} packet on stream {stream}")]
    UnexpectedPacket {
        /// The packet's kind.
        kind: Kind,
        /// The stream it named.
        stream: u64,
    },
    /// Peer violation: an unknown kind without the control bit (with it, the packet is ignored).
    #[error("protocol error: unknown packet kind {0}")]
    UnknownKind(Kind),

    /// Peer violation: Message data beyond the credit this side granted (stream 0: the
    /// connection's window).
    #[error("protocol error: flow control violated on stream {0}")]
    FlowControl(u64),
    /// Peer violation: a WindowUpdate whose data is not one varint.
    #[error("protocol error: malformed window update on stream {0}")]
    BadWindowUpdate(u64),
    /// Peer violation: a Ping or Pong not on stream 0 (the stream given), or whose data is not
    /// one varint.
    #[error("protocol error: malformed ping or pong on stream {0}")]
    BadPing(u64),

    /// Limit: a stream holds more unread data than `max_unread_per_stream`.
    #[error("stream {stream} has more than {max} unread bytes")]
    UnreadLimit {
        /// The stream.
        stream: u64,
        /// The configured limit.
        max: usize,
    },
    /// Limit: metadata larger than `max_metadata_len`.
    #[error("metadata of {len} bytes is larger than {max}")]
    MetadataLimit {
        /// The metadata's size.
        len: usize,
        /// The configured limit.
        max: usize,
    },
}
