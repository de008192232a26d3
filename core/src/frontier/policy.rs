//! When to persist the high-water and a checkpoint, decided without IO.

use core::time::Duration;

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use super::{Checkpoint, Elapsed, Frontier, FrontierError, Span, Timestamp};
use crate::time::{Instant, Monotonic};

/// Settings of a [`CheckpointPolicy`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct PolicyConfig {
    /// The shortest time between two high-water persists, and between two span checkpoints.
    /// Default 10 minutes. Zero persists on every input that calls for it.
    pub interval: Duration,
    /// How far the frontier may lag the newest resolved timestamp before the spans ahead of it
    /// are checkpointed. Default 10 minutes.
    pub lag_threshold: Duration,
    /// The key-byte budget of a checkpoint (see [`Frontier::checkpoint`]). Default 1 MiB.
    pub max_bytes: usize,
}

impl PolicyConfig {
    /// This configuration with [`interval`](Self::interval) set.
    pub fn with_interval(mut self, interval: Duration) -> PolicyConfig {
        self.interval = interval;
        self
    }

    /// This configuration with [`lag_threshold`](Self::lag_threshold) set.
    pub fn with_lag_threshold(mut self, lag_threshold: Duration) -> PolicyConfig {
        self.lag_threshold = lag_threshold;
        self
    }

    /// This configuration with [`max_bytes`](Self::max_bytes) set.
    pub fn with_max_bytes(mut self, max_bytes: usize) -> PolicyConfig {
        self.max_bytes = max_bytes;
        self
    }
}

impl Default for PolicyConfig {
    fn default() -> PolicyConfig {
        PolicyConfig {
            interval: Duration::from_secs(600),
            lag_threshold: Duration::from_secs(600),
            max_bytes: 1 << 20,
        }
    }
}

/// What the caller should persist: one output of a [`CheckpointPolicy`], drained with
/// [`CheckpointPolicy::poll_output`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Output<T = Timestamp> {
    /// Persist this high-water: every tracked key has reached it.
    PersistHighWater(T),
    /// Persist this checkpoint, replacing the previous one. An empty checkpoint clears it.
    PersistCheckpoint(Checkpoint<T>),
}

/// Counters of a [`CheckpointPolicy`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct Metrics {
    /// Resolved spans handled.
    pub resolved_spans: u64,
    /// Resolved spans that advanced the frontier.
    pub frontier_advances: u64,
    /// High-water persists emitted.
    pub high_water_persists: u64,
    /// Checkpoints emitted while lagging.
    pub checkpoints: u64,
    /// Empty checkpoints emitted because the lag cleared.
    pub cleared_checkpoints: u64,
    /// Spans in the last non-empty checkpoint.
    pub last_checkpoint_spans: u64,
    /// Key bytes of the last non-empty checkpoint.
    pub last_checkpoint_bytes: u64,
    /// Spans the byte budget left out of the last non-empty checkpoint.
    pub last_checkpoint_omitted: u64,
    /// Entries in the frontier after the last input.
    pub entries: u64,
    /// Nanoseconds from the frontier to the newest resolved timestamp after the last input.
    pub lag_nanos: u64,
}

