//! Unit tests of the flow controller.

use alloc::vec;
use alloc::vec::Vec;
use core::time::Duration;

use super::*;
use crate::error::Kind;
use crate::time::Instant;

const KIB: u64 = 1 << 10;
const MIB: u64 = 1 << 20;

fn s(n: u64) -> StreamId {
    StreamId::new(1, n)
}

fn pos(index: u64) -> LogPosition {
    LogPosition::new(1, index)
}

fn t(secs: u64) -> Instant {
    Instant::from_secs(secs)
}

/// A controller with streams 1..=n connected at position 1/0.
fn controller(config: Config, n: u64) -> FlowControl {
    let mut fc = FlowControl::new(config);
    for i in 1..=n {
        fc.connect_stream(Instant::ZERO, s(i), pos(0)).unwrap();
    }
    fc
}

fn three() -> Targets {
    Targets::majority(&[s(1), s(2), s(3)])
}

/// Admits through `fc.admit` and returns the one output the admission produced.
fn admit(
    fc: &mut FlowControl,
    now: Instant,
    id: u64,
    class: Class,
    bytes: u64,
    targets: &Targets,
) -> Result<Output, FlowError> {
    fc.admit(now, RequestId(id), class, bytes, targets)?;
    let out = fc.poll_output().expect("every admission has an outcome");
    assert_eq!(fc.poll_output(), None, "one output per admission");
    Ok(out)
}

fn admitted(out: Output) -> Grant {
    match out {
        Output::Admitted { grant, .. } => grant,
        other => panic!("expected admission, got {other:?}"),
    }
}

fn outputs(fc: &mut FlowControl) -> Vec<Output> {
    core::iter::from_fn(|| fc.poll_output()).collect()
}

fn admitted_ids(outputs: &[Output]) -> Vec<u64> {
    outputs
        .iter()
        .filter_map(|e| match e {
            Output::Admitted { id, .. } => Some(id.0),
            _ => None,
        })
        .collect()
}

/// Drains `stream`'s regular pool to exactly zero through a direct deduction at `position`.
fn exhaust(fc: &mut FlowControl, stream: StreamId, position: LogPosition) {
    let avail = fc.available(stream, Class::Regular).unwrap();
    let bytes = u64::try_from(avail).unwrap();
    assert_eq!(
        fc.deduct(Instant::ZERO, stream, Class::Regular, position, bytes),
        Ok(Deduction::Deducted)
    );
}

#[test]
fn control_never_waits_nor_deducts() {
    let config = Config {
        max_waiting: 1,
        ..Config::default()
    };
    let mut fc = controller(config, 3);
    for i in 1..=3 {
        exhaust(&mut fc, s(i), pos(1));
    }
    assert!(matches!(
        admit(&mut fc, t(0), 1, Class::Regular, KIB, &three()),
        Ok(Output::Queued { .. })
    ));
    for id in 2..100 {
        let grant = admitted(admit(&mut fc, t(0), id, Class::Control, 100, &three()).unwrap());
        assert!(grant.charged.is_empty());
        assert_eq!(grant.waited, Duration::ZERO);
    }
    assert_eq!(fc.available(s(1), Class::Regular), Some(0));
    assert_eq!(fc.metrics().control_requests, 98);
    fc.check_invariants().unwrap();
}

#[test]
fn one_small_return_admits_one_waiter_not_a_flood() {
    let mut fc = controller(Config::default(), 1);
    let one = Targets::majority(&[s(1)]);
    // The pool is drained by two entries, the first of them 1 KiB.
    fc.deduct(t(0), s(1), Class::Regular, pos(1), KIB).unwrap();
    fc.deduct(t(0), s(1), Class::Regular, pos(2), 16 * MIB - KIB)
        .unwrap();
    let request = 400 * KIB;
    for id in 0..100 {
        assert!(matches!(
            admit(&mut fc, t(10), id, Class::Regular, request, &one),
            Ok(Output::Queued { .. })
        ));
    }
    assert_eq!(
        fc.handle_admitted(t(30), s(1), Class::Regular, pos(1)),
        Ok(KIB)
    );
    assert_eq!(admitted_ids(&outputs(&mut fc)), vec![0]);
    let debt = -fc.available(s(1), Class::Regular).unwrap();
    assert_eq!(debt, i64::try_from(request - KIB).unwrap());
    assert_eq!(fc.waiting(), 99);
    fc.check_invariants().unwrap();
}

