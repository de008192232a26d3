//! Errors of the transfer module, in the three classes of the sans-IO contract.
//!
//! - [`TransferError`]: the call was refused and the machine is unchanged; its
//!   [`Kind`](crate::error::Kind) says whether it was a misuse, a full buffer or a closed machine.
//! - [`FrameError`] and [`ParseError`]: a peer broke the wire protocol; the machine closes the
//!   client with a [`CloseReason`] that carries them.
//! - [`Failure`]: why a transfer did not succeed, reported in the transfer outcome.

use alloc::string::String;

use super::output::ServerId;
use crate::error::{ErrorKind, Kind};

/// Why a call to a [`super::Machine`] was refused. The call had no effect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransferError {
    /// The session is over; the machine accepts no more input.
    #[error("the session is closed")]
    Closed,
    /// A transfer is already under way (or waiting for a safe point).
    #[error("a transfer is already in progress")]
    TransferInProgress,
    /// The transfer key would not survive being quoted into SQL.
    #[error("transfer key must be 1 to {max} characters of [A-Za-z0-9_.-]")]
    InvalidTransferKey {
        /// The longest key accepted.
        max: usize,
    },
    /// Holding these client bytes during a transfer would pass `Config::max_held_client_bytes`.
    /// Nothing was taken: offer the same bytes again once the transfer is over.
    #[error("holding {offered} more client bytes would pass the limit of {limit} ({held} held)")]
    HeldClientBytesFull {
        /// Bytes already held.
        held: usize,
        /// Bytes in the rejected call.
        offered: usize,
        /// The configured limit.
        limit: usize,
    },
    /// An input named a server that is neither the session's nor the running transfer's new
    /// one (or the transfer's new server was given the id of the session's current server).
    #[error("server {} is not a connection of this session", .0 .0)]
    UnknownServer(ServerId),
    /// An input about the new server arrived while no new server was being dialled.
    #[error("no new server is being dialled")]
    NoNewServer,
    /// The new server was reported connected twice.
    #[error("the new server is already connected")]
    NewServerAlreadyConnected,
    /// New-server bytes arrived before the new server was reported connected.
    #[error("the new server has not been reported connected")]
    NewServerNotConnected,
    /// An already started server was offered, but the dialect has no query that carries the
    /// token to one (`Dialect::started_server_query_template` is `None`).
    #[error("the dialect cannot carry a revival token to an already started server")]
    NoStartedServerQuery,
}

impl Kind for TransferError {
    fn kind(&self) -> ErrorKind {
        match self {
            TransferError::Closed => ErrorKind::Closed,
            TransferError::HeldClientBytesFull { .. } => ErrorKind::Limit,
            _ => ErrorKind::Usage,
        }
    }
}

/// A violation of the pgwire framing rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// A length field smaller than the length field itself.
    #[error("message {tag:?} declares length {len}, below the minimum of 4")]
    LengthTooShort {
        /// The message type byte.
        tag: u8,
        /// The declared length.
        len: u32,
    },
    /// A length field above the configured limit (or negative as an int32).
    #[error("message {tag:?} declares length {len}, above the limit of {max}")]
    MessageTooLong {
        /// The message type byte.
        tag: u8,
        /// The declared length.
        len: u32,
        /// The configured limit.
        max: u32,
    },
    /// A startup-phase packet shorter than its length and code.
    #[error("startup packet declares length {len}, below the minimum of 8")]
    StartupTooShort {
        /// The declared length.
        len: u32,
    },
    /// A startup-phase packet above the configured limit.
    #[error("startup packet declares length {len}, above the limit of {max}")]
    StartupTooLong {
        /// The declared length.
        len: u32,
        /// The configured limit.
        max: u32,
    },
    /// A startup-phase code that is neither protocol 3.x nor a known request.
    #[error("unsupported startup code {code}")]
    UnsupportedStartupCode {
        /// The code.
        code: u32,
    },
    /// The answer to SSLRequest or GSSENCRequest was not `S`, `N` or `G`.
    #[error("invalid encryption answer byte {byte:#04x}")]
    InvalidEncryptionAnswer {
        /// The byte received.
        byte: u8,
    },
    /// Bytes arrived after the stream stopped carrying pgwire messages (after a CancelRequest,
    /// or once encryption was accepted).
    #[error("bytes after the end of the pgwire stream")]
    AfterEnd,
}

