//! What a session reports to the application.

use bytes::Bytes;

use super::SessionError;
use crate::mux::wire::{ErrorBody, Metadata};

/// Something the application should know about, drained with `Session::poll_event`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// (Server) The peer opened a stream to call `rpc`.
    Opened {
        /// The new stream.
        stream: u64,
        /// The rpc name, as the peer sent it.
        rpc: Bytes,
        /// The metadata sent ahead of the Invoke (empty if none).
        metadata: Metadata,
    },
    /// A message arrived: `Session::read` returns it.
    Readable {
        /// The stream.
        stream: u64,
    },
    /// (Mux) A stream whose `send` was refused for a full queue can take messages again.
    Writable {
        /// The stream.
        stream: u64,
    },
    /// The peer will send no more messages; `Session::read` ends once the queue is empty.
    RemoteClosedSend {
        /// The stream.
        stream: u64,
    },
    /// The peer failed the stream with an error.
    RemoteError {
        /// The stream.
        stream: u64,
        /// The code and message it sent.
        error: ErrorBody,
    },
    /// The peer canceled the stream.
    RemoteCanceled {
        /// The stream.
        stream: u64,
    },
    /// The peer closed the stream.
    RemoteClosed {
        /// The stream.
        stream: u64,
    },
    /// The stream is over in both directions and everything received was read: its id is free.
    Finished {
        /// The stream.
        stream: u64,
    },
    /// The connection failed; the session accepts nothing more.
    Failed(SessionError),
}