#[test]
fn regular_work_goes_at_the_quorums_pace() {
    let mut fc = controller(Config::default(), 3);
    exhaust(&mut fc, s(3), pos(1));
    let grant = admitted(admit(&mut fc, t(0), 1, Class::Regular, MIB, &three()).unwrap());
    assert_eq!(grant.charged, vec![s(1), s(2)]);
    assert_eq!(grant.deferred, vec![s(3)]);
    // The slow stream is not charged: it stays at zero, not deeper in debt.
    assert_eq!(fc.available(s(3), Class::Regular), Some(0));
    // But a must-have without tokens holds the request back.
    let leaseholder_slow = three().with_must_have(s(3));
    assert!(matches!(
        admit(&mut fc, t(0), 2, Class::Regular, MIB, &leaseholder_slow),
        Ok(Output::Queued { .. })
    ));
    // And without a quorum it waits too.
    exhaust(&mut fc, s(2), pos(2));
    assert!(matches!(
        admit(
            &mut fc,
            t(0),
            3,
            Class::Regular,
            MIB,
            &Targets::majority(&[s(2), s(3), s(4)])
        ),
        Ok(Output::Queued { .. })
    ));
    fc.check_invariants().unwrap();
}

#[test]
fn elastic_waits_for_every_replicating_target_and_disconnect_unblocks_it() {
    let mut fc = controller(Config::default(), 3);
    fc.deduct(t(0), s(3), Class::Elastic, pos(1), 8 * MIB)
        .unwrap();
    assert!(matches!(
        admit(&mut fc, t(0), 1, Class::Elastic, MIB, &three()),
        Ok(Output::Queued { .. })
    ));
    fc.disconnect_stream(t(1), s(3)).unwrap();
    let out = outputs(&mut fc);
    let Some(Output::Admitted { grant, .. }) = out.first() else {
        panic!("expected an admission, got {out:?}");
    };
    assert_eq!(grant.charged, vec![s(1), s(2)]);
    assert_eq!(grant.waited, Duration::from_secs(1));
    let m = fc.metrics();
    assert_eq!(m.elastic.requests_bypassed, 1);
    assert_eq!(m.elastic.tokens_unaccounted, 8 * MIB);
    assert_eq!(m.elastic.wait_duration_ns.count, 1);
    assert_eq!(m.elastic.wait_duration_ns.max, 1_000_000_000);
    assert_eq!(fc.tracked(s(3), Class::Elastic), Some(0));
    fc.check_invariants().unwrap();
}

#[test]
fn regular_is_served_before_elastic() {
    let mut fc = controller(Config::default(), 1);
    let one = Targets::majority(&[s(1)]);
    exhaust(&mut fc, s(1), pos(1));
    admit(&mut fc, t(0), 1, Class::Elastic, MIB, &one).unwrap();
    admit(&mut fc, t(0), 2, Class::Regular, MIB, &one).unwrap();
    // 16 MiB come back: regular goes first; the elastic pool is then 8 - 1 MiB, so elastic too.
    fc.handle_admitted(t(1), s(1), Class::Regular, pos(1))
        .unwrap();
    assert_eq!(admitted_ids(&outputs(&mut fc)), vec![2, 1]);
    fc.check_invariants().unwrap();
}

#[test]
fn waiters_of_a_class_are_admitted_in_order() {
    let mut fc = controller(Config::default(), 1);
    let one = Targets::majority(&[s(1)]);
    fc.deduct(t(0), s(1), Class::Regular, pos(1), MIB).unwrap();
    fc.deduct(t(0), s(1), Class::Regular, pos(2), 15 * MIB)
        .unwrap();
    for id in 1..=5 {
        admit(&mut fc, t(0), id, Class::Regular, 3 * MIB, &one).unwrap();
    }
    // A newcomer queues behind them even though it is small.
    assert!(matches!(
        admit(&mut fc, t(0), 6, Class::Regular, 1, &one),
        Ok(Output::Queued { .. })
    ));
    fc.handle_admitted(t(1), s(1), Class::Regular, pos(1))
        .unwrap();
    assert_eq!(admitted_ids(&outputs(&mut fc)), vec![1]);
    fc.handle_admitted(t(1), s(1), Class::Regular, pos(2))
        .unwrap();
    // 16 MiB back, 2 MiB in debt before: the pool reaches 14 MiB, enough for the next five.
    assert_eq!(admitted_ids(&outputs(&mut fc)), vec![2, 3, 4, 5, 6]);
    fc.check_invariants().unwrap();
}

