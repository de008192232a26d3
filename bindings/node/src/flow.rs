//! `flow`: flow-control budgets for replication traffic.
//!
//! ```js
//! const { flow } = require('weir')
//! const fc = new flow.FlowControl()
//! const stream = { tenant: 1n, store: 1n }
//! fc.connectStream(0n, stream, { term: 1n, index: 0n })
//! fc.admit(0n, 1n, 'regular', 1024n, { replicas: [{ stream }], quorum: 1 })
//! console.log(fc.pollOutput().type)                        // 'admitted'
//! ```

use std::time::Duration;

use napi::bindgen_prelude::BigInt;
use napi_derive::napi;
use weir::flow as core;
use weir::time::Instant;

use crate::errors::{error, refused, to_u64, to_usize, usage, Code, Result};

fn instant(now: &BigInt) -> Result<Instant> {
    to_u64("now", now).map(Instant::from_nanos)
}

/// One destination of replication traffic (a tenant's traffic to one store).
#[napi(object, namespace = "flow")]
pub struct StreamId {
    pub tenant: BigInt,
    pub store: BigInt,
}

impl StreamId {
    fn to_core(&self) -> Result<core::StreamId> {
        Ok(core::StreamId::new(
            to_u64("tenant", &self.tenant)?,
            to_u64("store", &self.store)?,
        ))
    }

    fn from_core(s: core::StreamId) -> StreamId {
        StreamId {
            tenant: BigInt::from(s.tenant),
            store: BigInt::from(s.store),
        }
    }
}

/// A position in a replicated log: term, then index.
#[napi(object, namespace = "flow")]
pub struct LogPosition {
    pub term: BigInt,
    pub index: BigInt,
}

impl LogPosition {
    fn to_core(&self) -> Result<core::LogPosition> {
        Ok(core::LogPosition::new(
            to_u64("term", &self.term)?,
            to_u64("index", &self.index)?,
        ))
    }
}

/// One replica a request goes to; `mustHave` for a leader or leaseholder.
#[napi(object, namespace = "flow")]
pub struct Target {
    pub stream: StreamId,
    pub must_have: Option<bool>,
}

/// The replicas a request goes to and how many of them form a quorum.
#[napi(object, namespace = "flow")]
pub struct Targets {
    pub replicas: Vec<Target>,
    pub quorum: u32,
}

impl Targets {
    fn to_core(&self) -> Result<core::Targets> {
        let mut targets = core::Targets::new(self.quorum as usize);
        for target in &self.replicas {
            let stream = target.stream.to_core()?;
            targets = if target.must_have.unwrap_or(false) {
                targets.with_must_have(stream)
            } else {
                targets.with_replica(stream)
            };
        }
        Ok(targets)
    }
}

fn class(class: &str) -> Result<core::Class> {
    match class {
        "control" => Ok(core::Class::Control),
        "regular" => Ok(core::Class::Regular),
        "elastic" => Ok(core::Class::Elastic),
        _ => Err(usage(format!(
            "class must be 'control', 'regular' or 'elastic', not {class:?}"
        ))),
    }
}

fn class_name(class: core::Class) -> String {
    match class {
        core::Class::Control => "control",
        core::Class::Regular => "regular",
        core::Class::Elastic => "elastic",
    }
    .to_owned()
}

/// What an admitted request was granted.
#[napi(object, namespace = "flow", object_from_js = false)]
pub struct Grant {
    #[napi(ts_type = "'control' | 'regular' | 'elastic'")]
    pub class: String,
    /// The bytes deducted from each charged stream.
    pub bytes: u64,
    /// Streams the bytes were deducted from.
    pub charged: Vec<StreamId>,
    /// Replicating targets out of tokens: send them the entry later, through `deduct`.
    pub deferred: Vec<StreamId>,
    /// How long the request waited, in nanoseconds.
    pub waited_ns: u64,
}

/// An output of `FlowControl`, told apart by `type`.
#[napi(
    namespace = "flow",
    discriminant = "type",
    discriminant_case = "camelCase",
    object_from_js = false
)]
pub enum Output {
    /// The request may go: its tokens are deducted.
    Admitted { id: u64, grant: Grant },
    /// The request waits for tokens until `deadline` (nanoseconds).
    Queued { id: u64, deadline: u64 },
    /// The request was turned away: `reason` is `'queueFull'`, `'queueBytesFull'`,
    /// `'tooManyInFlight'` or `'timedOut'`.
    Rejected {
        id: u64,
        #[napi(ts_type = "'queueFull' | 'queueBytesFull' | 'tooManyInFlight' | 'timedOut'")]
        reason: String,
    },
}

