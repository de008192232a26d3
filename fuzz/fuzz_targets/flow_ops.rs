//! Random operation sequences against the flow controller: after every step the token
//! accounting must balance, control traffic must never wait, every admission has exactly one
//! outcome, and the queue and the undrained outputs must stay in bounds.
#![no_main]

use arbitrary::Arbitrary;
use core::time::Duration;
use libfuzzer_sys::fuzz_target;
use weir::flow::{
    Class, Config, FlowControl, FlowError, LogPosition, Output, RequestId, StreamId, Targets,
};
use weir::time::Instant;

#[derive(Arbitrary, Debug)]
enum Op {
    Connect {
        stream: u8,
        index: u8,
    },
    Disconnect {
        stream: u8,
    },
    Remove {
        stream: u8,
    },
    Admit {
        id: u8,
        class: Class,
        bytes: u16,
        replicas: Vec<(u8, bool)>,
        quorum: u8,
    },
    Bind {
        id: u8,
        term: u8,
        index: u8,
    },
    Release {
        id: u8,
    },
    Cancel {
        id: u8,
    },
    Deduct {
        stream: u8,
        class: Class,
        index: u8,
        bytes: u16,
    },
    Admitted {
        stream: u8,
        class: Class,
        term: u8,
        index: u8,
    },
    Advance {
        millis: u16,
    },
    Poll,
}

fn stream(n: u8) -> StreamId {
    StreamId::new(1, u64::from(n % 6))
}

fuzz_target!(|ops: Vec<Op>| {
    let mut config = Config::default();
    config.regular_tokens = 4_000;
    config.elastic_tokens = 2_000;
    config.max_waiting = 8;
    config.max_waiting_bytes = 6_000;
    config.max_in_flight = 24;
    config.max_wait = Duration::from_millis(500);
    config.max_streams = 5;
    config.max_targets = 4;
    let mut fc = FlowControl::new(config.clone());
    let mut now = Instant::ZERO;
    for op in ops {
        match op {
            Op::Connect { stream: s, index } => {
                let _ = fc.connect_stream(now, stream(s), LogPosition::new(1, u64::from(index)));
            }
            Op::Disconnect { stream: s } => {
                let _ = fc.disconnect_stream(now, stream(s));
            }
            Op::Remove { stream: s } => {
                let _ = fc.remove_stream(now, stream(s));
            }
            Op::Admit {
                id,
                class,
                bytes,
                replicas,
                quorum,
            } => {
                let mut targets = Targets::new(usize::from(quorum % 5));
                for (s, must_have) in replicas {
                    targets = if must_have {
                        targets.with_must_have(stream(s))
                    } else {
                        targets.with_replica(stream(s))
                    };
                }
                let id = RequestId(u64::from(id));
                let mut answer = fc.admit(now, id, class, u64::from(bytes), &targets);
                if answer == Err(FlowError::Undrained) {
                    // Refused while earlier outputs wait: once they are drained it goes in.
                    while fc.poll_output().is_some() {}
                    answer = fc.admit(now, id, class, u64::from(bytes), &targets);
                    assert_ne!(answer, Err(FlowError::Undrained));
                }
                if answer.is_ok() {
                    // Admission needs drained outputs, so its outcome is the only one.
                    let outcome = fc.poll_output().expect("an admission has an outcome");
                    let about = match &outcome {
                        Output::Admitted { id, .. }
                        | Output::Queued { id, .. }
                        | Output::Rejected { id, .. } => *id,
                        _ => unreachable!("no other output exists"),
                    };
                    assert_eq!(about, id);
                    if class == Class::Control {
                        assert!(
                            matches!(outcome, Output::Admitted { .. }),
                            "control waited: {outcome:?}"
                        );
                    }
                }
                assert_eq!(fc.poll_output(), None);
            }
            Op::Bind { id, term, index } => {
                let position = LogPosition::new(u64::from(term % 3), u64::from(index));
                let _ = fc.bind(now, RequestId(u64::from(id)), position);
            }
            Op::Release { id } => {
                let _ = fc.release(now, RequestId(u64::from(id)));
            }
            Op::Cancel { id } => {
                let _ = fc.cancel(now, RequestId(u64::from(id)));
            }
            Op::Deduct {
                stream: s,
                class,
                index,
                bytes,
            } => {
                let position = LogPosition::new(1, u64::from(index));
                let _ = fc.deduct(now, stream(s), class, position, u64::from(bytes));
            }
            Op::Admitted {
                stream: s,
                class,
                term,
                index,
            } => {
                let position = LogPosition::new(u64::from(term % 3), u64::from(index));
                let _ = fc.handle_admitted(now, stream(s), class, position);
            }
            Op::Advance { millis } => {
                now = now + Duration::from_millis(u64::from(millis));
                if fc.poll_timeout().is_some_and(|deadline| deadline <= now) {
                    fc.handle_timeout(now);
                }
                assert!(fc.poll_timeout().is_none_or(|deadline| deadline > now));
            }
            Op::Poll => {
                let mut drained = 0;
                while fc.poll_output().is_some() {
                    drained += 1;
                }
                // One outcome per waiting request, plus the admission's own.
                assert!(drained <= config.max_waiting + 1);
            }
        }
        if let Err(violation) = fc.check_invariants() {
            panic!("{violation}");
        }
        assert!(fc.waiting() <= config.max_waiting);
        assert!(fc.waiting_bytes() <= config.max_waiting_bytes);
        assert!(fc.waiting() + fc.unbound() <= config.max_in_flight);
    }
});
