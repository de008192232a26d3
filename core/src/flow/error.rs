//! Errors and rejections of the flow controller.

use super::types::{Class, StreamId};
use crate::error::{ErrorKind, Kind};

/// A call the controller refused. The controller's state is unchanged.
///
/// Every variant is a caller's mistake ([`ErrorKind::Usage`]) except [`FlowError::TooManyStreams`]
/// and [`FlowError::Undrained`], which are limits ([`ErrorKind::Limit`]): the same call succeeds
/// once a stream is removed, or once the output is drained. The controller never closes, so no
/// error is of kind [`ErrorKind::Closed`].
///
/// ```
/// use weir::error::{ErrorKind, Kind};
/// use weir::flow::FlowError;
///
/// assert_eq!(FlowError::ZeroBytes.kind(), ErrorKind::Usage);
/// assert_eq!(FlowError::Undrained.kind(), ErrorKind::Limit);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FlowError {
    /// Control traffic has no tokens to deduct or return.
    #[error("control traffic has no token pools")]
    ControlClass,
    /// A regular or elastic request of zero bytes: nothing to pace.
    #[error("a request must ask for at least one byte")]
    ZeroBytes,
    /// A request larger than its class's pool could never be paced.
    #[error("request of {bytes} bytes exceeds the {class:?} pool of {limit} bytes")]
    TooLarge {
        /// The request's class.
        class: Class,
        /// Bytes asked for.
        bytes: u64,
        /// The pool size.
        limit: u64,
    },
    /// A request named no replicas.
    #[error("a request must name at least one replica")]
    NoTargets,
    /// A request named more replicas than `Config::max_targets`.
    #[error("{count} replicas exceed the limit of {limit}")]
    TooManyTargets {
        /// Replicas named.
        count: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A request named the same stream twice.
    #[error("stream {0:?} is named twice")]
    DuplicateTarget(StreamId),
    /// The quorum is zero or larger than the replica count.
    #[error("quorum {quorum} is impossible with {replicas} replicas")]
    InvalidQuorum {
        /// The quorum asked for.
        quorum: usize,
        /// Replicas named.
        replicas: usize,
    },
    /// The request id is already waiting or holding tokens.
    #[error("request {0} is already in flight")]
    DuplicateRequest(u64),
    /// No request with this id is waiting or holding tokens.
    #[error("request {0} is not in flight")]
    UnknownRequest(u64),
    /// The stream was never connected, or was removed.
    #[error("stream {0:?} is unknown")]
    UnknownStream(StreamId),
    /// The stream is known but disconnected.
    #[error("stream {0:?} is disconnected")]
    NotConnected(StreamId),
    /// `connect_stream` on a stream that is already connected.
    #[error("stream {0:?} is already connected")]
    AlreadyConnected(StreamId),
    /// `Config::max_streams` streams are already known.
    #[error("the limit of {0} streams is reached")]
    TooManyStreams(usize),
    /// `admit` while outputs of earlier calls are still waiting in
    /// [`poll_output`](super::FlowControl::poll_output). Drain it, then admit again: this keeps
    /// the output queue bounded by the waiting queue.
    #[error("outputs are undrained: drain poll_output before admitting")]
    Undrained,
}

impl Kind for FlowError {
    fn kind(&self) -> ErrorKind {
        match self {
            FlowError::TooManyStreams(_) | FlowError::Undrained => ErrorKind::Limit,
            FlowError::ControlClass
            | FlowError::ZeroBytes
            | FlowError::TooLarge { .. }
            | FlowError::NoTargets
            | FlowError::TooManyTargets { .. }
            | FlowError::DuplicateTarget(_)
            | FlowError::InvalidQuorum { .. }
            | FlowError::DuplicateRequest(_)
            | FlowError::UnknownRequest(_)
            | FlowError::UnknownStream(_)
            | FlowError::NotConnected(_)
            | FlowError::AlreadyConnected(_) => ErrorKind::Usage,
        }
    }
}

/// Why a request was turned away. Each one is a configured limit reached: the request was not
/// admitted and holds no tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum Rejection {
    /// `Config::max_waiting` requests are already waiting.
    QueueFull,
    /// Waiting would take the queued bytes past `Config::max_waiting_bytes`.
    QueueBytesFull,
    /// `Config::max_in_flight` requests are already in flight.
    TooManyInFlight,
    /// The request waited `Config::max_wait` without getting tokens.
    TimedOut,
}

/// A broken accounting invariant, reported by [`FlowControl::check_invariants`](super::FlowControl::check_invariants).
///
/// Not a refusal of a call, and so not one of the three [`ErrorKind`]s: no call returns it, and
/// seeing it means a bug in the controller, not in its caller.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvariantViolation {
    /// available + tracked differs from the pool size.
    #[error(
        "stream {stream:?} {class:?}: available {available} + tracked {tracked} != limit {limit}"
    )]
    Conservation {
        /// The stream.
        stream: StreamId,
        /// The pool.
        class: Class,
        /// Tokens available (negative in debt).
        available: i64,
        /// Tokens deducted and not yet returned.
        tracked: u64,
        /// The pool size.
        limit: u64,
    },
    /// A pool is deeper in debt than one request of its own class can take it.
    #[error("stream {stream:?} {class:?}: {available} available is past the debt bound")]
    Debt {
        /// The stream.
        stream: StreamId,
        /// The pool.
        class: Class,
        /// Tokens available.
        available: i64,
    },
    /// The waiting queue's books disagree with its contents.
    #[error("the waiting queue's byte or count totals disagree with its contents")]
    Queue,
}
