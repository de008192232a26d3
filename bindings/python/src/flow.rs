//! `weir.flow`: flow-control budgets for replication traffic.

use std::time::Duration;

use pyo3::prelude::*;
use weir::flow as core;
use weir::time::Instant;

use crate::convert::{bool_repr, nanos, str_repr};
use crate::errors::{to_py, UsageError, WeirError};
use crate::mux::Histogram;

/// The core's defaults, which the keyword arguments of `FlowConfig` start from.
fn defaults() -> core::Config {
    core::Config::default()
}

/// A work class's name: `"control"`, `"regular"` or `"elastic"`.
fn class_name(class: core::Class) -> &'static str {
    match class {
        core::Class::Control => "control",
        core::Class::Regular => "regular",
        core::Class::Elastic => "elastic",
    }
}

fn parse_class(class: &str) -> PyResult<core::Class> {
    match class {
        "control" => Ok(core::Class::Control),
        "regular" => Ok(core::Class::Regular),
        "elastic" => Ok(core::Class::Elastic),
        _ => Err(UsageError::new_err(format!(
            "class must be \"control\", \"regular\" or \"elastic\", not {class:?}"
        ))),
    }
}

/// The limits of a `FlowControl`: every argument is keyword-only, sizes in bytes and
/// `max_wait_ns` in nanoseconds. The defaults are the core's (16 MiB of regular and 8 MiB of
/// elastic tokens per stream, CockroachDB's).
#[pyclass(module = "weir._weir", frozen, eq, get_all)]
#[derive(Clone, PartialEq, Eq)]
pub struct FlowConfig {
    regular_tokens: u64,
    elastic_tokens: u64,
    max_waiting: usize,
    max_waiting_bytes: u64,
    max_in_flight: usize,
    max_wait_ns: u64,
    max_streams: usize,
    max_targets: usize,
}

#[pymethods]
impl FlowConfig {
    #[new]
    #[pyo3(signature = (
        *,
        regular_tokens = defaults().regular_tokens,
        elastic_tokens = defaults().elastic_tokens,
        max_waiting = defaults().max_waiting,
        max_waiting_bytes = defaults().max_waiting_bytes,
        max_in_flight = defaults().max_in_flight,
        max_wait_ns = nanos(defaults().max_wait),
        max_streams = defaults().max_streams,
        max_targets = defaults().max_targets,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        regular_tokens: u64,
        elastic_tokens: u64,
        max_waiting: usize,
        max_waiting_bytes: u64,
        max_in_flight: usize,
        max_wait_ns: u64,
        max_streams: usize,
        max_targets: usize,
    ) -> FlowConfig {
        FlowConfig {
            regular_tokens,
            elastic_tokens,
            max_waiting,
            max_waiting_bytes,
            max_in_flight,
            max_wait_ns,
            max_streams,
            max_targets,
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "Config(regular_tokens={}, elastic_tokens={}, max_waiting={}, max_waiting_bytes={}, \
             max_in_flight={}, max_wait_ns={}, max_streams={}, max_targets={})",
            self.regular_tokens,
            self.elastic_tokens,
            self.max_waiting,
            self.max_waiting_bytes,
            self.max_in_flight,
            self.max_wait_ns,
            self.max_streams,
            self.max_targets
        )
    }
}

impl FlowConfig {
    fn from_core(c: &core::Config) -> FlowConfig {
        FlowConfig {
            regular_tokens: c.regular_tokens,
            elastic_tokens: c.elastic_tokens,
            max_waiting: c.max_waiting,
            max_waiting_bytes: c.max_waiting_bytes,
            max_in_flight: c.max_in_flight,
            max_wait_ns: nanos(c.max_wait),
            max_streams: c.max_streams,
            max_targets: c.max_targets,
        }
    }

