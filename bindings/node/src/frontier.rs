//! `frontier`: spans, timestamps, the frontier and the checkpoint policy.
//!
//! ```js
//! const { frontier: { Frontier, Span, Timestamp } } = require('weir')
//! const f = new Frontier([new Span(Buffer.from('a'), Buffer.from('z'))], new Timestamp(1n))
//! f.forward(new Span(Buffer.from('a'), Buffer.from('m')), new Timestamp(5n))
//! console.log(f.frontier().wallNs)                         // 1n: keys m..z are still at 1
//! ```

use std::time::Duration;

use napi::bindgen_prelude::{BigInt, ClassInstance};
use napi_derive::napi;
use weir::frontier as core;
use weir::time::Instant;

use crate::buffer::Buffer;
use crate::errors::{error, refused, to_i64, to_u64, to_usize, usage, Code, Result};

fn instant(now: &BigInt) -> Result<Instant> {
    to_u64("now", now).map(Instant::from_nanos)
}

/// A key range `[start, end)`: `start` is included, `end` is not, and `start < end`. The
/// constructor throws `WEIR_USAGE` for an empty or inverted range.
#[napi(namespace = "frontier")]
#[derive(Clone)]
pub struct Span(core::Span);

#[napi(namespace = "frontier")]
impl Span {
    #[napi(constructor)]
    pub fn new(start: &[u8], end: &[u8]) -> Result<Span> {
        core::Span::new(start, end).map(Span).map_err(refused)
    }

    /// The first key of the range (a copy).
    #[napi(getter)]
    pub fn start(&self) -> Buffer {
        self.0.start().to_vec().into()
    }

    /// The first key past the range (a copy).
    #[napi(getter)]
    pub fn end(&self) -> Buffer {
        self.0.end().to_vec().into()
    }

    /// Whether both spans cover the same keys.
    #[napi]
    pub fn equals(&self, other: &Span) -> bool {
        self.0 == other.0
    }
}

/// A hybrid-logical-clock timestamp: wall-clock nanoseconds (`bigint`), then a logical counter.
#[napi(namespace = "frontier")]
#[derive(Clone, Copy)]
pub struct Timestamp(core::Timestamp);

#[napi(namespace = "frontier")]
impl Timestamp {
    /// `logical` defaults to 0.
    #[napi(constructor)]
    pub fn new(wall_ns: BigInt, logical: Option<i32>) -> Result<Timestamp> {
        let wall = to_i64("wallNs", &wall_ns)?;
        Ok(Timestamp(core::Timestamp::new(wall, logical.unwrap_or(0))))
    }

    /// Wall-clock nanoseconds since the Unix epoch.
    #[napi(getter)]
    pub fn wall_ns(&self) -> BigInt {
        BigInt::from(self.0.wall)
    }

    /// Orders events that share a wall time.
    #[napi(getter)]
    pub fn logical(&self) -> i32 {
        self.0.logical
    }

    /// -1, 0 or 1 as this timestamp is before, equal to or after `other`: a sort comparator.
    #[napi]
    pub fn compare(&self, other: &Timestamp) -> i32 {
        self.0.cmp(&other.0) as i32
    }

    /// Whether the two timestamps are equal.
    #[napi]
    pub fn equals(&self, other: &Timestamp) -> bool {
        self.0 == other.0
    }
}

/// One entry of a frontier: a maximal run of keys at one timestamp.
#[napi(object, namespace = "frontier", object_from_js = false)]
pub struct Entry {
    pub span: Span,
    pub ts: Timestamp,
}

/// The progress of a set of key ranges: the timestamp of every tracked key, and the frontier,
/// the lowest of them.
#[napi(namespace = "frontier")]
pub struct Frontier(core::Frontier);

#[napi(namespace = "frontier")]
impl Frontier {
    /// A frontier tracking the union of `spans`, all at `ts`.
    #[napi(constructor)]
    pub fn new(spans: Vec<ClassInstance<'_, Span>>, ts: &Timestamp) -> Result<Frontier> {
        let spans = spans.iter().map(|span| span.0.clone());
        core::Frontier::from_spans(core::FrontierConfig::default(), spans, ts.0)
            .map(Frontier)
            .map_err(refused)
    }

    /// Moves every tracked key in `span` up to `ts` (keys already at or above it, and keys not
    /// tracked, are left alone). Returns whether the frontier advanced.
    #[napi]
    pub fn forward(&mut self, span: &Span, ts: &Timestamp) -> Result<bool> {
        self.0.forward(&span.0, ts.0).map_err(refused)
    }

