//! When to persist the high-water and a checkpoint, decided without IO.

use core::time::Duration;

use super::{Checkpoint, Elapsed, Frontier, FrontierError, Span};
use crate::time::Instant;

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

/// What the caller should persist. Drained with [`CheckpointPolicy::poll_action`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action<T> {
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
/// Sans-IO: feed resolved spans with [`handle_resolved`](Self::handle_resolved) and deadlines with
/// [`handle_timeout`](Self::handle_timeout), then drain [`poll_action`](Self::poll_action) until
/// `None` and wait until [`poll_timeout`](Self::poll_timeout). At most one high-water and one
/// checkpoint wait to be drained; a newer one replaces an undrained older one of its kind, since
/// only the latest matters.
///
/// The rules:
/// - the high-water is persisted when the frontier is above the last persisted one and `interval`
///   has passed since the last high-water persist (the first advance is persisted at once);
/// - while the frontier lags the newest resolved timestamp by more than `lag_threshold`, a
///   checkpoint ([`Frontier::checkpoint`] with `max_bytes`) is persisted every `interval`, the
///   first one as soon as the lag appears;
/// - when the lag clears after a non-empty checkpoint, an empty checkpoint is persisted at once,
///   so that a stale one is never restored. A new policy assumes an earlier run may have left one,
///   so its first decision without lag persists an empty checkpoint too.
#[derive(Debug)]
pub struct CheckpointPolicy<T> {
    config: PolicyConfig,
    frontier: Frontier<T>,
    persisted_high_water: Option<T>,
    high_water_at: Option<Instant>,
    checkpoint_at: Option<Instant>,
    checkpoint_stored: bool,
    pending_high_water: Option<T>,
    pending_checkpoint: Option<Checkpoint<T>>,
    metrics: Metrics,
}

impl<T: Ord + Clone + Elapsed> CheckpointPolicy<T> {
    /// A policy over `frontier`, whose current high-water counts as already persisted (it is
    /// typically the one a restart restored).
    pub fn new(config: PolicyConfig, frontier: Frontier<T>) -> CheckpointPolicy<T> {
        let mut policy = CheckpointPolicy {
            config,
            persisted_high_water: frontier.frontier().cloned(),
            frontier,
            high_water_at: None,
            checkpoint_at: None,
            // An earlier run may have persisted a checkpoint this one must not leave stale.
            checkpoint_stored: true,
            pending_high_water: None,
            pending_checkpoint: None,
            metrics: Metrics::default(),
        };
        policy.observe();
        policy
    }

    /// The frontier being tracked.
    pub fn frontier(&self) -> &Frontier<T> {
        &self.frontier
    }

    /// The counters so far.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// `span` reached `ts`. Returns whether the frontier advanced; an error changes nothing.
    pub fn handle_resolved(
        &mut self,
        now: Instant,
        span: &Span,
        ts: T,
    ) -> Result<bool, FrontierError> {
        let advanced = self.frontier.forward(span, ts)?;
        self.metrics.resolved_spans += 1;
        self.metrics.frontier_advances += u64::from(advanced);
        self.observe();
        self.decide(now);
        Ok(advanced)
    }

    /// Time passed; call at or after [`poll_timeout`](Self::poll_timeout).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.decide(now);
    }

    /// The next thing to persist: a high-water first, then a checkpoint.
    pub fn poll_action(&mut self) -> Option<Action<T>> {
        if let Some(ts) = self.pending_high_water.take() {
            return Some(Action::PersistHighWater(ts));
        }
        self.pending_checkpoint
            .take()
            .map(Action::PersistCheckpoint)
    }

    /// When a throttled high-water or the next checkpoint of a lagging frontier falls due.
    ///
    /// [`Instant::ZERO`] means "already due": a policy built over a frontier that already lags
    /// wants its first checkpoint at the first [`handle_timeout`](Self::handle_timeout). With a
    /// zero interval nothing is throttled, everything is decided on input, and there is no timer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.config.interval.is_zero() {
            return None;
        }
        let due = |at: Option<Instant>| at.map_or(Instant::ZERO, |at| at + self.config.interval);
        let high_water = self.high_water_due().then(|| due(self.high_water_at));
        let checkpoint = self.is_lagging().then(|| due(self.checkpoint_at));
        match (high_water, checkpoint) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// How far the frontier lags the newest resolved timestamp.
    pub fn lag(&self) -> Duration {
        match (self.frontier.frontier(), self.frontier.newest()) {
            (Some(low), Some(high)) => high.elapsed_since(low),
            _ => Duration::ZERO,
        }
    }

    /// Whether the lag is over the threshold.
    pub fn is_lagging(&self) -> bool {
        self.lag() > self.config.lag_threshold
    }

    /// The entries more than the lag threshold behind the newest resolved timestamp, in key
    /// order: the spans holding the frontier back.
    pub fn lagging_spans(&self) -> impl Iterator<Item = (Span, &T)> + '_ {
        let newest = self.frontier.newest();
        let threshold = self.config.lag_threshold;
        self.frontier
            .entries()
            .filter(move |(_, ts)| newest.is_some_and(|n| n.elapsed_since(ts) > threshold))
    }

    fn high_water_due(&self) -> bool {
        match (self.frontier.frontier(), &self.persisted_high_water) {
            (Some(now), Some(persisted)) => now > persisted,
            (Some(_), None) => true,
            (None, _) => false,
        }
    }

    fn decide(&mut self, now: Instant) {
        let ready = |at: Option<Instant>| at.is_none_or(|at| now >= at + self.config.interval);
        if self.high_water_due() && ready(self.high_water_at) {
            self.persisted_high_water = self.frontier.frontier().cloned();
            self.pending_high_water = self.persisted_high_water.clone();
            self.high_water_at = Some(now);
            self.metrics.high_water_persists += 1;
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
                self.pending_checkpoint = Some(checkpoint);
            }
        } else if self.checkpoint_stored {
            self.checkpoint_stored = false;
            self.metrics.cleared_checkpoints += 1;
            self.pending_checkpoint = Some(Checkpoint::empty());
        }
    }

    fn observe(&mut self) {
        self.metrics.entries = self.frontier.len() as u64;
        self.metrics.lag_nanos = u64::try_from(self.lag().as_nanos()).unwrap_or(u64::MAX);
    }
}