    fn to_core(&self) -> core::Config {
        let mut c = core::Config::default();
        c.regular_tokens = self.regular_tokens;
        c.elastic_tokens = self.elastic_tokens;
        c.max_waiting = self.max_waiting;
        c.max_waiting_bytes = self.max_waiting_bytes;
        c.max_in_flight = self.max_in_flight;
        c.max_wait = Duration::from_nanos(self.max_wait_ns);
        c.max_streams = self.max_streams;
        c.max_targets = self.max_targets;
        c
    }
}

/// One destination of replication traffic: a tenant's traffic to one store. Ordered and
/// hashable.
#[pyclass(module = "weir._weir", frozen, eq, ord, hash)]
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId(core::StreamId);

#[pymethods]
impl StreamId {
    #[new]
    fn new(tenant: u64, store: u64) -> StreamId {
        StreamId(core::StreamId::new(tenant, store))
    }

    /// The tenant whose traffic the stream carries.
    #[getter]
    fn tenant(&self) -> u64 {
        self.0.tenant
    }

    /// The store the traffic goes to.
    #[getter]
    fn store(&self) -> u64 {
        self.0.store
    }

    #[classattr]
    fn __match_args__() -> (&'static str, &'static str) {
        ("tenant", "store")
    }

    fn __repr__(&self) -> String {
        format!("StreamId({}, {})", self.0.tenant, self.0.store)
    }
}

/// A position in the replicated log, ordered by term, then index. Hashable.
#[pyclass(module = "weir._weir", frozen, eq, ord, hash)]
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LogPosition(core::LogPosition);

#[pymethods]
impl LogPosition {
    #[new]
    fn new(term: u64, index: u64) -> LogPosition {
        LogPosition(core::LogPosition::new(term, index))
    }

    /// The leader term that wrote the entry.
    #[getter]
    fn term(&self) -> u64 {
        self.0.term
    }

    /// The entry's index in the log.
    #[getter]
    fn index(&self) -> u64 {
        self.0.index
    }

    #[classattr]
    fn __match_args__() -> (&'static str, &'static str) {
        ("term", "index")
    }

    fn __repr__(&self) -> String {
        format!("LogPosition({}, {})", self.0.term, self.0.index)
    }
}

/// One replica a write goes to; `must_have` replicas (the leader, the leaseholder) must have
/// tokens for regular work whatever the rest of the quorum looks like.
#[pyclass(module = "weir._weir", frozen, eq, hash, get_all)]
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Target {
    stream: StreamId,
    must_have: bool,
}

#[pymethods]
impl Target {
    #[new]
    #[pyo3(signature = (stream, must_have = false))]
    fn new(stream: StreamId, must_have: bool) -> Target {
        Target { stream, must_have }
    }

    #[classattr]
    fn __match_args__() -> (&'static str, &'static str) {
        ("stream", "must_have")
    }

    fn __repr__(&self) -> String {
        format!(
            "Target({}, must_have={})",
            self.stream.__repr__(),
            bool_repr(self.must_have)
        )
    }
}

/// The replicas a write goes to and how many form a quorum. `Targets(quorum)` has no replicas
/// yet; `Targets.majority(streams)` is a simple majority of `streams`. `with_replica` and
/// `with_must_have` return a new value.
#[pyclass(module = "weir._weir", frozen, eq)]
#[derive(Clone, PartialEq, Eq)]
pub struct Targets(core::Targets);

#[pymethods]
impl Targets {
    #[new]
    fn new(quorum: usize) -> Targets {
        Targets(core::Targets::new(quorum))
    }

    /// `streams` as ordinary replicas, with a simple-majority quorum.
    #[staticmethod]
    fn majority(streams: Vec<StreamId>) -> Targets {
        let streams: Vec<core::StreamId> = streams.into_iter().map(|s| s.0).collect();
        Targets(core::Targets::majority(&streams))
    }

    /// These targets plus an ordinary replica.
    fn with_replica(&self, stream: StreamId) -> Targets {
        Targets(self.0.clone().with_replica(stream.0))
    }

