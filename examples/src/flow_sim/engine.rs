//! The simulation engine: writers, receivers and a leader's send queues around one
//! [`FlowControl`], on a virtual clock that ticks every 10 ms.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use weir::flow::{
    Class, Config, Deduction, FlowControl, LogPosition, Output, Rejection, RequestId, StreamId,
    Targets,
};
use weir::time::Instant;

/// The virtual clock's step.
pub const TICK: Duration = Duration::from_millis(10);
/// Ticks between two recorded samples (100 ms).
const SAMPLE_EVERY: u64 = 10;
/// Ticks in the trailing window that admission rates are measured over (1 s).
const RATE_WINDOW: usize = 100;

/// A stream of requests of one class, arriving at a steady rate.
#[derive(Clone, Debug)]
pub struct Workload {
    /// The class of every request.
    pub class: Class,
    /// First arrival, in seconds.
    pub from: f64,
    /// No arrivals from here on, in seconds.
    pub until: f64,
    /// Arrivals per second.
    pub per_sec: f64,
    /// Bytes per request.
    pub bytes: u64,
    /// The replicas each request goes to (a simple-majority quorum).
    pub targets: Vec<StreamId>,
    /// A replica that must always have tokens (leaseholder), if any.
    pub must_have: Option<StreamId>,
}

/// Something that happens once, at a given time.
#[derive(Clone, Debug)]
pub enum Action {
    /// The stream connects (or reconnects), resuming at the current log position.
    Connect(StreamId),
    /// The stream disconnects: the leader forgets what it was sending there.
    Disconnect(StreamId),
    /// The receiver behind the stream now admits this many bytes per second.
    ReceiverRate(StreamId, f64),
    /// The receiver admits this many bytes once, on top of its rate.
    ReceiverBurst(StreamId, u64),
    /// A regular entry of this many bytes is deducted directly and sent.
    Take(StreamId, u64),
}

/// A scenario: streams, their receivers, the workloads and a timeline.
#[derive(Clone, Debug)]
pub struct Scenario {
    /// Short name, used for file names.
    pub name: &'static str,
    /// One line on what it shows.
    pub title: &'static str,
    /// The controller's configuration.
    pub config: Config,
    /// Streams connected at the start, with their receivers' admission rates in bytes per second.
    pub streams: Vec<(StreamId, f64)>,
    /// The writers.
    pub workloads: Vec<Workload>,
    /// Timed actions, in seconds.
    pub timeline: Vec<(f64, Action)>,
    /// Delay between admission and the entry getting its log position, in seconds.
    pub bind_delay: f64,
    /// Length of the run, in seconds.
    pub duration: f64,
}

/// The state of the world every 100 ms.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    /// Seconds since the start.
    pub t: f64,
    /// Regular tokens available over connected streams, in bytes.
    pub regular_tokens: i64,
    /// Elastic tokens available over connected streams, in bytes.
    pub elastic_tokens: i64,
    /// Regular admissions over the last second.
    pub regular_per_sec: u64,
    /// Elastic admissions over the last second.
    pub elastic_per_sec: u64,
    /// Control admissions over the last second.
    pub control_per_sec: u64,
    /// Regular requests waiting.
    pub regular_waiting: u64,
    /// Elastic requests waiting.
    pub elastic_waiting: u64,
    /// Streams out of regular tokens.
    pub regular_blocked: u64,
    /// Streams out of elastic tokens.
    pub elastic_blocked: u64,
    /// Bytes the leader holds back for replicas that were out of tokens.
    pub send_queue_bytes: u64,
    /// Requests rejected so far.
    pub rejected: u64,
}

/// What a run produced.
#[derive(Clone, Debug)]
pub struct Run {
    /// The scenario's name.
    pub name: &'static str,
    /// The scenario's title.
    pub title: &'static str,
    /// One sample per 100 ms.
    pub samples: Vec<Sample>,
    /// Admissions per tick: regular, elastic, control.
    pub admissions: Vec<[u32; 3]>,
    /// The deepest any stream's regular pool went into debt, in bytes (0 if never).
    pub max_regular_debt: u64,
    /// Control requests that were queued instead of admitted at once. Control traffic never
    /// enters the queue by design, so each one is also a violation: this counts a broken
    /// property, it does not measure a wait.
    pub heartbeats_queued: u64,
    /// Rejections by reason: queue full, queue bytes full, too many in flight, timed out.
    pub rejections: BTreeMap<&'static str, u64>,
    /// Requests admitted because a stream they waited on left.
    pub bypassed: u64,
    /// Invariant violations seen (empty when all is well).
    pub violations: Vec<String>,
    /// Per stream: (regular, elastic) tokens available at the end.
    pub final_tokens: BTreeMap<StreamId, (i64, i64)>,
}

