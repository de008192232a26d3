//! The flow controller against a brute-force model.
//!
//! The model keeps every deduction as a separate entry (held by a request, or at a log position)
//! and recomputes each pool from scratch. Random operation sequences (admissions of every class,
//! binds and releases, direct deductions, returns out of order and duplicated, disconnects,
//! reconnects, removals, time passing) must leave the controller agreeing with the model on every
//! pool, every admission must obey the class's rule, no waiter that could go may be left
//! waiting, control work never waits, and the queue stays within its bounds.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use weir::flow::{
    Class, Config, Deduction, FlowControl, FlowError, Grant, LogPosition, Output, Rejection,
    RequestId, StreamId, Targets,
};
use weir::time::Instant;

const REGULAR: u64 = 4_000;
const ELASTIC: u64 = 2_000;
const STREAMS: u64 = 5;

fn config() -> Config {
    let mut c = Config::default();
    c.regular_tokens = REGULAR;
    c.elastic_tokens = ELASTIC;
    c.max_waiting = 6;
    c.max_waiting_bytes = 5_000;
    c.max_in_flight = 12;
    c.max_wait = Duration::from_millis(300);
    c.max_targets = 4;
    c
}

fn sid(n: u64) -> StreamId {
    StreamId::new(7, n)
}

fn pos(index: u64) -> LogPosition {
    LogPosition::new(1, index)
}

#[derive(Clone, Debug)]
enum Op {
    Connect(u64, u64),
    Disconnect(u64),
    Remove(u64),
    Admit {
        id: u64,
        class: Class,
        bytes: u64,
        replicas: Vec<(u64, bool)>,
        quorum: usize,
    },
    Bind(u64, u64),
    Release(u64),
    Cancel(u64),
    Deduct(u64, Class, u64, u64),
    Admitted(u64, Class, u64),
    Advance(u64),
}

fn class() -> impl Strategy<Value = Class> {
    prop_oneof![
        1 => Just(Class::Control),
        3 => Just(Class::Regular),
        2 => Just(Class::Elastic),
    ]
}

/// Sizes that divide the pools evenly, so pools land exactly on zero often, and arbitrary ones.
fn bytes() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => prop::sample::select(vec![0u64, 1, 500, 1_000, 2_000, 4_000]),
        2 => 0..4_500u64,
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let stream = 0..STREAMS;
    prop_oneof![
        2 => (stream.clone(), 0..20u64).prop_map(|(s, i)| Op::Connect(s, i)),
        1 => stream.clone().prop_map(Op::Disconnect),
        1 => stream.clone().prop_map(Op::Remove),
        6 => (0..16u64, class(), bytes(), prop::collection::vec((0..STREAMS, any::<bool>()), 0..5), 0..5usize)
            .prop_map(|(id, class, bytes, replicas, quorum)| Op::Admit { id, class, bytes, replicas, quorum }),
        3 => (0..16u64, 0..60u64).prop_map(|(id, i)| Op::Bind(id, i)),
        1 => (0..16u64).prop_map(Op::Release),
        1 => (0..16u64).prop_map(Op::Cancel),
        2 => (stream.clone(), class(), 0..60u64, bytes()).prop_map(|(s, c, i, b)| Op::Deduct(s, c, i, b)),
        4 => (stream, class(), 0..60u64).prop_map(|(s, c, i)| Op::Admitted(s, c, i)),
        2 => (0..400u64).prop_map(Op::Advance),
    ]
}

fn pool(class: Class) -> Option<usize> {
    match class {
        Class::Control => None,
        Class::Regular => Some(0),
        Class::Elastic => Some(1),
    }
}

/// One deduction: the class pool of the work that made it, its bytes, and either the request
/// holding it or its log position.
#[derive(Clone, Debug)]
struct Entry {
    pool: usize,
    bytes: u64,
    held_by: Option<u64>,
    at: Option<LogPosition>,
}

#[derive(Clone, Debug)]
struct MStream {
    connected: bool,
    entries: Vec<Entry>,
    lwm: [LogPosition; 2],
}

impl MStream {
    fn available(&self, p: usize) -> i64 {
        let limit = if p == 0 { REGULAR } else { ELASTIC } as i64;
        let used: u64 = self
            .entries
            .iter()
            .filter(|e| e.pool == 0 || p == 1)
            .map(|e| e.bytes)
            .sum();
        limit - used as i64
    }

    fn has_tokens(&self, p: usize) -> bool {
        self.connected && self.available(p) > 0
    }
}