#[test]
fn the_queue_is_bounded_with_typed_rejections() {
    let config = Config {
        max_waiting: 2,
        max_waiting_bytes: 3 * MIB,
        max_in_flight: 4,
        ..Config::default()
    };
    let mut fc = controller(config, 1);
    let one = Targets::majority(&[s(1)]);
    exhaust(&mut fc, s(1), pos(1));
    let ask =
        |fc: &mut FlowControl, id, bytes| admit(fc, t(0), id, Class::Regular, bytes, &one).unwrap();
    assert!(matches!(ask(&mut fc, 1, 2 * MIB), Output::Queued { .. }));
    assert_eq!(
        ask(&mut fc, 2, 2 * MIB),
        Output::Rejected {
            id: RequestId(2),
            reason: Rejection::QueueBytesFull
        }
    );
    assert!(matches!(ask(&mut fc, 3, MIB), Output::Queued { .. }));
    assert_eq!(
        ask(&mut fc, 4, 1),
        Output::Rejected {
            id: RequestId(4),
            reason: Rejection::QueueFull
        }
    );
    assert_eq!(fc.waiting_bytes(), 3 * MIB);
    assert_eq!(fc.metrics().regular.requests_errored, 2);
    // In flight counts admitted, unbound requests too.
    fc.handle_admitted(t(0), s(1), Class::Regular, pos(1))
        .unwrap();
    assert_eq!(outputs(&mut fc).len(), 2);
    assert!(matches!(ask(&mut fc, 5, 1), Output::Admitted { .. }));
    assert!(matches!(ask(&mut fc, 6, 1), Output::Admitted { .. }));
    assert_eq!(
        ask(&mut fc, 7, 1),
        Output::Rejected {
            id: RequestId(7),
            reason: Rejection::TooManyInFlight
        }
    );
    fc.release(t(0), RequestId(5)).unwrap();
    assert!(matches!(ask(&mut fc, 7, 1), Output::Admitted { .. }));
    fc.check_invariants().unwrap();
}

#[test]
fn undrained_outcomes_hold_their_queue_slot() {
    let config = Config {
        max_waiting: 1,
        ..Config::default()
    };
    let mut fc = controller(config, 1);
    let one = Targets::majority(&[s(1)]);
    exhaust(&mut fc, s(1), pos(1));
    assert!(matches!(
        admit(&mut fc, t(0), 1, Class::Regular, MIB, &one),
        Ok(Output::Queued { .. })
    ));
    fc.handle_admitted(t(0), s(1), Class::Regular, pos(1))
        .unwrap();
    exhaust(&mut fc, s(1), pos(2));
    // The first request's outcome is undrained: no request gets in, not even a heartbeat, and
    // the refusal changes nothing.
    let before = fc.metrics();
    for class in [Class::Regular, Class::Control] {
        assert_eq!(
            fc.admit(t(0), RequestId(2), class, MIB, &one),
            Err(FlowError::Undrained)
        );
    }
    assert_eq!(FlowError::Undrained.kind(), crate::error::ErrorKind::Limit);
    assert_eq!(fc.metrics(), before);
    assert_eq!(fc.waiting(), 0);
    assert_eq!(admitted_ids(&outputs(&mut fc)), vec![1]);
    assert!(matches!(
        admit(&mut fc, t(0), 2, Class::Regular, MIB, &one).unwrap(),
        Output::Queued { .. }
    ));
}