    /// These targets with `stream` a must-have replica (added if it is not there yet).
    fn with_must_have(&self, stream: StreamId) -> Targets {
        Targets(self.0.clone().with_must_have(stream.0))
    }

    /// The replicas, in the order they were added.
    #[getter]
    fn replicas(&self) -> Vec<Target> {
        self.0
            .replicas()
            .iter()
            .map(|t| Target {
                stream: StreamId(t.stream),
                must_have: t.must_have,
            })
            .collect()
    }

    /// How many replicas form a quorum.
    #[getter]
    fn quorum(&self) -> usize {
        self.0.quorum()
    }

    /// Whether `stream` is one of the replicas.
    fn contains(&self, stream: StreamId) -> bool {
        self.0.contains(stream.0)
    }

    fn __repr__(&self) -> String {
        let replicas: Vec<String> = self.replicas().iter().map(Target::__repr__).collect();
        format!(
            "Targets(quorum={}, replicas=[{}])",
            self.0.quorum(),
            replicas.join(", ")
        )
    }
}

/// What an admitted request may do: its `class_` and `bytes`, the streams its bytes were
/// deducted from (`charged`: send to these now), the replicating streams that were out of
/// tokens (`deferred`: send to these later, through `FlowControl.deduct`), and how long it
/// waited.
#[pyclass(module = "weir._weir", frozen, eq, get_all)]
#[derive(Clone, PartialEq, Eq)]
pub struct Grant {
    class_: String,
    bytes: u64,
    charged: Vec<StreamId>,
    deferred: Vec<StreamId>,
    waited_ns: u64,
}

#[pymethods]
impl Grant {
    #[new]
    fn new(
        class_: String,
        bytes: u64,
        charged: Vec<StreamId>,
        deferred: Vec<StreamId>,
        waited_ns: u64,
    ) -> Grant {
        Grant {
            class_,
            bytes,
            charged,
            deferred,
            waited_ns,
        }
    }

    #[classattr]
    fn __match_args__() -> (
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
    ) {
        ("class_", "bytes", "charged", "deferred", "waited_ns")
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let list = |streams: &[StreamId]| {
            let items: Vec<String> = streams.iter().map(StreamId::__repr__).collect();
            format!("[{}]", items.join(", "))
        };
        Ok(format!(
            "Grant({}, {}, {}, {}, {})",
            str_repr(py, &self.class_)?,
            self.bytes,
            list(&self.charged),
            list(&self.deferred),
            self.waited_ns
        ))
    }
}

impl Grant {
    fn from_core(g: core::Grant) -> Grant {
        Grant {
            class_: class_name(g.class).to_owned(),
            bytes: g.bytes,
            charged: g.charged.into_iter().map(StreamId).collect(),
            deferred: g.deferred.into_iter().map(StreamId).collect(),
            waited_ns: nanos(g.waited),
        }
    }
}

/// Output: request `id` got its tokens (already deducted).
#[pyclass(module = "weir._weir", frozen, eq, get_all)]
#[derive(Clone, PartialEq, Eq)]
pub struct Admitted {
    id: u64,
    grant: Grant,
}

#[pymethods]
impl Admitted {
    #[new]
    fn new(id: u64, grant: Grant) -> Admitted {
        Admitted { id, grant }
    }

    #[classattr]
    fn __match_args__() -> (&'static str, &'static str) {
        ("id", "grant")
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "Admitted({}, {})",
            self.id,
            self.grant.__repr__(py)?
        ))
    }
}

/// Output: request `id` waits for tokens; its outcome comes later, at the latest at `deadline`
/// (nanoseconds).
#[pyclass(module = "weir._weir", frozen, eq, hash, get_all)]
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Queued {
    id: u64,
    deadline: u64,
}

#[pymethods]
impl Queued {
    #[new]
    fn new(id: u64, deadline: u64) -> Queued {
        Queued { id, deadline }
    }

