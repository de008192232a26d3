//! What the controller gives out: the outcome of every request, and the answer to a direct
//! deduction.

use alloc::vec::Vec;
use core::time::Duration;

use super::error::Rejection;
use super::types::{Class, RequestId, StreamId};
use crate::time::Instant;

/// One output of a [`FlowControl`](super::FlowControl), drained with
/// [`poll_output`](super::FlowControl::poll_output) in the order produced.
///
/// Every [`admit`](super::FlowControl::admit) that returns `Ok` produces exactly one output for
/// its request: `Admitted`, `Queued` or `Rejected`. A `Queued` request produces one more later,
/// `Admitted` or `Rejected`, unless it is [`cancel`](super::FlowControl::cancel)led first.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Output {
    /// The request got its tokens; they are already deducted.
    Admitted {
        /// The request.
        id: RequestId,
        /// What it may do.
        grant: Grant,
    },
    /// The request waits for tokens. Its outcome comes later as another output, at the latest at
    /// `deadline`.
    Queued {
        /// The request.
        id: RequestId,
        /// When the request is rejected if it has not been admitted by then.
        deadline: Instant,
    },
    /// The request was turned away (at a configured limit, or after waiting too long); it holds
    /// no tokens.
    Rejected {
        /// The request.
        id: RequestId,
        /// Why.
        reason: Rejection,
    },
}

/// What an admitted request may do.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Grant {
    /// The request's class.
    pub class: Class,
    /// Bytes it asked for.
    pub bytes: u64,
    /// Streams its bytes were deducted from: send to these now.
    pub charged: Vec<StreamId>,
    /// Replicating streams that were out of tokens when a quorum admitted the request (regular
    /// work only). Their copy of the entry waits, in log order, until that stream has tokens
    /// again; send it then through [`FlowControl::deduct`](super::FlowControl::deduct).
    pub deferred: Vec<StreamId>,
    /// How long the request waited.
    pub waited: Duration,
}

/// The answer to [`FlowControl::deduct`](super::FlowControl::deduct).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Deduction {
    /// Deducted and tracked: send the entry.
    Deducted,
    /// The pool has no tokens; nothing changed. Try again after a return.
    NoTokens,
    /// The receiver already reported this position admitted; nothing to deduct.
    AlreadyAdmitted,
}
