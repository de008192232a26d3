//! What can go wrong on a connection or a stream, and how it maps to `std::io::Error`.

use std::fmt;
use std::io;
use std::sync::Arc;

use weir::error::{ErrorKind, Kind};
use weir::mux::session::{CloseReason, SessionError};

/// A connection or stream error. Every variant maps to an [`io::ErrorKind`] (see the
/// `From<Error> for io::Error` impl), so `?` works in code that returns `io::Result`.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub enum Error {
    /// The peer closed the connection before the stream ended (`UnexpectedEof`).
    PeerClosed,
    /// The connection is closed or its task has ended; nothing more can be done on it
    /// (`NotConnected`).
    ConnectionClosed,
    /// Reading or writing the underlying transport failed (the transport's own kind).
    Io(Arc<io::Error>),
    /// The session closed the connection: the peer broke the protocol (`InvalidData`), or its
    /// data passed a configured limit (`OutOfMemory`, see [`CloseReason::is_limit`]).
    Protocol(CloseReason),
    /// The session refused a call for a configured limit (`OutOfMemory`).
    Limit(SessionError),
    /// The peer answered the stream with an error code and message (`Other`).
    Remote {
        /// The code the peer sent (0 when it sent none).
        code: u64,
        /// The message the peer sent.
        message: String,
    },
    /// The stream was canceled, by the peer or by this side (`ConnectionAborted`).
    Canceled,
    /// The stream cannot send any more: its send side is closed or it has ended (`BrokenPipe`).
    SendClosed,
}

impl Error {
    /// The `io::ErrorKind` this error maps to.
    pub fn kind(&self) -> io::ErrorKind {
        match self {
            Error::PeerClosed => io::ErrorKind::UnexpectedEof,
            Error::ConnectionClosed => io::ErrorKind::NotConnected,
            Error::Io(e) => e.kind(),
            Error::Protocol(reason) if reason.is_limit() => io::ErrorKind::OutOfMemory,
            Error::Protocol(_) => io::ErrorKind::InvalidData,
            Error::Limit(_) => io::ErrorKind::OutOfMemory,
            Error::Remote { .. } => io::ErrorKind::Other,
            Error::Canceled => io::ErrorKind::ConnectionAborted,
            Error::SendClosed => io::ErrorKind::BrokenPipe,
        }
    }

    /// The peer's error code, for [`Error::Remote`].
    pub fn code(&self) -> Option<u64> {
        match self {
            Error::Remote { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// Sort a refused call into the variant the application should see, by its kind.
    pub(crate) fn from_session(e: SessionError) -> Error {
        match e.kind() {
            ErrorKind::Closed => Error::ConnectionClosed,
            ErrorKind::Usage => Error::SendClosed,
            ErrorKind::Limit => Error::Limit(e),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::PeerClosed => f.write_str("the peer closed the connection"),
            Error::ConnectionClosed => f.write_str("the connection is closed"),
            Error::Io(e) => write!(f, "transport error: {e}"),
            Error::Protocol(reason) if reason.is_limit() => write!(f, "limit reached: {reason}"),
            Error::Protocol(reason) => write!(f, "the peer broke the protocol: {reason}"),
            Error::Limit(e) => write!(f, "limit reached: {e}"),
            Error::Remote { code, message } => write!(f, "remote error (code {code}): {message}"),
            Error::Canceled => f.write_str("the stream was canceled"),
            Error::SendClosed => f.write_str("the stream cannot send any more"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(&**e),
            Error::Protocol(reason) => Some(reason),
            Error::Limit(e) => Some(e),
            _ => None,
        }
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        io::Error::new(e.kind(), e)
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error::Io(Arc::new(e))
    }
}