    /// The lowest timestamp of any tracked key, or `null` when nothing is tracked.
    #[napi]
    pub fn frontier(&self) -> Option<Timestamp> {
        self.0.frontier().map(Timestamp)
    }

    /// The timestamp of `key`, or `null` if it is not tracked.
    #[napi]
    pub fn get(&self, key: &[u8]) -> Option<Timestamp> {
        self.0.get(key).map(Timestamp)
    }

    /// Every entry, in key order.
    #[napi]
    pub fn entries(&self) -> Vec<Entry> {
        self.0
            .entries()
            .map(|(span, ts)| Entry {
                span: Span(span),
                ts: Timestamp(ts),
            })
            .collect()
    }

    /// The spans ahead of the frontier, in at most `maxBytes` of keys (default the policy's,
    /// 1 MiB).
    #[napi]
    pub fn checkpoint(&self, max_bytes: Option<f64>) -> Result<Checkpoint> {
        let max_bytes = match max_bytes {
            Some(n) => to_usize("maxBytes", n)?,
            None => core::PolicyConfig::default().max_bytes,
        };
        Ok(Checkpoint(self.0.checkpoint(max_bytes)))
    }

    /// Forwards each span of `checkpoint` to its timestamp; returns whether the frontier
    /// advanced.
    #[napi]
    pub fn restore(&mut self, checkpoint: &Checkpoint) -> Result<bool> {
        self.0.restore(&checkpoint.0).map_err(refused)
    }
}

/// Spans that all reached one timestamp.
#[napi(object, namespace = "frontier", object_from_js = false)]
pub struct CheckpointGroup {
    pub ts: Timestamp,
    pub spans: Vec<Span>,
}

/// The spans ahead of the frontier, grouped by timestamp, so that a restart keeps their
/// progress. `toBytes()` gives the bytes to persist (the core's serde form as JSON, as Python's
/// `Checkpoint.to_bytes()` writes it) and `Checkpoint.fromBytes` reads them back.
#[napi(namespace = "frontier")]
#[derive(Clone)]
pub struct Checkpoint(core::Checkpoint);

#[napi(namespace = "frontier")]
impl Checkpoint {
    /// One group per timestamp, in descending timestamp order.
    #[napi(getter)]
    pub fn groups(&self) -> Vec<CheckpointGroup> {
        self.0
            .groups
            .iter()
            .map(|group| CheckpointGroup {
                ts: Timestamp(group.timestamp),
                spans: group.spans.iter().cloned().map(Span).collect(),
            })
            .collect()
    }

    /// Spans left out to stay within the byte budget.
    #[napi(getter)]
    pub fn omitted_spans(&self) -> u32 {
        u32::try_from(self.0.omitted_spans).unwrap_or(u32::MAX)
    }

    /// The checkpoint's bytes, to persist.
    #[napi]
    pub fn to_bytes(&self) -> Result<Buffer> {
        serde_json::to_vec(&self.0)
            .map(Buffer::from)
            .map_err(|e| usage(e.to_string()))
    }

    /// A checkpoint from bytes `toBytes` made. Throws `WEIR_USAGE` for bytes that are not one
    /// (an empty or inverted span among them, too).
    #[napi(factory)]
    pub fn from_bytes(data: &[u8]) -> Result<Checkpoint> {
        serde_json::from_slice(data)
            .map(Checkpoint)
            .map_err(|e| usage(format!("not a checkpoint: {e}")))
    }
}

/// When a `CheckpointPolicy` persists, times in nanoseconds: `intervalNs` (default 10 minutes)
/// is the longest a changed frontier waits to be persisted; past `lagThresholdNs` (default 10
/// minutes) of lag the policy checkpoints the spans ahead of the frontier, in at most
/// `maxBytes` (default 1 MiB) of keys.
#[napi(object, namespace = "frontier")]
pub struct PolicyConfig {
    pub interval_ns: Option<BigInt>,
    pub lag_threshold_ns: Option<BigInt>,
    pub max_bytes: Option<f64>,
}

impl PolicyConfig {
    fn to_core(&self) -> Result<core::PolicyConfig> {
        let mut config = core::PolicyConfig::default();
        if let Some(n) = &self.interval_ns {
            config = config.with_interval(Duration::from_nanos(to_u64("intervalNs", n)?));
        }
        if let Some(n) = &self.lag_threshold_ns {
            config = config.with_lag_threshold(Duration::from_nanos(to_u64("lagThresholdNs", n)?));
        }
        if let Some(n) = self.max_bytes {
            config = config.with_max_bytes(to_usize("maxBytes", n)?);
        }
        Ok(config)
    }
}

