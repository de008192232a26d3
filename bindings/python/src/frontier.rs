//! `weir.frontier`: spans, timestamps, the frontier and the checkpoint policy.

use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use weir::frontier as core;
use weir::time::Instant;

use crate::convert::nanos;
use crate::errors::{to_py, UsageError, WeirError};

/// A key range `[start, end)`: `start` is included, `end` is not, and `start < end`.
///
/// Raises `UsageError` for an empty or inverted range.
#[pyclass(module = "weir._weir", frozen, eq, ord, hash)]
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Span(pub(crate) core::Span);

#[pymethods]
impl Span {
    #[new]
    fn new(start: &[u8], end: &[u8]) -> PyResult<Span> {
        core::Span::new(start, end).map(Span).map_err(to_py)
    }

    /// The first key of the range.
    #[getter]
    fn start<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.0.start())
    }

    /// The first key past the range.
    #[getter]
    fn end<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.0.end())
    }

    #[classattr]
    fn __match_args__() -> (&'static str, &'static str) {
        ("start", "end")
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "Span({}, {})",
            self.start(py).repr()?,
            self.end(py).repr()?
        ))
    }
}

/// A hybrid-logical-clock timestamp: wall-clock nanoseconds, then a logical counter. Ordered and
/// hashable.
#[pyclass(module = "weir._weir", frozen, eq, ord, hash)]
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub(crate) core::Timestamp);

#[pymethods]
impl Timestamp {
    #[new]
    #[pyo3(signature = (wall_ns, logical = 0))]
    fn new(wall_ns: i64, logical: i32) -> Timestamp {
        Timestamp(core::Timestamp::new(wall_ns, logical))
    }

    /// Wall-clock nanoseconds since the Unix epoch.
    #[getter]
    fn wall_ns(&self) -> i64 {
        self.0.wall
    }

    /// Orders events that share a wall time.
    #[getter]
    fn logical(&self) -> i32 {
        self.0.logical
    }

    #[classattr]
    fn __match_args__() -> (&'static str, &'static str) {
        ("wall_ns", "logical")
    }

    fn __repr__(&self) -> String {
        format!("Timestamp({}, {})", self.0.wall, self.0.logical)
    }
}

/// The progress of a set of key ranges: the timestamp of every tracked key, and the frontier,
/// the lowest of them.
#[pyclass(module = "weir._weir")]
pub struct Frontier(core::Frontier);

#[pymethods]
impl Frontier {
    /// A frontier tracking the union of `spans`, all at `ts`.
    #[new]
    fn new(spans: Vec<Span>, ts: Timestamp) -> PyResult<Frontier> {
        let spans = spans.into_iter().map(|span| span.0);
        core::Frontier::from_spans(core::FrontierConfig::default(), spans, ts.0)
            .map(Frontier)
            .map_err(to_py)
    }

    /// Moves every tracked key in `span` up to `ts` (keys already at or above it, and keys not
    /// tracked, are left alone). Returns whether the frontier advanced.
    fn forward(&mut self, span: &Span, ts: Timestamp) -> PyResult<bool> {
        self.0.forward(&span.0, ts.0).map_err(to_py)
    }

    /// The lowest timestamp of any tracked key, or `None` when nothing is tracked.
    fn frontier(&self) -> Option<Timestamp> {
        self.0.frontier().map(Timestamp)
    }

    /// The timestamp of `key`, or `None` if it is not tracked.
    fn get(&self, key: &[u8]) -> Option<Timestamp> {
        self.0.get(key).map(Timestamp)
    }

    /// Every entry (a maximal run of keys at one timestamp), in key order.
    fn entries(&self) -> Vec<(Span, Timestamp)> {
        self.0
            .entries()
            .map(|(span, ts)| (Span(span), Timestamp(ts)))
            .collect()
    }

    /// The spans ahead of the frontier, grouped per timestamp, cut to `max_bytes` of key bytes
    /// (default 1 MiB, the policy's): spans furthest ahead first, then in key order, each kept
    /// if it fits in what is left.
    #[pyo3(signature = (max_bytes = core::PolicyConfig::default().max_bytes))]
    fn checkpoint(&self, max_bytes: usize) -> Checkpoint {
        Checkpoint(self.0.checkpoint(max_bytes))
    }