#[test]
fn waits_time_out_at_their_deadline() {
    let mut fc = controller(Config::default(), 1);
    let one = Targets::majority(&[s(1)]);
    exhaust(&mut fc, s(1), pos(1));
    assert_eq!(fc.poll_timeout(), None);
    assert_eq!(
        admit(&mut fc, t(1), 1, Class::Elastic, 1, &one),
        Ok(Output::Queued {
            id: RequestId(1),
            deadline: t(11)
        })
    );
    admit(&mut fc, t(2), 2, Class::Regular, 1, &one).unwrap();
    assert_eq!(fc.poll_timeout(), Some(t(11)));
    fc.handle_timeout(t(10));
    assert!(outputs(&mut fc).is_empty());
    fc.handle_timeout(t(11));
    assert_eq!(
        outputs(&mut fc),
        vec![Output::Rejected {
            id: RequestId(1),
            reason: Rejection::TimedOut
        }]
    );
    assert_eq!(fc.poll_timeout(), Some(t(12)));
    fc.cancel(t(11), RequestId(2)).unwrap();
    assert_eq!(fc.poll_timeout(), None);
    assert_eq!(
        fc.cancel(t(11), RequestId(2)),
        Err(FlowError::UnknownRequest(2))
    );
    fc.check_invariants().unwrap();
}

#[test]
fn tokens_held_across_a_disconnect_are_not_returned_twice() {
    let mut fc = controller(Config::default(), 3);
    admitted(admit(&mut fc, t(0), 1, Class::Regular, MIB, &three()).unwrap());
    admitted(admit(&mut fc, t(0), 2, Class::Regular, MIB, &three()).unwrap());
    fc.disconnect_stream(t(0), s(1)).unwrap();
    fc.remove_stream(t(0), s(2)).unwrap();
    fc.connect_stream(t(0), s(1), pos(0)).unwrap();
    fc.connect_stream(t(0), s(2), pos(0)).unwrap();
    fc.bind(t(0), RequestId(1), pos(1)).unwrap();
    fc.release(t(0), RequestId(2)).unwrap();
    assert_eq!(fc.available(s(1), Class::Regular), Some(16 * MIB as i64));
    assert_eq!(fc.available(s(2), Class::Regular), Some(16 * MIB as i64));
    assert_eq!(fc.tracked(s(3), Class::Regular), Some(MIB));
    assert_eq!(
        fc.handle_admitted(t(0), s(3), Class::Regular, pos(1)),
        Ok(MIB)
    );
    fc.check_invariants().unwrap();
}

#[test]
fn reports_below_the_reconnect_position_are_stale() {
    let mut fc = controller(Config::default(), 1);
    fc.deduct(t(0), s(1), Class::Regular, pos(5), MIB).unwrap();
    fc.disconnect_stream(t(0), s(1)).unwrap();
    assert_eq!(
        fc.handle_admitted(t(0), s(1), Class::Regular, pos(5)),
        Ok(0)
    );
    fc.connect_stream(t(0), s(1), pos(10)).unwrap();
    assert_eq!(
        fc.deduct(t(0), s(1), Class::Regular, pos(9), MIB),
        Ok(Deduction::AlreadyAdmitted)
    );
    fc.deduct(t(0), s(1), Class::Regular, pos(11), MIB).unwrap();
    assert_eq!(
        fc.handle_admitted(t(0), s(1), Class::Regular, pos(10)),
        Ok(0)
    );
    assert_eq!(
        fc.handle_admitted(t(0), s(1), Class::Regular, pos(11)),
        Ok(MIB)
    );
    assert_eq!(
        fc.handle_admitted(t(0), s(99), Class::Regular, pos(11)),
        Ok(0)
    );
    fc.check_invariants().unwrap();
}