impl Run {
    /// Admissions of `class` in `[from, until)` seconds, per second.
    pub fn rate(&self, class: Class, from: f64, until: f64) -> f64 {
        let column = match class {
            Class::Regular => 0,
            Class::Elastic => 1,
            _ => 2,
        };
        let first = seconds_to_ticks(from) as usize;
        let last = seconds_to_ticks(until) as usize;
        let total: u64 = self
            .admissions
            .iter()
            .take(last)
            .skip(first)
            .map(|a| u64::from(a[column]))
            .sum();
        total as f64 / (until - from)
    }

    /// The first sample matching `pred`, if any.
    pub fn first(&self, pred: impl Fn(&Sample) -> bool) -> Option<&Sample> {
        self.samples.iter().find(|s| pred(s))
    }

    /// The sample at or just after `t` seconds.
    pub fn at(&self, t: f64) -> Option<&Sample> {
        self.samples.iter().find(|s| s.t >= t - 1e-9)
    }
}

/// A replica as the leader sees it, plus the receiver behind it.
#[derive(Default)]
struct Replica {
    /// Bytes per second the receiver admits.
    rate: f64,
    /// Admission credit the receiver has built up.
    budget: f64,
    /// Entries sent and not yet admitted by the receiver.
    inbox: VecDeque<(LogPosition, u64)>,
    /// Entries held back by the leader, in log order: (position, class, bytes, tokens paid).
    send_queue: VecDeque<(LogPosition, Class, u64, bool)>,
}

/// An admitted request waiting for its log position.
struct Pending {
    due: u64,
    id: RequestId,
    class: Class,
    bytes: u64,
    charged: Vec<StreamId>,
    deferred: Vec<StreamId>,
}

/// Runs a scenario to the end.
pub fn run(scenario: &Scenario) -> Run {
    Sim::new(scenario).run()
}

fn seconds_to_ticks(seconds: f64) -> u64 {
    (seconds * 1e9 / TICK.as_nanos() as f64).round() as u64
}

struct Sim<'a> {
    scenario: &'a Scenario,
    fc: FlowControl,
    tick: u64,
    replicas: BTreeMap<StreamId, Replica>,
    next_id: u64,
    next_index: u64,
    pending: VecDeque<Pending>,
    arrivals: Vec<f64>,
    /// Outputs drained after each call to the controller, acted on at the end of the tick (an
    /// admission's own outcome is acted on at once).
    later: VecDeque<Output>,
    out: Run,
}