/// An output of a `CheckpointPolicy`, told apart by `type`.
#[napi(
    namespace = "frontier",
    discriminant = "type",
    discriminant_case = "camelCase",
    object_from_js = false
)]
pub enum PolicyOutput {
    /// Persist this timestamp as the new high-water mark.
    PersistHighWater { ts: Timestamp },
    /// Persist this checkpoint, replacing the last one (an empty one clears it).
    PersistCheckpoint { checkpoint: Checkpoint },
}

/// A `CheckpointPolicy`'s counters, a snapshot.
#[napi(object, namespace = "frontier", object_from_js = false)]
pub struct PolicyMetrics {
    pub resolved_spans: u64,
    pub frontier_advances: u64,
    pub high_water_persists: u64,
    pub checkpoints: u64,
    pub cleared_checkpoints: u64,
    pub last_checkpoint_spans: u64,
    pub last_checkpoint_bytes: u64,
    pub last_checkpoint_omitted: u64,
    pub entries: u64,
    pub lag_nanos: u64,
}

/// Decides when a frontier's progress is persisted: a high-water mark when the frontier moves,
/// and checkpoints of the spans ahead while it lags. Sans-IO: feed it resolved spans and time,
/// drain `pollOutput()` after every call, and call `handleTimeout(now)` at `pollTimeout()`.
#[napi(namespace = "frontier")]
pub struct CheckpointPolicy(core::CheckpointPolicy);

#[napi(namespace = "frontier")]
impl CheckpointPolicy {
    /// A policy over a copy of `frontier`, starting at `now` (nanoseconds).
    #[napi(constructor)]
    pub fn new(
        now: BigInt,
        frontier: &Frontier,
        config: Option<PolicyConfig>,
    ) -> Result<CheckpointPolicy> {
        let config = match config {
            Some(config) => config.to_core()?,
            None => core::PolicyConfig::default(),
        };
        Ok(CheckpointPolicy(core::CheckpointPolicy::new(
            instant(&now)?,
            config,
            frontier.0.clone(),
        )))
    }

    /// `span` is resolved at `ts`; returns whether the frontier advanced.
    #[napi]
    pub fn handle_resolved(&mut self, now: BigInt, span: &Span, ts: &Timestamp) -> Result<bool> {
        self.0
            .handle_resolved(instant(&now)?, &span.0, ts.0)
            .map_err(refused)
    }

    /// The deadline from `pollTimeout()` has passed.
    #[napi]
    pub fn handle_timeout(&mut self, now: BigInt) -> Result<()> {
        self.0.handle_timeout(instant(&now)?);
        Ok(())
    }

    /// The next output, or `null`.
    #[napi]
    pub fn poll_output(&mut self) -> Result<Option<PolicyOutput>> {
        Ok(Some(match self.0.poll_output() {
            None => return Ok(None),
            Some(core::Output::PersistHighWater(ts)) => {
                PolicyOutput::PersistHighWater { ts: Timestamp(ts) }
            }
            Some(core::Output::PersistCheckpoint(checkpoint)) => PolicyOutput::PersistCheckpoint {
                checkpoint: Checkpoint(checkpoint),
            },
            Some(other) => {
                return Err(error(
                    Code::Unknown,
                    format!("an output weir's frontier has no JS form for: {other:?}"),
                ))
            }
        }))
    }

    /// When to call `handleTimeout`, in nanoseconds, or `null` for no timer.
    #[napi]
    pub fn poll_timeout(&self) -> Option<u64> {
        self.0.poll_timeout().map(Instant::as_nanos)
    }

    /// The frontier's lowest timestamp, or `null` when nothing is tracked.
    #[napi]
    pub fn frontier(&self) -> Option<Timestamp> {
        self.0.frontier().frontier().map(Timestamp)
    }

    /// The counters, a snapshot.
    #[napi]
    pub fn metrics(&self) -> PolicyMetrics {
        let m = self.0.metrics();
        PolicyMetrics {
            resolved_spans: m.resolved_spans,
            frontier_advances: m.frontier_advances,
            high_water_persists: m.high_water_persists,
            checkpoints: m.checkpoints,
            cleared_checkpoints: m.cleared_checkpoints,
            last_checkpoint_spans: m.last_checkpoint_spans,
            last_checkpoint_bytes: m.last_checkpoint_bytes,
            last_checkpoint_omitted: m.last_checkpoint_omitted,
            entries: m.entries,
            lag_nanos: m.lag_nanos,
        }
    }
}
