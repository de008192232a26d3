//! What the controller answers: admissions, grants, events and deductions.

use alloc::vec::Vec;
use core::time::Duration;

use super::error::Rejection;
use super::types::{Class, RequestId, StreamId};
use crate::time::Instant;

/// The answer to [`FlowControl::admit`](super::FlowControl::admit).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Admission {
    /// Admitted now; the tokens are already deducted.
    Admitted(Grant),
    /// Waiting for tokens. The outcome comes later as an [`Event`] from
    /// [`FlowControl::poll_event`](super::FlowControl::poll_event), at the latest at `deadline`.
    Queued {
        /// When the request is rejected if it has not been admitted by then.
        deadline: Instant,
    },
    /// Turned away at a configured limit; it holds no tokens and will produce no event.
    Rejected(Rejection),
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

/// An outcome for a request that had to wait.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The request got its tokens.
    Admitted {
        /// The request.
        id: RequestId,
        /// What it may do.
        grant: Grant,
    },
    /// The request left the queue without tokens.
    Rejected {
        /// The request.
        id: RequestId,
        /// Why.
        reason: Rejection,
    },
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
