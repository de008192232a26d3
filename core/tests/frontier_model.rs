//! The span frontier against a brute-force model: a map from every unit key of a small key space
//! to its timestamp. Unit key `k` stands for the byte keys `[k, k+1)`, so every span boundary is a
//! one-byte key.

use std::cell::Cell;
use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
use weir::frontier::{Frontier, FrontierConfig, Span, Timestamp};

const KEYS: u8 = 24;

/// A checkpoint budget that cuts nothing: twice the most key bytes a checkpoint can need (at most
/// `KEYS` spans of two one-byte keys).
const FULL_BUDGET: usize = 2 * 2 * KEYS as usize;

type Model = BTreeMap<u8, Timestamp>;

#[derive(Clone, Debug)]
enum Op {
    Add(u8, u8, Timestamp),
    Forward(u8, u8, Timestamp),
    Checkpoint(usize),
    LegacyCheckpoint(usize),
}

fn ts() -> impl Strategy<Value = Timestamp> {
    (0i64..12, 0i32..3).prop_map(|(w, l)| Timestamp::new(w, l))
}

/// Budgets that cut (below a couple of spans' bytes) as often as budgets that hold everything
/// (at and past [`FULL_BUDGET`]).
fn budget() -> impl Strategy<Value = usize> {
    prop_oneof![0usize..24, 24usize..200]
}

fn bounds() -> impl Strategy<Value = (u8, u8)> {
    (0..KEYS, 1..=KEYS).prop_filter_map("empty", |(a, b)| (a < b).then_some((a, b)))
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (bounds(), ts()).prop_map(|((a, b), t)| Op::Add(a, b, t)),
        6 => (bounds(), ts()).prop_map(|((a, b), t)| Op::Forward(a, b, t)),
        1 => budget().prop_map(Op::Checkpoint),
        1 => budget().prop_map(Op::LegacyCheckpoint),
    ]
}

fn span(a: u8, b: u8) -> Span {
    Span::new([a], [b]).unwrap()
}

/// Maximal runs of consecutive keys at one timestamp: the merged representation.
fn runs(model: &Model) -> Vec<(u8, u8, Timestamp)> {
    let mut out: Vec<(u8, u8, Timestamp)> = Vec::new();
    for (&k, &t) in model {
        match out.last_mut() {
            Some((_, end, ts)) if *end == k && *ts == t => *end = k + 1,
            _ => out.push((k, k + 1, t)),
        }
    }
    out
}

fn entries(f: &Frontier) -> Vec<(u8, u8, Timestamp)> {
    f.entries()
        .map(|(s, t)| (s.start()[0], s.end()[0], t))
        .collect()
}

/// A fresh frontier over the model's keys at its high-water, as a restarted job would build.
fn fresh(model: &Model) -> Option<(Frontier<Timestamp>, Timestamp)> {
    let high_water = *model.values().min()?;
    let spans = model.keys().map(|&k| span(k, k + 1));
    let f = Frontier::from_spans(FrontierConfig::default(), spans, high_water).unwrap();
    Some((f, high_water))
}

fn assert_restored(model: &Model, restored: &Frontier<Timestamp>, high_water: Timestamp) {
    for (&k, &t) in model {
        let got = restored.get(&[k]).unwrap();
        assert!(
            high_water <= got && got <= t,
            "key {k}: {got} outside [{high_water}, {t}]"
        );
    }
}

/// Random operations against the model. A checkpoint with a budget that holds everything must
/// restore everything; the test proves that this check ran, not only that it passed.
#[test]
fn frontier_matches_model() {
    let full_restores = Cell::new(0u32);
    let mut runner = TestRunner::new(ProptestConfig::with_cases(512));
    let input = (
        proptest::collection::vec(bounds(), 0..4),
        ts(),
        proptest::collection::vec(op(), 0..60),
    );
    runner
        .run(&input, |(initial, initial_ts, ops)| {
            run_case(initial, initial_ts, ops, &full_restores)
        })
        .unwrap();
    assert!(
        full_restores.get() > 0,
        "no case checkpointed with a budget of {FULL_BUDGET} bytes or more"
    );
}