    #[classattr]
    fn __match_args__() -> (&'static str, &'static str) {
        ("id", "deadline")
    }

    fn __repr__(&self) -> String {
        format!("Queued({}, {})", self.id, self.deadline)
    }
}

/// Output: request `id` was turned away and holds no tokens. `reason` is `"queue_full"`,
/// `"queue_bytes_full"`, `"too_many_in_flight"` or `"timed_out"`.
#[pyclass(module = "weir._weir", frozen, eq, hash, get_all)]
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Rejected {
    id: u64,
    reason: String,
}

#[pymethods]
impl Rejected {
    #[new]
    fn new(id: u64, reason: String) -> Rejected {
        Rejected { id, reason }
    }

    #[classattr]
    fn __match_args__() -> (&'static str, &'static str) {
        ("id", "reason")
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "Rejected({}, {})",
            self.id,
            str_repr(py, &self.reason)?
        ))
    }
}

/// The figures of one work class, under the names of CockroachDB's
/// `kvadmission.flow_controller.{regular,elastic}_*` metrics; a snapshot.
#[pyclass(module = "weir._weir", frozen, eq, get_all)]
#[derive(Clone, PartialEq, Eq)]
pub struct ClassMetrics {
    tokens_available: i64,
    tokens_deducted: u64,
    tokens_returned: u64,
    tokens_unaccounted: u64,
    requests_waiting: u64,
    requests_admitted: u64,
    requests_errored: u64,
    requests_bypassed: u64,
    wait_duration_ns: Histogram,
    blocked_stream_count: u64,
    stream_count: u64,
}

impl From<core::ClassMetrics> for ClassMetrics {
    fn from(m: core::ClassMetrics) -> ClassMetrics {
        ClassMetrics {
            tokens_available: m.tokens_available,
            tokens_deducted: m.tokens_deducted,
            tokens_returned: m.tokens_returned,
            tokens_unaccounted: m.tokens_unaccounted,
            requests_waiting: m.requests_waiting,
            requests_admitted: m.requests_admitted,
            requests_errored: m.requests_errored,
            requests_bypassed: m.requests_bypassed,
            wait_duration_ns: m.wait_duration_ns.into(),
            blocked_stream_count: m.blocked_stream_count,
            stream_count: m.stream_count,
        }
    }
}

/// Everything a `FlowControl` counts, a snapshot.
#[pyclass(module = "weir._weir", frozen, eq, get_all)]
#[derive(Clone, PartialEq, Eq)]
pub struct FlowMetrics {
    regular: ClassMetrics,
    elastic: ClassMetrics,
    control_requests: u64,
    waiting_bytes: u64,
}

/// A flow controller: token pools per stream, a bounded queue of waiting requests, and the
/// outcome of every request as an output. Sans-IO: time is passed in as `int` nanoseconds;
/// drain `poll_output()` after every call and call `handle_timeout(now)` at `poll_timeout()`.
#[pyclass(module = "weir._weir")]
pub struct FlowControl(core::FlowControl);

#[pymethods]
impl FlowControl {
    /// A controller with no streams; `config` defaults to `Config()`.
    #[new]
    #[pyo3(signature = (config = None))]
    fn new(config: Option<FlowConfig>) -> FlowControl {
        let config = config.map_or_else(core::Config::default, |c| c.to_core());
        FlowControl(core::FlowControl::new(config))
    }

    /// The configuration.
    #[getter]
    fn config(&self) -> FlowConfig {
        FlowConfig::from_core(&self.0.config())
    }

    /// Connects `stream` with full pools; its receiver resumes after `position`.
    fn connect_stream(
        &mut self,
        now: u64,
        stream: StreamId,
        position: LogPosition,
    ) -> PyResult<()> {
        self.0
            .connect_stream(Instant::from_nanos(now), stream.0, position.0)
            .map_err(to_py)
    }