#[test]
fn misuse_is_a_typed_error_and_changes_nothing() {
    let mut fc = controller(Config::default(), 2);
    let two = Targets::majority(&[s(1), s(2)]);
    let go = |fc: &mut FlowControl, id, class, bytes, targets: &Targets| {
        admit(fc, t(0), id, class, bytes, targets)
    };
    assert_eq!(
        go(&mut fc, 1, Class::Regular, 0, &two),
        Err(FlowError::ZeroBytes)
    );
    assert!(matches!(
        go(&mut fc, 1, Class::Elastic, 9 * MIB, &two),
        Err(FlowError::TooLarge { .. })
    ));
    assert_eq!(
        go(&mut fc, 1, Class::Regular, 1, &Targets::new(1)),
        Err(FlowError::NoTargets)
    );
    assert_eq!(
        go(
            &mut fc,
            1,
            Class::Regular,
            1,
            &Targets::new(3).with_replica(s(1)).with_replica(s(2))
        ),
        Err(FlowError::InvalidQuorum {
            quorum: 3,
            replicas: 2
        })
    );
    assert_eq!(
        go(
            &mut fc,
            1,
            Class::Regular,
            1,
            &Targets::new(1).with_replica(s(1)).with_replica(s(1))
        ),
        Err(FlowError::DuplicateTarget(s(1)))
    );
    admitted(go(&mut fc, 1, Class::Regular, 1, &two).unwrap());
    assert_eq!(
        go(&mut fc, 1, Class::Regular, 1, &two),
        Err(FlowError::DuplicateRequest(1))
    );
    assert_eq!(
        fc.deduct(t(0), s(1), Class::Control, pos(1), 1),
        Err(FlowError::ControlClass)
    );
    assert_eq!(
        fc.connect_stream(t(0), s(1), pos(0)),
        Err(FlowError::AlreadyConnected(s(1)))
    );
    assert_eq!(
        fc.remove_stream(t(0), s(7)),
        Err(FlowError::UnknownStream(s(7)))
    );
    assert_eq!(
        fc.bind(t(0), RequestId(9), pos(1)),
        Err(FlowError::UnknownRequest(9))
    );
    assert_eq!(fc.tracked(s(1), Class::Regular), Some(1));
    fc.check_invariants().unwrap();
}

#[test]
fn metrics_report_gauges_and_counters() {
    let mut fc = controller(Config::default(), 2);
    exhaust(&mut fc, s(2), pos(1));
    let m = fc.metrics();
    assert_eq!(m.regular.stream_count, 2);
    assert_eq!(m.regular.blocked_stream_count, 1);
    assert_eq!(m.elastic.blocked_stream_count, 1);
    assert_eq!(m.regular.tokens_available, 16 * MIB as i64);
    assert_eq!(m.regular.tokens_deducted, 16 * MIB);
    fc.handle_admitted(t(0), s(2), Class::Regular, pos(1))
        .unwrap();
    let m = fc.metrics();
    assert_eq!(m.regular.tokens_returned, 16 * MIB);
    assert_eq!(m.regular.tokens_unaccounted, 0);
    assert_eq!(m.regular.blocked_stream_count, 0);
}

#[test]
fn every_refusal_has_a_kind() {
    use crate::error::ErrorKind;
    assert_eq!(FlowError::TooManyStreams(1).kind(), ErrorKind::Limit);
    assert_eq!(FlowError::UnknownRequest(1).kind(), ErrorKind::Usage);
    assert_eq!(FlowError::ControlClass.kind(), ErrorKind::Usage);
}

#[test]
fn time_going_backwards_is_no_time_passing() {
    let mut fc = controller(Config::default(), 1);
    let one = Targets::majority(&[s(1)]);
    exhaust(&mut fc, s(1), pos(1));
    admit(&mut fc, t(5), 1, Class::Regular, 1, &one).unwrap();
    // A later call with an earlier clock counts as at 5 s: the deadline stays at 15 s.
    assert_eq!(
        admit(&mut fc, t(1), 2, Class::Regular, 1, &one),
        Ok(Output::Queued {
            id: RequestId(2),
            deadline: t(15)
        })
    );
    fc.handle_admitted(t(2), s(1), Class::Regular, pos(1))
        .unwrap();
    let waits: Vec<Duration> = outputs(&mut fc)
        .into_iter()
        .map(|o| admitted(o).waited)
        .collect();
    assert_eq!(waits, vec![Duration::ZERO, Duration::ZERO]);
}

#[test]
fn a_refused_call_does_not_move_the_clock() {
    let mut fc = controller(Config::default(), 1);
    let one = Targets::majority(&[s(1)]);
    exhaust(&mut fc, s(1), pos(1));
    assert_eq!(
        fc.remove_stream(t(50), s(9)),
        Err(FlowError::UnknownStream(s(9)))
    );
    assert_eq!(
        admit(&mut fc, t(50), 1, Class::Regular, 0, &one),
        Err(FlowError::ZeroBytes)
    );
    // Had either refusal taken in its 50 s, the deadline would be 60 s.
    assert_eq!(
        admit(&mut fc, t(1), 1, Class::Regular, 1, &one),
        Ok(Output::Queued {
            id: RequestId(1),
            deadline: t(11)
        })
    );
}