/// The counters of one class of work.
#[napi(object, namespace = "flow", object_from_js = false)]
pub struct ClassMetrics {
    /// Gauge: tokens available over all connected streams (negative in debt).
    pub tokens_available: i64,
    pub tokens_deducted: u64,
    pub tokens_returned: u64,
    pub tokens_unaccounted: u64,
    pub requests_waiting: u64,
    pub requests_admitted: u64,
    pub requests_errored: u64,
    pub requests_bypassed: u64,
    /// How long admitted requests waited, nanoseconds.
    #[napi(ts_type = "mux.Histogram")]
    pub wait_duration_ns: crate::mux::Histogram,
    pub blocked_stream_count: u64,
    pub stream_count: u64,
}

impl ClassMetrics {
    fn from_core(m: core::ClassMetrics) -> ClassMetrics {
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

/// A `FlowControl`'s counters, a snapshot.
#[napi(object, namespace = "flow", object_from_js = false)]
pub struct Metrics {
    pub regular: ClassMetrics,
    pub elastic: ClassMetrics,
    pub control_requests: u64,
    pub waiting_bytes: u64,
}

/// A `FlowControl`'s limits; each field left out keeps its default.
#[napi(object, namespace = "flow")]
pub struct Config {
    /// Regular tokens per stream, bytes (default 16 MiB).
    pub regular_tokens: Option<BigInt>,
    /// Elastic tokens per stream, bytes (default 8 MiB).
    pub elastic_tokens: Option<BigInt>,
    /// Requests waiting at once (default 1024).
    pub max_waiting: Option<f64>,
    /// Bytes of the requests waiting at once (default 64 MiB).
    pub max_waiting_bytes: Option<BigInt>,
    /// Requests admitted and not yet released (default 65536).
    pub max_in_flight: Option<f64>,
    /// The longest a request waits, nanoseconds (default 10 s).
    pub max_wait_ns: Option<BigInt>,
    /// Streams known at once (default 10000).
    pub max_streams: Option<f64>,
    /// Targets of one request (default 16).
    pub max_targets: Option<f64>,
}

impl Config {
    fn to_core(&self) -> Result<core::Config> {
        let mut c = core::Config::default();
        if let Some(n) = &self.regular_tokens {
            c.regular_tokens = to_u64("regularTokens", n)?;
        }
        if let Some(n) = &self.elastic_tokens {
            c.elastic_tokens = to_u64("elasticTokens", n)?;
        }
        if let Some(n) = self.max_waiting {
            c.max_waiting = to_usize("maxWaiting", n)?;
        }
        if let Some(n) = &self.max_waiting_bytes {
            c.max_waiting_bytes = to_u64("maxWaitingBytes", n)?;
        }
        if let Some(n) = self.max_in_flight {
            c.max_in_flight = to_usize("maxInFlight", n)?;
        }
        if let Some(n) = &self.max_wait_ns {
            c.max_wait = Duration::from_nanos(to_u64("maxWaitNs", n)?);
        }
        if let Some(n) = self.max_streams {
            c.max_streams = to_usize("maxStreams", n)?;
        }
        if let Some(n) = self.max_targets {
            c.max_targets = to_usize("maxTargets", n)?;
        }
        Ok(c)
    }
}

/// Admission control for replication writes: token pools per stream, requests that wait for a
/// quorum to have tokens, and returns as receivers report entries admitted. Sans-IO: drain
/// `pollOutput()` after every call, and call `handleTimeout(now)` at `pollTimeout()`.
#[napi(namespace = "flow")]
pub struct FlowControl(core::FlowControl);

#[napi(namespace = "flow")]
impl FlowControl {
    /// A controller with `config` (defaults for what it leaves out).
    #[napi(constructor)]
    pub fn new(config: Option<Config>) -> Result<FlowControl> {
        let config = match config {
            Some(config) => config.to_core()?,
            None => core::Config::default(),
        };
        Ok(FlowControl(core::FlowControl::new(config)))
    }

    /// Connects `stream`, whose receiver has admitted everything up to `position`.
    #[napi]
    pub fn connect_stream(
        &mut self,
        now: BigInt,
        stream: StreamId,
        position: LogPosition,
    ) -> Result<()> {
        self.0
            .connect_stream(instant(&now)?, stream.to_core()?, position.to_core()?)
            .map_err(refused)
    }

    /// Disconnects `stream`: it returns everything it tracked and paces nothing.
    #[napi]
    pub fn disconnect_stream(&mut self, now: BigInt, stream: StreamId) -> Result<()> {
        self.0
            .disconnect_stream(instant(&now)?, stream.to_core()?)
            .map_err(refused)
    }

    /// Forgets `stream`.
    #[napi]
    pub fn remove_stream(&mut self, now: BigInt, stream: StreamId) -> Result<()> {
        self.0
            .remove_stream(instant(&now)?, stream.to_core()?)
            .map_err(refused)
    }

    /// Asks to send `bytes` of `workClass` work to `targets`; an `admitted`, `queued` or
    /// `rejected` output answers.
    #[napi(
        ts_args_type = "now: bigint, id: bigint, workClass: 'control' | 'regular' | 'elastic', bytes: bigint, targets: Targets"
    )]
    pub fn admit(
        &mut self,
        now: BigInt,
        id: BigInt,
        work_class: String,
        bytes: BigInt,
        targets: Targets,
    ) -> Result<()> {
        self.0
            .admit(
                instant(&now)?,
                core::RequestId(to_u64("id", &id)?),
                class(&work_class)?,
                to_u64("bytes", &bytes)?,
                &targets.to_core()?,
            )
            .map_err(refused)
    }