fn run_case(
    initial: Vec<(u8, u8)>,
    initial_ts: Timestamp,
    ops: Vec<Op>,
    full_restores: &Cell<u32>,
) -> Result<(), TestCaseError> {
    let mut model = Model::new();
    for &(a, b) in &initial {
        for k in a..b {
            model.insert(k, initial_ts);
        }
    }
    let spans = initial.iter().map(|&(a, b)| span(a, b));
    let mut f = Frontier::from_spans(FrontierConfig::default(), spans, initial_ts).unwrap();
    for op in ops {
        match op {
            Op::Add(a, b, t) => {
                f.add(&span(a, b), t).unwrap();
                for k in a..b {
                    let v = model.entry(k).or_insert(t);
                    *v = (*v).max(t);
                }
            }
            Op::Forward(a, b, t) => {
                let before = model.values().min().copied();
                for k in a..b {
                    if let Some(v) = model.get_mut(&k) {
                        *v = (*v).max(t);
                    }
                }
                let after = model.values().min().copied();
                let advanced = f.forward(&span(a, b), t).unwrap();
                prop_assert_eq!(
                    advanced,
                    matches!((before, after), (Some(x), Some(y)) if y > x)
                );
            }
            Op::Checkpoint(budget) => {
                let cp = f.checkpoint(budget);
                prop_assert!(cp.key_bytes() <= budget);
                if let Some((mut restored, high_water)) = fresh(&model) {
                    restored.restore(&cp).unwrap();
                    assert_restored(&model, &restored, high_water);
                    if budget >= FULL_BUDGET {
                        // Nothing was cut: the restart gets everything back.
                        full_restores.set(full_restores.get() + 1);
                        prop_assert_eq!(cp.omitted_spans, 0);
                        prop_assert_eq!(entries(&restored), runs(&model));
                    }
                }
            }
            Op::LegacyCheckpoint(budget) => {
                let cp = f.legacy_checkpoint(budget);
                prop_assert!(cp.key_bytes() <= budget);
                if let Some((mut restored, high_water)) = fresh(&model) {
                    restored.restore_legacy(&cp).unwrap();
                    assert_restored(&model, &restored, high_water);
                }
            }
        }
        prop_assert_eq!(entries(&f), runs(&model));
        prop_assert_eq!(f.frontier(), model.values().min().copied());
        prop_assert_eq!(f.newest(), model.values().max().copied());
        if let Some((s, t)) = f.frontier_span() {
            prop_assert_eq!(Some(t), f.frontier());
            prop_assert_eq!(model.get(&s.start()[0]).copied(), Some(t));
        }
        for k in 0..KEYS {
            prop_assert_eq!(f.get(&[k]), model.get(&k).copied());
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Entries inside a span are the model's runs clipped to it.
    #[test]
    fn entries_in_is_clipped(ops in proptest::collection::vec((bounds(), ts()), 0..30),
                             (a, b) in bounds()) {
        let mut f = Frontier::from_spans(FrontierConfig::default(), [span(0, KEYS)], Timestamp::ZERO).unwrap();
        let mut model: Model = (0..KEYS).map(|k| (k, Timestamp::ZERO)).collect();
        for ((x, y), t) in ops {
            f.forward(&span(x, y), t).unwrap();
            for k in x..y {
                let v = model.get_mut(&k).unwrap();
                *v = (*v).max(t);
            }
        }
        let inside: Model = model.range(a..b).map(|(&k, &t)| (k, t)).collect();
        let got: Vec<_> = f.entries_in(&span(a, b)).map(|(s, t)| (s.start()[0], s.end()[0], t)).collect();
        prop_assert_eq!(got, runs(&inside));
    }

    /// Any byte strings: the frontier agrees with a model over the distinct boundary keys.
    #[test]
    fn arbitrary_byte_keys(ops in proptest::collection::vec(
        (proptest::collection::vec(0u8..4, 0..20), proptest::collection::vec(0u8..4, 0..20), 0u64..8), 0..40)) {
        let mut f: Frontier<u64> = Frontier::default();
        let mut applied: Vec<(Span, u64)> = Vec::new();
        for (x, y, t) in ops {
            let Ok(s) = Span::new(&x, &y) else { continue };
            f.add(&s, t).unwrap();
            applied.push((s, t));
        }
        // Every key ever used as a boundary, plus one key just after each: a key's timestamp is the
        // highest timestamp of any span containing it.
        let mut probes: Vec<Vec<u8>> = Vec::new();
        for (s, _) in &applied {
            for k in [s.start(), s.end()] {
                probes.push(k.to_vec());
                let mut after = k.to_vec();
                after.push(0);
                probes.push(after);
            }
        }
        for k in probes {
            let want = applied.iter().filter(|(s, _)| s.contains(&k)).map(|(_, t)| *t).max();
            prop_assert_eq!(f.get(&k), want, "key {:?}", k);
        }
        let all: Vec<_> = f.entries().collect();
        for pair in all.windows(2) {
            prop_assert!(pair[0].0.end() <= pair[1].0.start());
            prop_assert!(pair[0].0.end() != pair[1].0.start() || pair[0].1 != pair[1].1);
        }
    }
}
