//! What a session's calls refuse.

use crate::error::{ErrorKind, Kind};

/// A call the session refused; it changed nothing (but see [`SessionError::SendBufferFull`]).
/// What the peer does wrong is not an error of a call: it closes the connection with an
/// [`Output::Closed`](super::Output::Closed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// Usage: no such stream, or it is finished.
    #[error("unknown stream {0}")]
    UnknownStream(u64),
    /// Usage: this role cannot do that (a server opening a stream, say).
    #[error("not allowed in this role")]
    WrongRole,
    /// Usage: the stream's send side is closed or the stream is terminated.
    #[error("stream {0} cannot send any more")]
    SendClosed(u64),
    /// Limit: compat mode allows one active stream at a time; retry once it is finished.
    #[error("another stream is still active")]
    StreamBusy,
    /// Limit: the stream's send queue holds `send_buffer_per_stream` bytes. Nothing was queued,
    /// but the session notes that a writer waits: an [`Output::Writable`](super::Output::Writable)
    /// follows once the queue has room again.
    #[error("stream {0} has a full send queue")]
    SendBufferFull(u64),
    /// Limit: as many streams are open as `max_concurrent_streams` allows.
    #[error("too many concurrent streams (limit {0})")]
    TooManyStreams(usize),
    /// Closed: the connection has failed; the reason came in an
    /// [`Output::Closed`](super::Output::Closed).
    #[error("connection closed")]
    Closed,
}

impl Kind for SessionError {
    fn kind(&self) -> ErrorKind {
        match self {
            SessionError::UnknownStream(_)
            | SessionError::WrongRole
            | SessionError::SendClosed(_) => ErrorKind::Usage,
            SessionError::StreamBusy
            | SessionError::SendBufferFull(_)
            | SessionError::TooManyStreams(_) => ErrorKind::Limit,
            SessionError::Closed => ErrorKind::Closed,
        }
    }
}