#[derive(Clone, Debug)]
struct MWaiter {
    id: u64,
    pool: usize,
    bytes: u64,
    targets: Targets,
    deadline: Instant,
}

#[derive(Default)]
struct Model {
    streams: BTreeMap<u64, MStream>,
    held: BTreeMap<u64, usize>,
    queue: Vec<MWaiter>,
}

impl Model {
    fn stream(&self, s: StreamId) -> Option<&MStream> {
        self.streams.get(&s.store).filter(|m| m.connected)
    }

    /// Whether a waiter of `pool` targeting `targets` could go now by the class's rule.
    fn admissible(&self, p: usize, targets: &Targets) -> bool {
        let mut ready = 0;
        for t in targets.replicas() {
            let Some(m) = self.stream(t.stream) else {
                continue;
            };
            if m.has_tokens(p) {
                ready += 1;
            } else if p == 1 || t.must_have {
                return false;
            }
        }
        p == 1 || ready >= targets.quorum()
    }

    /// Whether an earlier waiter of the class shares a stream with `targets`.
    fn held_back(&self, p: usize, targets: &Targets, before: usize) -> bool {
        self.queue.iter().take(before).any(|w| {
            w.pool == p
                && w.targets
                    .replicas()
                    .iter()
                    .any(|t| targets.contains(t.stream))
        })
    }

    /// Checks that `grant` obeys the class's rule against the model, then applies it.
    fn grant(&mut self, id: u64, p: usize, targets: &Targets, grant: &Grant) {
        let mut expected_charged = Vec::new();
        let mut expected_deferred = Vec::new();
        for t in targets.replicas() {
            let Some(m) = self.stream(t.stream) else {
                continue;
            };
            if m.has_tokens(p) {
                expected_charged.push(t.stream);
            } else {
                assert!(
                    p == 0 && !t.must_have,
                    "admitted while {:?} had no tokens",
                    t.stream
                );
                expected_deferred.push(t.stream);
            }
        }
        if p == 0 {
            assert!(
                expected_charged.len() >= targets.quorum(),
                "admitted without a quorum"
            );
        }
        assert_eq!(grant.charged, expected_charged);
        assert_eq!(grant.deferred, expected_deferred);
        for s in &grant.charged {
            let m = self.streams.get_mut(&s.store).unwrap();
            m.entries.push(Entry {
                pool: p,
                bytes: grant.bytes,
                held_by: Some(id),
                at: None,
            });
        }
        self.held.insert(id, p);
    }

    fn reset(&mut self, store: u64) {
        if let Some(m) = self.streams.get_mut(&store) {
            m.entries.clear();
        }
    }

    fn admitted(&mut self, store: u64, p: usize, up_to: LogPosition) -> u64 {
        let Some(m) = self.streams.get_mut(&store).filter(|m| m.connected) else {
            return 0;
        };
        if up_to <= m.lwm[p] {
            return 0;
        }
        m.lwm[p] = up_to;
        let mut returned = 0;
        m.entries.retain(|e| {
            let done = e.pool == p && e.at.is_some_and(|at| at <= up_to);
            if done {
                returned += e.bytes;
            }
            !done
        });
        returned
    }
}

fn validate(targets: &Targets, class: Class, bytes: u64) -> Option<FlowError> {
    let limit = if class == Class::Regular {
        REGULAR
    } else {
        ELASTIC
    };
    let replicas = targets.replicas();
    if bytes == 0 {
        return Some(FlowError::ZeroBytes);
    }
    if bytes > limit {
        return Some(FlowError::TooLarge {
            class,
            bytes,
            limit,
        });
    }
    if replicas.is_empty() {
        return Some(FlowError::NoTargets);
    }
    for (i, t) in replicas.iter().enumerate() {
        if replicas[i + 1..].iter().any(|u| u.stream == t.stream) {
            return Some(FlowError::DuplicateTarget(t.stream));
        }
    }
    let quorum = targets.quorum();
    if quorum == 0 || quorum > replicas.len() {
        return Some(FlowError::InvalidQuorum {
            quorum,
            replicas: replicas.len(),
        });
    }
    None
}

