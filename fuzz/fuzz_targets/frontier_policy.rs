//! The checkpoint policy driven by resolved spans and time, checked against its rules: high-waters
//! rise, match the frontier, and are at least an interval apart; checkpoints come only while the
//! frontier lags (or, empty, when the lag clears) and restore into a fresh frontier safely.
#![no_main]

use core::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use weir::frontier::{
    CheckpointPolicy, Frontier, FrontierConfig, Output, PolicyConfig, Span, Timestamp,
};
use weir::time::Instant;

const KEYS: u8 = 16;
const SEC: i64 = 1_000_000_000;

#[derive(Arbitrary, Debug)]
enum Op {
    Resolved {
        a: u8,
        b: u8,
        ts_secs: u8,
        after_secs: u8,
    },
    Timeout {
        after_secs: u8,
    },
    FireTimer,
}

#[derive(Arbitrary, Debug)]
struct Input {
    interval_secs: u8,
    lag_secs: u8,
    max_bytes: u8,
    ops: Vec<Op>,
}

/// What the outputs so far allow of the next ones.
struct Checks {
    interval: Duration,
    max_bytes: usize,
    last_high_water: Option<(Instant, Timestamp)>,
    stored_checkpoint: bool,
}

impl Checks {
    /// Drains the policy, checking every output against the rules.
    fn drain(&mut self, policy: &mut CheckpointPolicy, now: Instant) {
        let lagging = policy.is_lagging();
        while let Some(output) = policy.poll_output() {
            match output {
                Output::PersistHighWater(hw) => {
                    assert_eq!(Some(hw), policy.frontier().frontier());
                    if let Some((at, prev)) = self.last_high_water {
                        assert!(hw > prev, "high-water {hw} after {prev}");
                        assert!(
                            now >= at + self.interval,
                            "high-water persisted within the interval"
                        );
                    }
                    self.last_high_water = Some((now, hw));
                }
                Output::PersistCheckpoint(cp) => {
                    if cp.is_empty() && !lagging {
                        assert!(self.stored_checkpoint, "cleared a checkpoint never stored");
                    } else {
                        assert!(lagging, "checkpoint while not lagging");
                    }
                    assert!(cp.key_bytes() <= self.max_bytes);
                    self.stored_checkpoint = !cp.is_empty();
                    // Restore into a fresh frontier at the high-water: every key lands between
                    // the high-water and its current timestamp.
                    let hw = policy.frontier().frontier().unwrap();
                    let mut fresh =
                        Frontier::from_spans(FrontierConfig::default(), [all_keys()], hw).unwrap();
                    fresh.restore(&cp).unwrap();
                    for k in 0..KEYS {
                        let got = fresh.get(&[k]).unwrap();
                        assert!(hw <= got && got <= policy.frontier().get(&[k]).unwrap());
                    }
                }
                _ => unreachable!("no other output exists"),
            }
        }
    }
}

fn all_keys() -> Span {
    Span::new([0], [KEYS]).unwrap()
}

fuzz_target!(|input: Input| {
    let interval = Duration::from_secs(u64::from(input.interval_secs));
    let lag = Duration::from_secs(u64::from(input.lag_secs));
    let config = PolicyConfig::default()
        .with_interval(interval)
        .with_lag_threshold(lag)
        .with_max_bytes(usize::from(input.max_bytes));
    let frontier =
        Frontier::from_spans(FrontierConfig::default(), [all_keys()], Timestamp::ZERO).unwrap();
    let mut now = Instant::ZERO;
    let mut policy = CheckpointPolicy::new(now, config, frontier);
    let mut checks = Checks {
        interval,
        max_bytes: usize::from(input.max_bytes),
        last_high_water: None,
        // A new policy assumes an earlier run may have left a checkpoint.
        stored_checkpoint: true,
    };
    checks.drain(&mut policy, now);
    for op in input.ops.into_iter().take(200) {
        match op {
            Op::Resolved {
                a,
                b,
                ts_secs,
                after_secs,
            } => {
                now = now + Duration::from_secs(u64::from(after_secs));
                let (a, b) = (a % (KEYS + 1), b % (KEYS + 1));
                let Ok(span) = Span::new([a.min(b)], [a.max(b)]) else {
                    continue;
                };
                let ts = Timestamp::new(i64::from(ts_secs) * SEC, 0);
                policy.handle_resolved(now, &span, ts).unwrap();
            }
            Op::Timeout { after_secs } => {
                now = now + Duration::from_secs(u64::from(after_secs));
                policy.handle_timeout(now);
            }
            Op::FireTimer => {
                if let Some(at) = policy.poll_timeout() {
                    now = now.max(at);
                    policy.handle_timeout(now);
                }
            }
        }
        checks.drain(&mut policy, now);
        if let Some(at) = policy.poll_timeout() {
            // Everything due is decided on the input that made it due.
            assert!(at > now, "deadline {at:?} not after now {now:?}");
        }
    }
});