/// A message body that does not parse as the message its type byte announces.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The body ended before a field did.
    #[error("{message}: body ends inside a field")]
    Truncated {
        /// The message being parsed.
        message: &'static str,
    },
    /// Bytes were left after the last field.
    #[error("{message}: {extra} bytes after the last field")]
    TrailingBytes {
        /// The message being parsed.
        message: &'static str,
        /// How many bytes were left.
        extra: usize,
    },
    /// A field that must be UTF-8 is not.
    #[error("{message}: text field is not UTF-8")]
    NotUtf8 {
        /// The message being parsed.
        message: &'static str,
    },
    /// A count or length field is negative or impossible.
    #[error("{message}: invalid count or length {value}")]
    InvalidLength {
        /// The message being parsed.
        message: &'static str,
        /// The offending value.
        value: i64,
    },
    /// A ReadyForQuery status other than `I`, `T` or `E`.
    #[error("unknown transaction status {status:#04x}")]
    UnknownStatus {
        /// The byte received.
        status: u8,
    },
    /// A string to be written contains a NUL byte, which pgwire cannot carry.
    #[error("{message}: text contains a NUL byte")]
    ContainsNul {
        /// The message being built.
        message: &'static str,
    },
    /// A message to be built would pass its length limit.
    #[error("{message}: {len} bytes is above the limit of {max}")]
    TooLong {
        /// The message being built.
        message: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// Why the machine closed the client connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CloseReason {
    /// The client broke the framing rules.
    #[error("the client broke the wire protocol: {0}")]
    ClientProtocol(FrameError),
    /// The server broke the framing rules or sent an unparsable message.
    #[error("the server broke the wire protocol: {0}")]
    ServerProtocol(FrameError),
    /// A message from the server did not parse.
    #[error("a server message did not parse: {0}")]
    ServerMessage(ParseError),
    /// A message from the client did not parse.
    #[error("a client message did not parse: {0}")]
    ClientMessage(ParseError),
    /// The client put the revival-token parameter in its own StartupMessage.
    #[error("the client sent a session revival token itself")]
    ClientSentRevivalToken,
    /// The server accepted SSL or GSS encryption: the machine needs plaintext, so the adapter
    /// must terminate encryption itself.
    #[error("the server accepted encryption, which the proxy must terminate itself")]
    EncryptionAccepted,
    /// The connection carried a CancelRequest (reported as [`super::Output::CancelRequest`]).
    #[error("the connection carried a CancelRequest")]
    CancelRequest,
    /// A transfer failed where the session could not be resumed.
    #[error("the session could not be moved and was closed: {0}")]
    TransferFatal(Failure),
}

/// Why a transfer did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Failure {
    /// No safe point came before the deadline; nothing was sent to any server.
    #[error("no safe point came before the deadline")]
    NoSafePoint,
    /// The deadline passed while the transfer was running.
    #[error("the transfer timed out")]
    Timeout,
    /// The state query answered with a non-null `error` column (an open transaction, a temporary
    /// table, a session too large, ...).
    #[error("the old server cannot serialize the session: {0}")]
    StateError(String),
    /// The old server sent an ErrorResponse while the state query was outstanding: it could be
    /// for the state query or for anything else, so the session state is unknown.
    #[error("the old server answered the state query with an error: {0}")]
    AmbiguousError(String),
    /// The state response carried another transfer key.
    #[error("the state response carried another transfer key")]
    WrongKey,
    /// The state (or deserialize) response ended with an unexpected CommandComplete tag.
    #[error("unexpected command tag {0:?}")]
    WrongTag(String),
    /// A response message had another type than the one the protocol calls for.
    #[error("expected message {:?}, got {:?}", char::from(*expected), char::from(*got))]
    UnexpectedMessage {
        /// The type byte expected.
        expected: u8,
        /// The type byte received.
        got: u8,
    },
    /// A response row had the wrong shape (column count, nulls, non-base64 text).
    #[error("malformed response: {0}")]
    MalformedResponse(&'static str),
    /// A response message was larger than the limit for it.
    #[error("a response message of {len} bytes is over the limit")]
    ResponseTooLarge {
        /// The declared message length.
        len: u32,
    },
    /// The server ended a response with a ReadyForQuery status other than idle.
    #[error("the server was not idle after the response (status {:?})", char::from(*_0))]
    NotIdle(u8),
    /// The new server could not be reached.
    #[error("the new server could not be reached: {0}")]
    DialFailed(String),
    /// The new server refused the revival token (an error, or a request for a password).
    #[error("the new server refused the revival token: {0}")]
    TokenRejected(String),
    /// The deserialize function returned false.
    #[error("the new server refused the session state")]
    DeserializeFalse,
    /// The deserialize query failed on the new server.
    #[error("the deserialize query failed: {0}")]
    DeserializeError(String),
    /// A server broke the wire protocol during the transfer.
    #[error("a server broke the wire protocol: {0}")]
    Protocol(FrameError),
    /// A server message in the transfer did not parse.
    #[error("a server message did not parse: {0}")]
    Parse(ParseError),
    /// The old server sent more than `Config::max_held_server_bytes` while the new server was
    /// being set up.
    #[error("the old server sent too much while the new one was set up")]
    HeldServerBytesFull,
    /// The session's named prepared statements take more than
    /// `Config::max_prepared_statement_bytes`, so they are not kept and the session cannot
    /// move until `DISCARD ALL` or `DEALLOCATE ALL`.
    #[error("the session's prepared statements take more than the limit of {limit} bytes (Config::max_prepared_statement_bytes)")]
    PreparedStatementsOverLimit {
        /// The configured limit.
        limit: usize,
    },
    /// Something happened to the session's named prepared statements that the machine could
    /// not follow (such as a `DEALLOCATE` it could not attribute), so it cannot tell which
    /// exist; the session cannot move until `DISCARD ALL` or `DEALLOCATE ALL`.
    #[error("the session's prepared statements are unknown: {0}")]
    PreparedStatementsUnknown(&'static str),
    /// Creating the session's prepared statements again on the new server failed.
    #[error("the new server refused a prepared statement: {0}")]
    PrepareFailed(String),
    /// The session closed (a protocol violation elsewhere) while the transfer was under way.
    #[error("the session closed during the transfer")]
    SessionClosed,
}