fn run(ops: Vec<Op>) {
    let cfg = config();
    let mut fc = FlowControl::new(cfg.clone());
    let mut model = Model::default();
    let mut now = Instant::ZERO;
    for op in ops {
        match op.clone() {
            Op::Connect(s, i) => {
                let r = fc.connect_stream(now, sid(s), pos(i));
                match model.streams.get_mut(&s) {
                    Some(m) if m.connected => {
                        assert_eq!(r, Err(FlowError::AlreadyConnected(sid(s))))
                    }
                    Some(m) => {
                        assert_eq!(r, Ok(()));
                        m.connected = true;
                        m.lwm = [pos(i); 2];
                    }
                    None => {
                        assert_eq!(r, Ok(()));
                        model.streams.insert(
                            s,
                            MStream {
                                connected: true,
                                entries: vec![],
                                lwm: [pos(i); 2],
                            },
                        );
                    }
                }
            }
            Op::Disconnect(s) => {
                let r = fc.disconnect_stream(now, sid(s));
                match model.streams.get_mut(&s) {
                    None => assert_eq!(r, Err(FlowError::UnknownStream(sid(s)))),
                    Some(m) => {
                        assert_eq!(r, Ok(()));
                        m.connected = false;
                        model.reset(s);
                    }
                }
            }
            Op::Remove(s) => {
                let r = fc.remove_stream(now, sid(s));
                if model.streams.remove(&s).is_some() {
                    assert_eq!(r, Ok(()));
                } else {
                    assert_eq!(r, Err(FlowError::UnknownStream(sid(s))));
                }
            }
            Op::Admit {
                id,
                class,
                bytes,
                replicas,
                quorum,
            } => {
                let mut targets = Targets::new(quorum);
                for (s, must) in replicas {
                    targets = if must {
                        targets.with_must_have(sid(s))
                    } else {
                        targets.with_replica(sid(s))
                    };
                }
                // Every admission that is not refused has exactly one outcome at once.
                let r = fc
                    .admit(now, RequestId(id), class, bytes, &targets)
                    .map(|()| fc.poll_output().expect("an admission has an outcome"));
                assert_eq!(fc.poll_output(), None, "one output per admission");
                let Some(p) = pool(class) else {
                    assert!(
                        matches!(r, Ok(Output::Admitted { id: got, .. }) if got == RequestId(id)),
                        "control waited: {r:?}"
                    );
                    continue_checks(&mut fc, &mut model, now, &cfg);
                    continue;
                };
                if let Some(e) = validate(&targets, class, bytes) {
                    assert_eq!(r, Err(e));
                } else if model.held.contains_key(&id) || model.queue.iter().any(|w| w.id == id) {
                    assert_eq!(r, Err(FlowError::DuplicateRequest(id)));
                } else {
                    let in_flight = model.held.len() + model.queue.len();
                    let behind = model.held_back(p, &targets, model.queue.len());
                    match r.unwrap() {
                        Output::Admitted { id: got, grant } => {
                            assert_eq!(got, RequestId(id));
                            assert!(in_flight < cfg.max_in_flight);
                            assert!(!behind, "overtook an earlier waiter");
                            model.grant(id, p, &targets, &grant);
                        }
                        Output::Queued { id: got, deadline } => {
                            assert_eq!(got, RequestId(id));
                            assert!(in_flight < cfg.max_in_flight);
                            assert!(
                                behind || !model.admissible(p, &targets),
                                "queued though it could go"
                            );
                            model.queue.push(MWaiter {
                                id,
                                pool: p,
                                bytes,
                                targets,
                                deadline,
                            });
                        }
                        Output::Rejected { id: got, reason } => {
                            assert_eq!(got, RequestId(id));
                            let queued: u64 = model.queue.iter().map(|w| w.bytes).sum();
                            let expected = if in_flight >= cfg.max_in_flight {
                                Rejection::TooManyInFlight
                            } else if model.queue.len() >= cfg.max_waiting {
                                Rejection::QueueFull
                            } else {
                                assert!(queued + bytes > cfg.max_waiting_bytes);
                                Rejection::QueueBytesFull
                            };
                            assert_eq!(reason, expected);
                        }
                        other => panic!("unexpected {other:?}"),
                    }
                }
            }
            Op::Bind(id, i) => {
                let r = fc.bind(now, RequestId(id), pos(i));
                match model.held.remove(&id) {
                    None => assert_eq!(r, Err(FlowError::UnknownRequest(id))),
                    Some(p) => {
                        assert_eq!(r, Ok(()));
                        for m in model.streams.values_mut() {
                            let stale = pos(i) <= m.lwm[p];
                            m.entries.retain_mut(|e| {
                                if e.held_by != Some(id) {
                                    return true;
                                }
                                e.held_by = None;
                                e.at = Some(pos(i));
                                !stale
                            });
                        }
                    }
                }
            }
            Op::Release(id) => {
                let r = fc.release(now, RequestId(id));
                if model.held.remove(&id).is_some() {
                    assert_eq!(r, Ok(()));
                    for m in model.streams.values_mut() {
                        m.entries.retain(|e| e.held_by != Some(id));
                    }
                } else {
                    assert_eq!(r, Err(FlowError::UnknownRequest(id)));
                }
            }
            Op::Cancel(id) => {
                let r = fc.cancel(now, RequestId(id));
                match model.queue.iter().position(|w| w.id == id) {
                    Some(at) => {
                        assert_eq!(r, Ok(()));
                        model.queue.remove(at);
                    }
                    None => assert_eq!(r, Err(FlowError::UnknownRequest(id))),
                }
            }
            Op::Deduct(s, class, i, bytes) => {
                let r = fc.deduct(now, sid(s), class, pos(i), bytes);
                let Some(p) = pool(class) else {
                    assert_eq!(r, Err(FlowError::ControlClass));
                    continue_checks(&mut fc, &mut model, now, &cfg);
                    continue;
                };
                let limit = if p == 0 { REGULAR } else { ELASTIC };
                match model.streams.get_mut(&s) {
                    _ if bytes == 0 => assert_eq!(r, Err(FlowError::ZeroBytes)),
                    _ if bytes > limit => assert!(matches!(r, Err(FlowError::TooLarge { .. }))),
                    None => assert_eq!(r, Err(FlowError::UnknownStream(sid(s)))),
                    Some(m) if !m.connected => assert_eq!(r, Err(FlowError::NotConnected(sid(s)))),
                    Some(m) if m.available(p) <= 0 => assert_eq!(r, Ok(Deduction::NoTokens)),
                    Some(m) if pos(i) <= m.lwm[p] => assert_eq!(r, Ok(Deduction::AlreadyAdmitted)),
                    Some(m) => {
                        assert_eq!(r, Ok(Deduction::Deducted));
                        m.entries.push(Entry {
                            pool: p,
                            bytes,
                            held_by: None,
                            at: Some(pos(i)),
                        });
                    }
                }
            }
            Op::Admitted(s, class, i) => {
                let r = fc.handle_admitted(now, sid(s), class, pos(i));
                match pool(class) {
                    None => assert_eq!(r, Err(FlowError::ControlClass)),
                    Some(p) => assert_eq!(r, Ok(model.admitted(s, p, pos(i)))),
                }
            }
            Op::Advance(ms) => {
                now = now + Duration::from_millis(ms);
                if fc.poll_timeout().is_some_and(|d| d <= now) {
                    fc.handle_timeout(now);
                }
            }
        }
        continue_checks(&mut fc, &mut model, now, &cfg);
    }
}