    /// Forwards every span of `checkpoint` to its group's timestamp (untracked spans are
    /// ignored); returns whether the frontier advanced. Raises `LimitError`, changing nothing,
    /// if the frontier could pass its entry limit.
    fn restore(&mut self, checkpoint: &Checkpoint) -> PyResult<bool> {
        self.0.restore(&checkpoint.0).map_err(to_py)
    }
}

/// When a `CheckpointPolicy` persists: every argument is keyword-only, times in nanoseconds.
///
/// `interval_ns` (default 10 minutes) is the longest a changed frontier waits to be persisted;
/// past `lag_threshold_ns` (default 10 minutes) of lag the policy checkpoints the spans ahead of
/// the frontier, in at most `max_bytes` (default 1 MiB) of keys.
#[pyclass(module = "weir._weir", frozen, eq, get_all)]
#[derive(Clone, PartialEq, Eq)]
pub struct PolicyConfig {
    interval_ns: u64,
    lag_threshold_ns: u64,
    max_bytes: usize,
}

#[pymethods]
impl PolicyConfig {
    #[new]
    #[pyo3(signature = (
        *,
        interval_ns = nanos(core::PolicyConfig::default().interval),
        lag_threshold_ns = nanos(core::PolicyConfig::default().lag_threshold),
        max_bytes = core::PolicyConfig::default().max_bytes,
    ))]
    fn new(interval_ns: u64, lag_threshold_ns: u64, max_bytes: usize) -> PolicyConfig {
        PolicyConfig {
            interval_ns,
            lag_threshold_ns,
            max_bytes,
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "PolicyConfig(interval_ns={}, lag_threshold_ns={}, max_bytes={})",
            self.interval_ns, self.lag_threshold_ns, self.max_bytes
        )
    }
}

impl PolicyConfig {
    fn to_core(&self) -> core::PolicyConfig {
        core::PolicyConfig::default()
            .with_interval(Duration::from_nanos(self.interval_ns))
            .with_lag_threshold(Duration::from_nanos(self.lag_threshold_ns))
            .with_max_bytes(self.max_bytes)
    }
}

/// The spans ahead of the frontier, grouped by timestamp, so that a restart keeps their progress.
#[pyclass(module = "weir._weir", frozen, eq)]
#[derive(Clone, PartialEq, Eq)]
pub struct Checkpoint(core::Checkpoint);

#[pymethods]
impl Checkpoint {
    /// `(timestamp, spans)` pairs, one per timestamp.
    #[getter]
    fn groups(&self) -> Vec<(Timestamp, Vec<Span>)> {
        self.0
            .groups
            .iter()
            .map(|group| {
                let spans = group.spans.iter().cloned().map(Span).collect();
                (Timestamp(group.timestamp), spans)
            })
            .collect()
    }

    /// Spans left out to stay within `max_bytes`.
    #[getter]
    fn omitted_spans(&self) -> usize {
        self.0.omitted_spans
    }

    /// The checkpoint as bytes to persist: UTF-8 JSON of the core's serde form, so any weir
    /// binding (or Rust with serde_json) reads it back.
    fn to_bytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let json = serde_json::to_vec(&self.0).map_err(|e| WeirError::new_err(e.to_string()))?;
        Ok(PyBytes::new(py, &json))
    }

    /// A checkpoint read back from `to_bytes()`. Raises `UsageError` for bytes that are not one
    /// (malformed JSON, a missing field, an empty or inverted span).
    #[staticmethod]
    fn from_bytes(data: &[u8]) -> PyResult<Checkpoint> {
        serde_json::from_slice(data)
            .map(Checkpoint)
            .map_err(|e| UsageError::new_err(format!("not a checkpoint: {e}")))
    }

    fn __repr__(&self) -> String {
        format!(
            "Checkpoint(spans={}, omitted_spans={})",
            self.0.span_count(),
            self.0.omitted_spans
        )
    }
}

/// Output: persist this timestamp as the new high-water mark.
#[pyclass(module = "weir._weir", frozen, eq, get_all)]
#[derive(Clone, PartialEq, Eq)]
pub struct PersistHighWater {
    ts: Timestamp,
}

#[pymethods]
impl PersistHighWater {
    #[new]
    fn new(ts: Timestamp) -> PersistHighWater {
        PersistHighWater { ts }
    }

    #[classattr]
    fn __match_args__() -> (&'static str,) {
        ("ts",)
    }

    fn __repr__(&self) -> String {
        format!("PersistHighWater({})", self.ts.__repr__())
    }
}