    /// Disconnects `stream`: its tracked tokens come back and requests waiting on it are served
    /// without it.
    fn disconnect_stream(&mut self, now: u64, stream: StreamId) -> PyResult<()> {
        self.0
            .disconnect_stream(Instant::from_nanos(now), stream.0)
            .map_err(to_py)
    }

    /// Removes `stream` altogether, returning its tokens as a disconnect does.
    fn remove_stream(&mut self, now: u64, stream: StreamId) -> PyResult<()> {
        self.0
            .remove_stream(Instant::from_nanos(now), stream.0)
            .map_err(to_py)
    }

    /// Asks to send `bytes` of `class_` work (`"control"`, `"regular"` or `"elastic"`) to
    /// `targets` as request `id`. Its outcome comes out of `poll_output()` at once: `Admitted`,
    /// `Queued` or `Rejected`. Raises `LimitError` while earlier outputs are undrained.
    fn admit(
        &mut self,
        now: u64,
        id: u64,
        class_: &str,
        bytes: u64,
        targets: &Targets,
    ) -> PyResult<()> {
        let class = parse_class(class_)?;
        self.0
            .admit(
                Instant::from_nanos(now),
                core::RequestId(id),
                class,
                bytes,
                &targets.0,
            )
            .map_err(to_py)
    }

    /// Gives up on a waiting request; it produces no more output.
    fn cancel(&mut self, now: u64, id: u64) -> PyResult<()> {
        self.0
            .cancel(Instant::from_nanos(now), core::RequestId(id))
            .map_err(to_py)
    }

    /// The admitted request `id` was appended to the log at `position`: its tokens are tracked
    /// there until the receivers report it admitted.
    fn bind(&mut self, now: u64, id: u64, position: LogPosition) -> PyResult<()> {
        self.0
            .bind(Instant::from_nanos(now), core::RequestId(id), position.0)
            .map_err(to_py)
    }

    /// The admitted request `id` will never be sent: its tokens come back.
    fn release(&mut self, now: u64, id: u64) -> PyResult<()> {
        self.0
            .release(Instant::from_nanos(now), core::RequestId(id))
            .map_err(to_py)
    }