/// Drains outputs into the model, checking each, then compares every pool and the queue.
fn continue_checks(fc: &mut FlowControl, model: &mut Model, now: Instant, cfg: &Config) {
    while let Some(output) = fc.poll_output() {
        match output {
            Output::Admitted { id, grant } => {
                let at = model
                    .queue
                    .iter()
                    .position(|w| w.id == id.0)
                    .expect("admitted a stranger");
                let w = model.queue[at].clone();
                assert!(
                    !model.held_back(w.pool, &w.targets, at),
                    "overtook an earlier waiter"
                );
                model.queue.remove(at);
                model.grant(id.0, w.pool, &w.targets, &grant);
            }
            Output::Rejected { id, reason } => {
                assert_eq!(reason, Rejection::TimedOut);
                let at = model
                    .queue
                    .iter()
                    .position(|w| w.id == id.0)
                    .expect("rejected a stranger");
                assert!(model.queue[at].deadline <= now);
                model.queue.remove(at);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    if let Err(v) = fc.check_invariants() {
        panic!("{v}");
    }
    for (&s, m) in &model.streams {
        for (p, class) in [(0, Class::Regular), (1, Class::Elastic)] {
            assert_eq!(
                fc.available(sid(s), class),
                Some(m.available(p)),
                "stream {s} {class:?}"
            );
        }
    }
    // Nothing that could go is left waiting, and nothing past its deadline.
    for (at, w) in model.queue.iter().enumerate() {
        assert!(
            model.held_back(w.pool, &w.targets, at) || !model.admissible(w.pool, &w.targets),
            "waiter {} could go",
            w.id
        );
        assert!(w.deadline > now || fc.poll_timeout().is_some_and(|d| d <= now));
    }
    assert_eq!(fc.waiting(), model.queue.len());
    assert!(fc.waiting() <= cfg.max_waiting);
    assert!(fc.waiting_bytes() <= cfg.max_waiting_bytes);
    assert_eq!(fc.unbound(), model.held.len());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn controller_agrees_with_the_model(ops in prop::collection::vec(op(), 1..120)) {
        run(ops);
    }
}
