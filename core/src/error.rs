//! The three kinds of error a machine's call can return.
//!
//! Every machine follows one rule: a call returns `Err` only when it changed nothing, and the error
//! says which of three things went wrong. A peer that breaks the protocol is not among them: the
//! machine reports that once through its `poll_output`, closes, and answers later calls with an
//! error of kind [`ErrorKind::Closed`].
//!
//! ```
//! use weir::error::{ErrorKind, Kind};
//! use weir::frontier::{FrontierError, Span};
//!
//! let refused: FrontierError = Span::new(b"b", b"a").unwrap_err();
//! assert_eq!(refused.kind(), ErrorKind::Usage);
//! ```
//!
//! Naming: the error a machine's calls return is `<Module>Error` (`SessionError`,
//! `TransferError`, `FlowError`, `FrontierError`), and implements [`Kind`]. An error in what a
//! peer sent is named after the format it breaks (`WireError` for DRPC frames, `FrameError` and
//! `ParseError` for pgwire) and travels inside the machine's closing output.

/// Which of the three kinds of refusal an error is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum ErrorKind {
    /// The caller asked for something the machine cannot do in its state: an unknown stream, a
    /// second transfer, an argument out of range. Fix the caller.
    Usage,
    /// A limit from the machine's `Config` was reached. Nothing was dropped: the caller may retry
    /// once the machine has drained (a stream closed, queued bytes written).
    Limit,
    /// The machine is closed (the peer broke the protocol, the connection ended, or it was
    /// closed locally); it accepts no more input.
    Closed,
}

/// An error of one of the three kinds.
pub trait Kind {
    /// The kind of this error.
    fn kind(&self) -> ErrorKind;
}