/// Output: persist this checkpoint, replacing the last one (an empty one clears it).
#[pyclass(module = "weir._weir", frozen, eq, get_all)]
#[derive(Clone, PartialEq, Eq)]
pub struct PersistCheckpoint {
    checkpoint: Checkpoint,
}

#[pymethods]
impl PersistCheckpoint {
    #[new]
    fn new(checkpoint: Checkpoint) -> PersistCheckpoint {
        PersistCheckpoint { checkpoint }
    }

    #[classattr]
    fn __match_args__() -> (&'static str,) {
        ("checkpoint",)
    }

    fn __repr__(&self) -> String {
        format!("PersistCheckpoint({})", self.checkpoint.__repr__())
    }
}

/// A `CheckpointPolicy`'s counters, a snapshot.
#[pyclass(module = "weir._weir", frozen, eq, get_all)]
#[derive(Clone, PartialEq, Eq)]
pub struct PolicyMetrics {
    resolved_spans: u64,
    frontier_advances: u64,
    high_water_persists: u64,
    checkpoints: u64,
    cleared_checkpoints: u64,
    last_checkpoint_spans: u64,
    last_checkpoint_bytes: u64,
    last_checkpoint_omitted: u64,
    entries: u64,
    lag_nanos: u64,
}

/// Decides when a frontier's progress is persisted: a high-water mark when the frontier moves,
/// and checkpoints of the spans ahead while it lags. Sans-IO: feed it resolved spans and time,
/// drain `poll_output()` after every call, and call `handle_timeout(now)` at `poll_timeout()`.
#[pyclass(module = "weir._weir")]
pub struct CheckpointPolicy(core::CheckpointPolicy);

#[pymethods]
impl CheckpointPolicy {
    /// A policy over a copy of `frontier`, starting at `now` (nanoseconds).
    #[new]
    #[pyo3(signature = (now, frontier, *, config = None))]
    fn new(now: u64, frontier: &Frontier, config: Option<PolicyConfig>) -> CheckpointPolicy {
        let config = config.map_or_else(core::PolicyConfig::default, |c| c.to_core());
        CheckpointPolicy(core::CheckpointPolicy::new(
            Instant::from_nanos(now),
            config,
            frontier.0.clone(),
        ))
    }

    /// `span` is resolved at `ts`; returns whether the frontier advanced.
    fn handle_resolved(&mut self, now: u64, span: &Span, ts: Timestamp) -> PyResult<bool> {
        self.0
            .handle_resolved(Instant::from_nanos(now), &span.0, ts.0)
            .map_err(to_py)
    }

    /// The deadline from `poll_timeout()` has passed.
    fn handle_timeout(&mut self, now: u64) {
        self.0.handle_timeout(Instant::from_nanos(now));
    }

    /// The next output (`PersistHighWater` or `PersistCheckpoint`), or `None`.
    fn poll_output(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let Some(output) = self.0.poll_output() else {
            return Ok(None);
        };
        let object = match output {
            core::Output::PersistHighWater(ts) => {
                Py::new(py, PersistHighWater { ts: Timestamp(ts) })?.into_any()
            }
            core::Output::PersistCheckpoint(checkpoint) => Py::new(
                py,
                PersistCheckpoint {
                    checkpoint: Checkpoint(checkpoint),
                },
            )?
            .into_any(),
            other => {
                return Err(WeirError::new_err(format!(
                    "an output weir.frontier has no class for: {other:?}"
                )))
            }
        };
        Ok(Some(object))
    }

    /// When to call `handle_timeout`, in nanoseconds, or `None` for no timer.
    fn poll_timeout(&self) -> Option<u64> {
        self.0.poll_timeout().map(Instant::as_nanos)
    }

    /// The frontier's lowest timestamp, or `None` when nothing is tracked.
    fn frontier(&self) -> Option<Timestamp> {
        self.0.frontier().frontier().map(Timestamp)
    }

    /// The counters, a snapshot.
    #[getter]
    fn metrics(&self) -> PolicyMetrics {
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

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Span>()?;
    m.add_class::<Timestamp>()?;
    m.add_class::<Frontier>()?;
    m.add_class::<PolicyConfig>()?;
    m.add_class::<Checkpoint>()?;
    m.add_class::<PersistHighWater>()?;
    m.add_class::<PersistCheckpoint>()?;
    m.add_class::<PolicyMetrics>()?;
    m.add_class::<CheckpointPolicy>()?;
    Ok(())
}
