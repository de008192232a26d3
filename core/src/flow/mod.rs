//! Flow-control budgets for replication traffic: bounded memory when a receiver falls behind,
//! heartbeats that never wait, and pacing at the quorum's speed rather than the slowest
//! replica's.
//!
//! ```
//! use weir::flow::{Class, Config, FlowControl, LogPosition, Output, RequestId, StreamId, Targets};
//! use weir::time::Instant;
//!
//! let mut fc = FlowControl::new(Config::default());
//! let now = Instant::ZERO;
//! let replicas = [StreamId::new(1, 1), StreamId::new(1, 2), StreamId::new(1, 3)];
//! for s in replicas {
//!     fc.connect_stream(now, s, LogPosition::new(1, 0))?;
//! }
//! let targets = Targets::majority(&replicas).with_must_have(replicas[0]);
//!
//! // A 1 MiB write is admitted at once and its tokens are deducted at once.
//! fc.admit(now, RequestId(1), Class::Regular, 1 << 20, &targets)?;
//! let Some(Output::Admitted { id: RequestId(1), grant }) = fc.poll_output() else {
//!     panic!("16 MiB of tokens are available");
//! };
//! assert_eq!(fc.poll_output(), None);
//! assert_eq!(grant.charged.len(), 3);
//! assert_eq!(fc.available(replicas[1], Class::Regular), Some(15 << 20));
//!
//! // The write lands at log position 1/1; each receiver reports it admitted, absolutely, so a
//! // duplicate report returns nothing more.
//! fc.bind(now, RequestId(1), LogPosition::new(1, 1))?;
//! for s in replicas {
//!     assert_eq!(fc.handle_admitted(now, s, Class::Regular, LogPosition::new(1, 1))?, 1 << 20);
//!     assert_eq!(fc.handle_admitted(now, s, Class::Regular, LogPosition::new(1, 1))?, 0);
//! }
//! assert_eq!(fc.available(replicas[1], Class::Regular), Some(16 << 20));
//!
//! // Heartbeats take no tokens and never wait.
//! fc.admit(now, RequestId(2), Class::Control, 64, &targets)?;
//! assert!(matches!(fc.poll_output(), Some(Output::Admitted { id: RequestId(2), .. })));
//! assert_eq!(fc.poll_timeout(), None);
//! assert_eq!(fc.metrics().regular.wait_duration_ns.count, 1);
//! fc.check_invariants()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Model
//!
//! A *stream* is one destination (a tenant's traffic to one store). Each stream has two token
//! pools measured in bytes: regular (16 MiB by default) and elastic (8 MiB). Regular work
//! deducts from both, elastic work only from elastic, so foreground writes can starve background
//! writes but never the reverse. [`Class::Control`] traffic (heartbeats, votes,
//! acknowledgements) never waits and never deducts.
//!
//! A request names its targets: the replicas it goes to, how many form a quorum, and which must
//! always be included (leader, leaseholder). Regular work waits until a quorum of replicating
//! targets, with every replicating must-have among them, has tokens; replicas outside that set
//! that are out of tokens are *deferred* (the caller sends them the entry later, through
//! [`FlowControl::deduct`], when they have tokens again), so one slow replica does not pace the
//! whole group. Elastic work waits for every replicating target. Disconnected or unknown streams
//! pace nothing.
//!
//! # Accounting
//!
//! Admission deducts at once. A pool only admits while it is positive, and a request asks for at
//! most the pool size, so one admission can leave a pool at most that request's bytes in debt and
//! nothing else of that class gets in until returns lift it above zero: a single small return
//! can never release a flood of waiters. (CockroachDB's first design deducted later and let one
//! 1 KiB return admit 100 waiters, 40 MiB over.)
//!
//! Deducted bytes are *held* by the admitted request until [`FlowControl::bind`] gives it a log
//! position, then *tracked* at (class, position) until the receiver reports that position
//! admitted through [`FlowControl::handle_admitted`]. Reports are absolute ("everything up to
//! here"), so lost, duplicated and reordered reports are harmless: the highest one seen is a
//! low-water mark below which reports and deductions are no-ops. Disconnecting or removing a
//! stream returns everything it tracked. [`FlowControl::check_invariants`] checks, at any time,
//! that available + tracked = limit for every stream and pool.
//!
//! # Waiting
//!
//! Requests that cannot go at once wait in a queue bounded in count and bytes
//! ([`Config::max_waiting`], [`Config::max_waiting_bytes`]); past a bound they are turned away
//! with a typed [`Rejection`]. Each wait has a deadline ([`Config::max_wait`]): call
//! [`FlowControl::handle_timeout`] at [`FlowControl::poll_timeout`]. Every outcome, at once or
//! after waiting, comes out of [`FlowControl::poll_output`] as an [`Output`]. Regular waiters are served before elastic ones, and
//! within a class a request never overtakes an earlier one that shares a stream with it.
//!
//! Every call that takes a `now` passes it through a [`time::Monotonic`](crate::time::Monotonic):
//! a `now` earlier than one already seen counts as that one, so a clock stepped back means no
//! time passed. [`FlowControl::metrics`] records how long admitted requests waited in
//! [`ClassMetrics::wait_duration_ns`], a [`Histogram`](crate::histogram::Histogram) in
//! nanoseconds.
//!
//! # Memory
//!
//! Every structure is bounded by the [`Config`]: streams by [`Config::max_streams`], waiting
//! requests and undrained outputs by [`Config::max_waiting`] (`admit` refuses with
//! [`FlowError::Undrained`] until the outputs are drained) and
//! [`Config::max_waiting_bytes`], admitted requests without a position by
//! [`Config::max_in_flight`], targets per request by [`Config::max_targets`]. Tracked
//! deductions are kept one per (class, position); each is at least one byte and is only made
//! while its pool is positive, so a stream tracks at most about twice its pool size in entries,
//! and in practice one per entry in flight.
//!
//! Positions are compared per stream and class, so the receiver behind a stream must admit
//! entries in position order: one replicated log per controller, or any sequence the receivers
//! report in order.

mod config;
mod controller;
mod error;
mod inspect;
mod metrics;
mod output;
mod queue;
mod stream;
mod table;
mod types;

pub use config::Config;
pub use controller::FlowControl;
pub use error::{FlowError, InvariantViolation, Rejection};
pub use metrics::{ClassMetrics, Metrics};
pub use output::{Deduction, Grant, Output};
pub use types::{Class, LogPosition, RequestId, StreamId, Target, Targets};

#[cfg(test)]
mod tests;