impl<'a> Sim<'a> {
    fn new(scenario: &'a Scenario) -> Sim<'a> {
        let mut sim = Sim {
            scenario,
            fc: FlowControl::new(scenario.config.clone()),
            tick: 0,
            replicas: BTreeMap::new(),
            next_id: 0,
            next_index: 0,
            pending: VecDeque::new(),
            arrivals: vec![0.0; scenario.workloads.len()],
            later: VecDeque::new(),
            out: Run {
                name: scenario.name,
                title: scenario.title,
                samples: Vec::new(),
                admissions: Vec::new(),
                max_regular_debt: 0,
                heartbeats_queued: 0,
                rejections: BTreeMap::new(),
                bypassed: 0,
                violations: Vec::new(),
                final_tokens: BTreeMap::new(),
            },
        };
        for &(stream, rate) in &scenario.streams {
            sim.connect(stream);
            sim.replica(stream).rate = rate;
        }
        sim
    }

    fn now(&self) -> Instant {
        Instant::from_nanos(self.tick * TICK.as_nanos() as u64)
    }

    fn position(&self) -> LogPosition {
        LogPosition::new(1, self.next_index)
    }

    fn next_position(&mut self) -> LogPosition {
        self.next_index += 1;
        self.position()
    }

    fn replica(&mut self, stream: StreamId) -> &mut Replica {
        self.replicas.entry(stream).or_default()
    }

    fn connect(&mut self, stream: StreamId) {
        let (now, position) = (self.now(), self.position());
        if let Err(e) = self.fc.connect_stream(now, stream, position) {
            self.out.violations.push(format!("connect {stream:?}: {e}"));
        }
        drain(&mut self.fc, &mut self.later);
    }

    fn run(mut self) -> Run {
        let end = seconds_to_ticks(self.scenario.duration);
        while self.tick < end {
            self.out.admissions.push([0; 3]);
            self.timeline();
            self.receive();
            self.send_deferred();
            self.bind_due();
            self.arrive();
            if self.fc.poll_timeout().is_some_and(|d| d <= self.now()) {
                self.fc.handle_timeout(self.now());
                drain(&mut self.fc, &mut self.later);
            }
            self.drain_outputs();
            self.check();
            self.tick += 1;
            if self.tick % SAMPLE_EVERY == 0 {
                self.sample();
            }
        }
        self.out.bypassed = self.fc.metrics().regular.requests_bypassed
            + self.fc.metrics().elastic.requests_bypassed;
        for &stream in self.replicas.keys() {
            let regular = self.fc.available(stream, Class::Regular).unwrap_or(0);
            let elastic = self.fc.available(stream, Class::Elastic).unwrap_or(0);
            self.out.final_tokens.insert(stream, (regular, elastic));
        }
        self.out
    }

    fn timeline(&mut self) {
        let now = self.now();
        let due: Vec<Action> = self
            .scenario
            .timeline
            .iter()
            .filter(|(t, _)| seconds_to_ticks(*t) == self.tick)
            .map(|(_, a)| a.clone())
            .collect();
        for action in due {
            match action {
                Action::Connect(stream) => self.connect(stream),
                Action::Disconnect(stream) => {
                    if let Err(e) = self.fc.disconnect_stream(now, stream) {
                        self.out
                            .violations
                            .push(format!("disconnect {stream:?}: {e}"));
                    }
                    drain(&mut self.fc, &mut self.later);
                    let r = self.replica(stream);
                    r.inbox.clear();
                    r.send_queue.clear();
                }
                Action::ReceiverRate(stream, rate) => self.replica(stream).rate = rate,
                Action::ReceiverBurst(stream, bytes) => self.replica(stream).budget += bytes as f64,
                Action::Take(stream, bytes) => {
                    let position = self.next_position();
                    match self.fc.deduct(now, stream, Class::Regular, position, bytes) {
                        Ok(Deduction::Deducted) => {
                            self.replica(stream).inbox.push_back((position, bytes))
                        }
                        other => self
                            .out
                            .violations
                            .push(format!("take {stream:?}: {other:?}")),
                    }
                }
            }
        }
    }

    /// Each receiver admits what its rate allows, in log order, and reports the position.
    fn receive(&mut self) {
        let now = self.now();
        let dt = TICK.as_secs_f64();
        for (&stream, r) in &mut self.replicas {
            r.budget += r.rate * dt;
            let mut admitted = None;
            while let Some(&(position, bytes)) = r.inbox.front() {
                if r.budget < bytes as f64 {
                    break;
                }
                r.budget -= bytes as f64;
                admitted = Some(position);
                r.inbox.pop_front();
            }
            if r.inbox.is_empty() {
                // An idle receiver cannot bank more than a tenth of a second of work.
                r.budget = r.budget.min(r.rate * 0.1);
            }
            if let Some(position) = admitted {
                for class in Class::TOKEN_CLASSES {
                    if let Err(e) = self.fc.handle_admitted(now, stream, class, position) {
                        self.out.violations.push(format!("admitted: {e}"));
                    }
                    drain(&mut self.fc, &mut self.later);
                }
            }
        }
    }

    /// The leader sends held-back entries, in order, as their stream gets tokens back.
    fn send_deferred(&mut self) {
        let now = self.now();
        for (&stream, r) in &mut self.replicas {
            while let Some(&(position, class, bytes, paid)) = r.send_queue.front() {
                let go = paid
                    || match self.fc.deduct(now, stream, class, position, bytes) {
                        Ok(Deduction::Deducted) => true,
                        Ok(Deduction::NoTokens) => break,
                        _ => false, // already admitted or gone: nothing to send
                    };
                r.send_queue.pop_front();
                if go {
                    r.inbox.push_back((position, bytes));
                }
            }
        }
    }

    fn bind_due(&mut self) {
        while self.pending.front().is_some_and(|p| p.due <= self.tick) {
            let Some(p) = self.pending.pop_front() else {
                break;
            };
            let position = self.next_position();
            if let Err(e) = self.fc.bind(self.now(), p.id, position) {
                self.out.violations.push(format!("bind: {e}"));
            }
            drain(&mut self.fc, &mut self.later);
            for (streams, paid) in [(&p.charged, true), (&p.deferred, false)] {
                for &stream in streams {
                    if self.fc.is_connected(stream) != Some(true) {
                        continue;
                    }
                    let r = self.replica(stream);
                    if paid && r.send_queue.is_empty() {
                        r.inbox.push_back((position, p.bytes));
                    } else {
                        r.send_queue.push_back((position, p.class, p.bytes, paid));
                    }
                }
            }
        }
    }

    fn arrive(&mut self) {
        let t = self.tick as f64 * TICK.as_secs_f64();
        let now = self.now();
        let scenario = self.scenario;
        for (i, w) in scenario.workloads.iter().enumerate() {
            if t < w.from - 1e-9 || t >= w.until - 1e-9 {
                continue;
            }
            self.arrivals[i] += w.per_sec * TICK.as_secs_f64();
            while self.arrivals[i] >= 1.0 - 1e-9 {
                self.arrivals[i] -= 1.0;
                let mut targets = Targets::majority(&w.targets);
                if let Some(stream) = w.must_have {
                    targets = targets.with_must_have(stream);
                }
                self.next_id += 1;
                let id = RequestId(self.next_id);
                if let Err(e) = self.fc.admit(now, id, w.class, w.bytes, &targets) {
                    self.out.violations.push(format!("admit: {e}"));
                    continue;
                }
                while let Some(output) = self.fc.poll_output() {
                    let queued = matches!(output, Output::Queued { id: q, .. } if q == id);
                    if queued && w.class == Class::Control {
                        self.out.heartbeats_queued += 1;
                        self.out
                            .violations
                            .push(format!("control request {id:?} was queued"));
                    }
                    self.handle(output);
                }
            }
        }
    }

    fn drain_outputs(&mut self) {
        drain(&mut self.fc, &mut self.later);
        while let Some(output) = self.later.pop_front() {
            self.handle(output);
        }
    }

    /// Acts on one output: counts admissions and schedules their binds, counts rejections.
    fn handle(&mut self, output: Output) {
        match output {
            Output::Admitted { grant, .. } if grant.class == Class::Control => {
                count(&mut self.out, Class::Control);
            }
            Output::Admitted { id, grant } => {
                count(&mut self.out, grant.class);
                self.pending.push_back(Pending {
                    due: self.tick + seconds_to_ticks(self.scenario.bind_delay),
                    id,
                    class: grant.class,
                    bytes: grant.bytes,
                    charged: grant.charged,
                    deferred: grant.deferred,
                });
            }
            Output::Queued { .. } => {}
            Output::Rejected { reason, .. } => reject(&mut self.out, reason),
            other => self.out.violations.push(format!("output: {other:?}")),
        }
    }

    fn check(&mut self) {
        if let Err(v) = self.fc.check_invariants() {
            self.out.violations.push(format!("t={:?}: {v}", self.now()));
        }
        for &stream in self.replicas.keys() {
            if let Some(available) = self.fc.available(stream, Class::Regular) {
                self.out.max_regular_debt =
                    self.out.max_regular_debt.max((-available).max(0) as u64);
            }
        }
    }

    fn sample(&mut self) {
        let m = self.fc.metrics();
        let window = self.out.admissions.iter().rev().take(RATE_WINDOW);
        let mut per_sec = [0u64; 3];
        for a in window {
            for (total, n) in per_sec.iter_mut().zip(a) {
                *total += u64::from(*n);
            }
        }
        self.out.samples.push(Sample {
            t: self.tick as f64 * TICK.as_secs_f64(),
            regular_tokens: m.regular.tokens_available,
            elastic_tokens: m.elastic.tokens_available,
            regular_per_sec: per_sec[0],
            elastic_per_sec: per_sec[1],
            control_per_sec: per_sec[2],
            regular_waiting: m.regular.requests_waiting,
            elastic_waiting: m.elastic.requests_waiting,
            regular_blocked: m.regular.blocked_stream_count,
            elastic_blocked: m.elastic.blocked_stream_count,
            send_queue_bytes: self
                .replicas
                .values()
                .flat_map(|r| r.send_queue.iter().map(|e| e.2))
                .sum(),
            rejected: self.out.rejections.values().sum(),
        });
    }
}

/// Moves every output of `fc` to the back of `into`, in order.
fn drain(fc: &mut FlowControl, into: &mut VecDeque<Output>) {
    into.extend(core::iter::from_fn(|| fc.poll_output()));
}

fn count(out: &mut Run, class: Class) {
    let column = match class {
        Class::Regular => 0,
        Class::Elastic => 1,
        _ => 2,
    };
    if let Some(tick) = out.admissions.last_mut() {
        tick[column] += 1;
    }
}

fn reject(out: &mut Run, reason: Rejection) {
    let name = match reason {
        Rejection::QueueFull => "queue_full",
        Rejection::QueueBytesFull => "queue_bytes_full",
        Rejection::TooManyInFlight => "too_many_in_flight",
        Rejection::TimedOut => "timed_out",
        _ => "other",
    };
    *out.rejections.entry(name).or_default() += 1;
}