    /// Withdraws a waiting or admitted request; its tokens return.
    #[napi]
    pub fn cancel(&mut self, now: BigInt, id: BigInt) -> Result<()> {
        self.0
            .cancel(instant(&now)?, core::RequestId(to_u64("id", &id)?))
            .map_err(refused)
    }

    /// The admitted request landed at `position`: its tokens are tracked there until the
    /// receivers report it admitted.
    #[napi]
    pub fn bind(&mut self, now: BigInt, id: BigInt, position: LogPosition) -> Result<()> {
        self.0
            .bind(
                instant(&now)?,
                core::RequestId(to_u64("id", &id)?),
                position.to_core()?,
            )
            .map_err(refused)
    }

    /// The admitted request will not be written: its tokens return.
    #[napi]
    pub fn release(&mut self, now: BigInt, id: BigInt) -> Result<()> {
        self.0
            .release(instant(&now)?, core::RequestId(to_u64("id", &id)?))
            .map_err(refused)
    }

    /// Deducts `bytes` from a deferred `stream` as its entry at `position` is sent; returns
    /// `'deducted'`, `'noTokens'` or `'alreadyAdmitted'`.
    #[napi(
        ts_args_type = "now: bigint, stream: StreamId, workClass: 'control' | 'regular' | 'elastic', position: LogPosition, bytes: bigint",
        ts_return_type = "'deducted' | 'noTokens' | 'alreadyAdmitted'"
    )]
    pub fn deduct(
        &mut self,
        now: BigInt,
        stream: StreamId,
        work_class: String,
        position: LogPosition,
        bytes: BigInt,
    ) -> Result<String> {
        let deduction = self
            .0
            .deduct(
                instant(&now)?,
                stream.to_core()?,
                class(&work_class)?,
                position.to_core()?,
                to_u64("bytes", &bytes)?,
            )
            .map_err(refused)?;
        Ok(match deduction {
            core::Deduction::Deducted => "deducted",
            core::Deduction::NoTokens => "noTokens",
            core::Deduction::AlreadyAdmitted => "alreadyAdmitted",
            other => {
                return Err(error(
                    Code::Unknown,
                    format!("a deduction weir's flow has no JS form for: {other:?}"),
                ))
            }
        }
        .to_owned())
    }

    /// `stream`'s receiver admitted everything of `workClass` up to `upTo`; returns the bytes
    /// that came back.
    #[napi(
        ts_args_type = "now: bigint, stream: StreamId, workClass: 'control' | 'regular' | 'elastic', upTo: LogPosition"
    )]
    pub fn handle_admitted(
        &mut self,
        now: BigInt,
        stream: StreamId,
        work_class: String,
        up_to: LogPosition,
    ) -> Result<u64> {
        self.0
            .handle_admitted(
                instant(&now)?,
                stream.to_core()?,
                class(&work_class)?,
                up_to.to_core()?,
            )
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
    pub fn poll_output(&mut self) -> Result<Option<Output>> {
        let Some(output) = self.0.poll_output() else {
            return Ok(None);
        };
        Ok(Some(match output {
            core::Output::Admitted { id, grant } => Output::Admitted {
                id: id.0,
                grant: Grant {
                    class: class_name(grant.class),
                    bytes: grant.bytes,
                    charged: grant.charged.into_iter().map(StreamId::from_core).collect(),
                    deferred: grant
                        .deferred
                        .into_iter()
                        .map(StreamId::from_core)
                        .collect(),
                    waited_ns: u64::try_from(grant.waited.as_nanos()).unwrap_or(u64::MAX),
                },
            },
            core::Output::Queued { id, deadline } => Output::Queued {
                id: id.0,
                deadline: deadline.as_nanos(),
            },
            core::Output::Rejected { id, reason } => Output::Rejected {
                id: id.0,
                reason: match reason {
                    core::Rejection::QueueFull => "queueFull",
                    core::Rejection::QueueBytesFull => "queueBytesFull",
                    core::Rejection::TooManyInFlight => "tooManyInFlight",
                    core::Rejection::TimedOut => "timedOut",
                    other => {
                        return Err(error(
                            Code::Unknown,
                            format!("a rejection weir's flow has no JS form for: {other:?}"),
                        ))
                    }
                }
                .to_owned(),
            },
            other => {
                return Err(error(
                    Code::Unknown,
                    format!("an output weir's flow has no JS form for: {other:?}"),
                ))
            }
        }))
    }

    /// When to call `handleTimeout`, in nanoseconds, or `null` for no timer.
    #[napi]
    pub fn poll_timeout(&self) -> Option<u64> {
        self.0.poll_timeout().map(Instant::as_nanos)
    }

    /// Tokens of `workClass` available on `stream` (negative in debt), or `null` for a stream it
    /// does not know.
    #[napi(ts_args_type = "stream: StreamId, workClass: 'control' | 'regular' | 'elastic'")]
    pub fn available(&self, stream: StreamId, work_class: String) -> Result<Option<i64>> {
        Ok(self.0.available(stream.to_core()?, class(&work_class)?))
    }

    /// Tokens of `workClass` tracked on `stream` (deducted, not yet returned), or `null` for a
    /// stream it does not know.
    #[napi(ts_args_type = "stream: StreamId, workClass: 'control' | 'regular' | 'elastic'")]
    pub fn tracked(&self, stream: StreamId, work_class: String) -> Result<Option<u64>> {
        Ok(self.0.tracked(stream.to_core()?, class(&work_class)?))
    }

    /// Whether `stream` is connected, or `null` for a stream it does not know.
    #[napi]
    pub fn is_connected(&self, stream: StreamId) -> Result<Option<bool>> {
        Ok(self.0.is_connected(stream.to_core()?))
    }

    /// Requests waiting for tokens.
    #[napi]
    pub fn waiting(&self) -> u32 {
        u32::try_from(self.0.waiting()).unwrap_or(u32::MAX)
    }

    /// Bytes of the requests waiting for tokens.
    #[napi]
    pub fn waiting_bytes(&self) -> u64 {
        self.0.waiting_bytes()
    }

    /// Admitted requests not yet bound to a log position.
    #[napi]
    pub fn unbound(&self) -> u32 {
        u32::try_from(self.0.unbound()).unwrap_or(u32::MAX)
    }

    /// The counters, a snapshot.
    #[napi]
    pub fn metrics(&self) -> Metrics {
        let m = self.0.metrics();
        Metrics {
            regular: ClassMetrics::from_core(m.regular),
            elastic: ClassMetrics::from_core(m.elastic),
            control_requests: m.control_requests,
            waiting_bytes: m.waiting_bytes,
        }
    }

    /// Checks that available plus tracked tokens equal the pool size for every stream: `null`
    /// when they do, else what broke (a bug in the controller, not in its caller).
    #[napi]
    pub fn check_invariants(&self) -> Option<String> {
        self.0.check_invariants().err().map(|e| e.to_string())
    }
}
