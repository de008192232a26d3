//! Span frontiers: the timestamp up to which every tracked key span is complete, and the
//! checkpoints that carry progress across restarts.
//!
//! ```
//! use core::time::Duration;
//! use weir::frontier::{CheckpointPolicy, Frontier, FrontierConfig, Output, PolicyConfig, Span, Timestamp};
//! use weir::time::Instant;
//!
//! let ts = |wall| Timestamp::new(wall, 0);
//! let table = Span::new(b"a", b"z")?;
//! let mut f = Frontier::from_spans(FrontierConfig::default(), [table], ts(10))?;
//!
//! // Half the table resolves to 20: the other half still holds the frontier at 10.
//! assert!(!f.forward(&Span::new(b"a", b"m")?, ts(20))?);
//! assert_eq!(f.frontier(), Some(ts(10)));
//! assert_eq!(f.frontier_span(), Some((Span::new(b"m", b"z")?, ts(10))));
//!
//! // The rest catches up to 20: the two halves merge back into one entry and the frontier moves.
//! assert!(f.forward(&Span::new(b"m", b"z")?, ts(20))?);
//! assert_eq!((f.frontier(), f.len()), (Some(ts(20)), 1));
//!
//! // One span races ahead; a checkpoint keeps it, and a restarted frontier gets it back.
//! f.forward(&Span::new(b"c", b"d")?, ts(90))?;
//! let checkpoint = f.checkpoint(1 << 20);
//! let mut restarted = Frontier::from_spans(FrontierConfig::default(), [Span::new(b"a", b"z")?], ts(20))?;
//! restarted.restore(&checkpoint)?;
//! assert_eq!(restarted.get(b"c"), Some(ts(90)));
//! assert_eq!(restarted.get(b"e"), Some(ts(20)));
//!
//! // The policy says what to persist and when: here, with the frontier 70 ns behind the newest
//! // span and a 50 ns threshold, the spans ahead of it at once.
//! let config = PolicyConfig::default().with_lag_threshold(Duration::from_nanos(50));
//! let mut policy = CheckpointPolicy::new(Instant::ZERO, config, f);
//! assert!(policy.is_lagging());
//! assert_eq!(policy.poll_output(), Some(Output::PersistCheckpoint(checkpoint)));
//! assert_eq!(policy.poll_output(), None);
//! assert_eq!(policy.poll_timeout(), Some(Instant::from_secs(600)));
//! # Ok::<(), weir::frontier::FrontierError>(())
//! ```
//!
//! - [`Span`]: a half-open byte-key range `[start, end)`; empty and inverted spans are errors.
//! - [`Timestamp`]: a hybrid-logical-clock timestamp, the default type parameter of every
//!   generic type here. [`Frontier`] works with any `Ord + Clone` timestamp; [`CheckpointPolicy`]
//!   also needs [`Elapsed`] to measure lag.
//! - [`Frontier`]: tracked spans at timestamps that only move up; the minimum is the frontier.
//! - [`Checkpoint`] and [`LegacyCheckpoint`]: the spans ahead of the frontier, cut to a byte
//!   budget by a documented rule, and restored with [`Frontier::restore`].
//! - [`CheckpointPolicy`]: a sans-IO machine that says when to persist the high-water and when to
//!   persist a checkpoint, through [`Output`]s drained with [`CheckpointPolicy::poll_output`].
//!
//! Calls that can be refused return [`FrontierError`], which implements
//! [`Kind`](crate::error::Kind): a malformed span is [`Usage`](crate::error::ErrorKind::Usage), a
//! full frontier [`Limit`](crate::error::ErrorKind::Limit).

mod checkpoint;
mod error;
#[allow(clippy::module_inception)]
mod frontier;
mod key;
mod policy;
mod span;
mod timestamp;

#[cfg(test)]
mod tests;

pub use checkpoint::{Checkpoint, CheckpointGroup, LegacyCheckpoint};
pub use error::FrontierError;
pub use frontier::{Frontier, FrontierConfig};
pub use policy::{CheckpointPolicy, Metrics, Output, PolicyConfig};
pub use span::Span;
pub use timestamp::{Elapsed, Timestamp};