/// Decides when to persist progress of a frontier: the high-water whenever it advances (at most
/// once per interval), and the spans ahead of it when it lags.
///
/// ```
/// use core::time::Duration;
/// use weir::frontier::{CheckpointPolicy, Frontier, FrontierConfig, Output, PolicyConfig, Span, Timestamp};
/// use weir::time::Instant;
///
/// let secs = |s: i64| Timestamp::new(s * 1_000_000_000, 0);
/// let table = Span::new(b"a", b"z")?;
/// let frontier = Frontier::from_spans(FrontierConfig::default(), [table], secs(0))?;
/// let config = PolicyConfig::default().with_interval(Duration::from_secs(10));
/// let mut policy = CheckpointPolicy::new(Instant::ZERO, config, frontier);
/// // The first decision clears any checkpoint an earlier run may have left.
/// assert!(matches!(policy.poll_output(), Some(Output::PersistCheckpoint(c)) if c.is_empty()));
/// assert_eq!(policy.poll_output(), None);
///
/// policy.handle_resolved(Instant::from_secs(1), &Span::new(b"a", b"z")?, secs(5))?;
/// assert_eq!(policy.poll_output(), Some(Output::PersistHighWater(secs(5))));
/// assert_eq!(policy.poll_output(), None);
///
/// // The next advance waits for the interval: the timer says when.
/// policy.handle_resolved(Instant::from_secs(2), &Span::new(b"a", b"z")?, secs(6))?;
/// assert_eq!(policy.poll_output(), None);
/// assert_eq!(policy.poll_timeout(), Some(Instant::from_secs(11)));
/// policy.handle_timeout(Instant::from_secs(11));
/// assert_eq!(policy.poll_output(), Some(Output::PersistHighWater(secs(6))));
/// assert_eq!(policy.metrics().high_water_persists, 2);
/// # Ok::<(), weir::frontier::FrontierError>(())
/// ```
///
/// Sans-IO: feed resolved spans with [`handle_resolved`](Self::handle_resolved) and deadlines with
/// [`handle_timeout`](Self::handle_timeout), then drain [`poll_output`](Self::poll_output) until
/// `None` and wait until [`poll_timeout`](Self::poll_timeout). Every `now` passes through a
/// [`Monotonic`]: a `now` earlier than one already seen counts as that one. At most one
/// high-water and one checkpoint wait to be drained; a newer one replaces an undrained older one
/// of its kind, since only the latest matters, and goes after the other kind.
///
/// The rules:
/// - the high-water is persisted when the frontier is above the last persisted one and `interval`
///   has passed since the last high-water persist (the first advance is persisted at once);
/// - while the frontier lags the newest resolved timestamp by more than `lag_threshold`, a
///   checkpoint ([`Frontier::checkpoint`] with `max_bytes`) is persisted every `interval`, the
///   first one as soon as the lag appears;
/// - when the lag clears after a non-empty checkpoint, an empty checkpoint is persisted at once,
///   so that a stale one is never restored. A new policy assumes an earlier run may have left one,
///   so its first decision, made when it is built, persists an empty checkpoint if the frontier
///   does not lag, and a checkpoint if it does.
#[derive(Debug)]
pub struct CheckpointPolicy<T = Timestamp> {
    config: PolicyConfig,
    frontier: Frontier<T>,
    clock: Monotonic,
    persisted_high_water: Option<T>,
    high_water_at: Option<Instant>,
    checkpoint_at: Option<Instant>,
    checkpoint_stored: bool,
    outputs: VecDeque<Output<T>>,
    metrics: Metrics,
}

impl<T: Ord + Clone + Elapsed> CheckpointPolicy<T> {
    /// A policy over `frontier`, whose current high-water counts as already persisted (it is
    /// typically the one a restart restored). It makes its first decision at `now`: drain
    /// [`poll_output`](Self::poll_output) right after building it.
    pub fn new(now: Instant, config: PolicyConfig, frontier: Frontier<T>) -> CheckpointPolicy<T> {
        let mut policy = CheckpointPolicy {
            config,
            persisted_high_water: frontier.frontier(),
            frontier,
            clock: Monotonic::default(),
            high_water_at: None,
            checkpoint_at: None,
            // An earlier run may have persisted a checkpoint this one must not leave stale.
            checkpoint_stored: true,
            outputs: VecDeque::new(),
            metrics: Metrics::default(),
        };
        policy.observe();
        let now = policy.clock.observe(now);
        policy.decide(now);
        policy
    }

    /// The frontier being tracked, borrowed: it can hold millions of entries, and copying it on
    /// every read would cost more than the policy itself. Its own readers
    /// ([`Frontier::frontier`], [`Frontier::get`], ...) return owned values.
    pub fn frontier(&self) -> &Frontier<T> {
        &self.frontier
    }

    /// A snapshot of the counters.
    pub fn metrics(&self) -> Metrics {
        self.metrics.clone()
    }

    /// `span` reached `ts`. Returns whether the frontier advanced; an error changes nothing.
    ///
    /// Whether the frontier advanced is returned rather than put out: it is complete when the
    /// call returns, and what to persist because of it comes out of
    /// [`poll_output`](Self::poll_output).
    pub fn handle_resolved(
        &mut self,
        now: Instant,
        span: &Span,
        ts: T,
    ) -> Result<bool, FrontierError> {
        let advanced = self.frontier.forward(span, ts)?;
        let now = self.clock.observe(now);
        self.metrics.resolved_spans += 1;
        self.metrics.frontier_advances += u64::from(advanced);
        self.observe();
        self.decide(now);
        Ok(advanced)
    }