    /// Deducts `bytes` for the entry at `position` on one stream, outside admission (a
    /// deferred replica's copy). Returns `"deducted"`, `"no_tokens"` (nothing changed; try
    /// again after a return) or `"already_admitted"`.
    fn deduct(
        &mut self,
        now: u64,
        stream: StreamId,
        class_: &str,
        position: LogPosition,
        bytes: u64,
    ) -> PyResult<&'static str> {
        let class = parse_class(class_)?;
        let deduction = self
            .0
            .deduct(Instant::from_nanos(now), stream.0, class, position.0, bytes)
            .map_err(to_py)?;
        match deduction {
            core::Deduction::Deducted => Ok("deducted"),
            core::Deduction::NoTokens => Ok("no_tokens"),
            core::Deduction::AlreadyAdmitted => Ok("already_admitted"),
            other => Err(WeirError::new_err(format!(
                "a deduction weir.flow has no name for: {other:?}"
            ))),
        }
    }

    /// The receiver behind `stream` reports every `class_` entry up to `up_to` admitted
    /// (absolute: repeats and late reports change nothing). Returns the bytes that came back.
    fn handle_admitted(
        &mut self,
        now: u64,
        stream: StreamId,
        class_: &str,
        up_to: LogPosition,
    ) -> PyResult<u64> {
        let class = parse_class(class_)?;
        self.0
            .handle_admitted(Instant::from_nanos(now), stream.0, class, up_to.0)
            .map_err(to_py)
    }

    /// Rejects every waiter whose deadline has passed (`Rejected(id, "timed_out")`).
    fn handle_timeout(&mut self, now: u64) {
        self.0.handle_timeout(Instant::from_nanos(now));
    }

    /// The next output (`Admitted`, `Queued` or `Rejected`), or `None`.
    fn poll_output(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let Some(output) = self.0.poll_output() else {
            return Ok(None);
        };
        let object = match output {
            core::Output::Admitted { id, grant } => Py::new(
                py,
                Admitted {
                    id: id.0,
                    grant: Grant::from_core(grant),
                },
            )?
            .into_any(),
            core::Output::Queued { id, deadline } => Py::new(
                py,
                Queued {
                    id: id.0,
                    deadline: deadline.as_nanos(),
                },
            )?
            .into_any(),
            core::Output::Rejected { id, reason } => {
                let reason = match reason {
                    core::Rejection::QueueFull => "queue_full",
                    core::Rejection::QueueBytesFull => "queue_bytes_full",
                    core::Rejection::TooManyInFlight => "too_many_in_flight",
                    core::Rejection::TimedOut => "timed_out",
                    other => {
                        return Err(WeirError::new_err(format!(
                            "a rejection weir.flow has no name for: {other:?}"
                        )))
                    }
                };
                Py::new(
                    py,
                    Rejected {
                        id: id.0,
                        reason: reason.to_owned(),
                    },
                )?
                .into_any()
            }
            other => {
                return Err(WeirError::new_err(format!(
                    "an output weir.flow has no class for: {other:?}"
                )))
            }
        };
        Ok(Some(object))
    }

    /// When to call `handle_timeout`, in nanoseconds: the earliest deadline of a waiting
    /// request, or `None` when nothing waits.
    fn poll_timeout(&self) -> Option<u64> {
        self.0.poll_timeout().map(Instant::as_nanos)
    }

    /// Tokens available on `stream` in `class_`'s pool (negative in debt); `None` for an unknown
    /// stream or control traffic.
    fn available(&self, stream: StreamId, class_: &str) -> PyResult<Option<i64>> {
        Ok(self.0.available(stream.0, parse_class(class_)?))
    }

    /// Tokens deducted from `stream`'s `class_` pool and not yet returned; `None` for an unknown
    /// stream or control traffic.
    fn tracked(&self, stream: StreamId, class_: &str) -> PyResult<Option<u64>> {
        Ok(self.0.tracked(stream.0, parse_class(class_)?))
    }

    /// Whether `stream` is connected; `None` if unknown.
    fn is_connected(&self, stream: StreamId) -> Option<bool> {
        self.0.is_connected(stream.0)
    }

    /// Requests waiting for tokens.
    fn waiting(&self) -> usize {
        self.0.waiting()
    }

    /// Bytes waiting requests ask for.
    fn waiting_bytes(&self) -> u64 {
        self.0.waiting_bytes()
    }

    /// Admitted requests not yet bound to a position or released.
    fn unbound(&self) -> usize {
        self.0.unbound()
    }

    /// Checks the accounting (available + tracked = limit for every stream and pool, debt
    /// bounds, the queue's books). Returns `None` when it holds, else what is broken: a bug in
    /// the controller, not in its caller.
    fn check_invariants(&self) -> Option<String> {
        self.0.check_invariants().err().map(|e| e.to_string())
    }

    /// The counters and gauges, a snapshot.
    #[getter]
    fn metrics(&self) -> FlowMetrics {
        let m = self.0.metrics();
        FlowMetrics {
            regular: m.regular.into(),
            elastic: m.elastic.into(),
            control_requests: m.control_requests,
            waiting_bytes: m.waiting_bytes,
        }
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<FlowConfig>()?;
    m.add_class::<StreamId>()?;
    m.add_class::<LogPosition>()?;
    m.add_class::<Target>()?;
    m.add_class::<Targets>()?;
    m.add_class::<Grant>()?;
    m.add_class::<Admitted>()?;
    m.add_class::<Queued>()?;
    m.add_class::<Rejected>()?;
    m.add_class::<ClassMetrics>()?;
    m.add_class::<FlowMetrics>()?;
    m.add_class::<FlowControl>()?;
    Ok(())
}