    /// Time passed; call at or after [`poll_timeout`](Self::poll_timeout).
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.clock.observe(now);
        self.decide(now);
    }

    /// The next thing to persist, in the order decided. Drain until `None` after every call.
    pub fn poll_output(&mut self) -> Option<Output<T>> {
        self.outputs.pop_front()
    }

    /// When a throttled high-water or the next checkpoint of a lagging frontier falls due; `None`
    /// when nothing waits. Everything already due is decided on the input that made it due, so
    /// the deadline is always after the latest `now`. With a zero interval nothing is throttled
    /// and there is no timer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.config.interval.is_zero() {
            return None;
        }
        let due = |at: Option<Instant>| at.map(|at| at + self.config.interval);
        let high_water = self
            .high_water_due()
            .then(|| due(self.high_water_at))
            .flatten();
        let checkpoint = self.is_lagging().then(|| due(self.checkpoint_at)).flatten();
        high_water.into_iter().chain(checkpoint).min()
    }

    /// How far the frontier lags the newest resolved timestamp.
    pub fn lag(&self) -> Duration {
        match (self.frontier.frontier(), self.frontier.newest()) {
            (Some(low), Some(high)) => high.elapsed_since(&low),
            _ => Duration::ZERO,
        }
    }

    /// Whether the lag is over the threshold.
    pub fn is_lagging(&self) -> bool {
        self.lag() > self.config.lag_threshold
    }

    /// The entries more than the lag threshold behind the newest resolved timestamp, in key
    /// order: the spans holding the frontier back.
    pub fn lagging_spans(&self) -> Vec<(Span, T)> {
        let Some(newest) = self.frontier.newest() else {
            return Vec::new();
        };
        let threshold = self.config.lag_threshold;
        self.frontier
            .entries()
            .filter(|(_, ts)| newest.elapsed_since(ts) > threshold)
            .collect()
    }

    fn high_water_due(&self) -> bool {
        match (self.frontier.frontier(), &self.persisted_high_water) {
            (Some(now), Some(persisted)) => now > *persisted,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    /// Queues `output`, replacing an undrained one of the same kind.
    fn emit(&mut self, output: Output<T>) {
        let kind = core::mem::discriminant(&output);
        self.outputs.retain(|o| core::mem::discriminant(o) != kind);
        self.outputs.push_back(output);
    }

    fn decide(&mut self, now: Instant) {
        let interval = self.config.interval;
        let ready = |at: Option<Instant>| at.is_none_or(|at| now >= at + interval);
        if self.high_water_due() && ready(self.high_water_at) {
            self.persisted_high_water = self.frontier.frontier();
            self.high_water_at = Some(now);
            self.metrics.high_water_persists += 1;
            if let Some(high_water) = self.persisted_high_water.clone() {
                self.emit(Output::PersistHighWater(high_water));
            }
        }
        if self.is_lagging() {
            if ready(self.checkpoint_at) {
                let checkpoint = self.frontier.checkpoint(self.config.max_bytes);
                self.checkpoint_at = Some(now);
                self.checkpoint_stored = !checkpoint.is_empty();
                self.metrics.checkpoints += 1;
                self.metrics.last_checkpoint_spans = checkpoint.span_count() as u64;
                self.metrics.last_checkpoint_bytes = checkpoint.key_bytes() as u64;
                self.metrics.last_checkpoint_omitted = checkpoint.omitted_spans as u64;
                self.emit(Output::PersistCheckpoint(checkpoint));
            }
        } else if self.checkpoint_stored {
            self.checkpoint_stored = false;
            self.metrics.cleared_checkpoints += 1;
            self.emit(Output::PersistCheckpoint(Checkpoint::empty()));
        }
    }

    fn observe(&mut self) {
        self.metrics.entries = self.frontier.len() as u64;
        self.metrics.lag_nanos = u64::try_from(self.lag().as_nanos()).unwrap_or(u64::MAX);
    }
}
