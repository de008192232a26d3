//! Operation sequences on a span frontier, checked after every step against a brute-force model:
//! a map from every unit key of a 32-key space to its timestamp.
#![no_main]

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use weir::frontier::{Frontier, FrontierConfig, FrontierError, Span};

const KEYS: u8 = 32;

#[derive(Arbitrary, Debug)]
enum Op {
    Add { a: u8, b: u8, ts: u8 },
    Forward { a: u8, b: u8, ts: u8 },
    Checkpoint { budget: u8 },
    LegacyCheckpoint { budget: u8 },
}

#[derive(Arbitrary, Debug)]
struct Input {
    initial: Vec<(u8, u8)>,
    initial_ts: u8,
    max_entries: u8,
    ops: Vec<Op>,
}

/// Unit key `k` stands for the keys `[k, k+1)`: every span boundary is a one-byte key.
type Model = BTreeMap<u8, u64>;

fn span(a: u8, b: u8) -> Option<Span> {
    let (a, b) = (a % (KEYS + 1), b % (KEYS + 1));
    Span::new([a.min(b)], [a.max(b)]).ok()
}

/// The model as maximal runs of consecutive keys at one timestamp: what the frontier's entries
/// must be.
fn runs(model: &Model) -> Vec<(u8, u8, u64)> {
    let mut out: Vec<(u8, u8, u64)> = Vec::new();
    for (&k, &t) in model {
        match out.last_mut() {
            Some((_, end, ts)) if *end == k && *ts == t => *end = k + 1,
            _ => out.push((k, k + 1, t)),
        }
    }
    out
}

fn entries(f: &Frontier<u64>) -> Vec<(u8, u8, u64)> {
    f.entries()
        .map(|(s, t)| (s.start()[0], s.end()[0], t))
        .collect()
}

fn check(f: &Frontier<u64>, model: &Model) {
    assert_eq!(entries(f), runs(model));
    assert_eq!(f.frontier(), model.values().min().copied());
    assert_eq!(f.newest(), model.values().max().copied());
    assert_eq!(f.len(), runs(model).len());
    if let Some((s, t)) = f.frontier_span() {
        assert_eq!(Some(t), f.frontier());
        assert_eq!(model.get(&s.start()[0]).copied(), Some(t));
    }
}

/// Restores `checkpointed` into a fresh frontier of the same spans at the high-water, and checks
/// that every key lands between the high-water and its original timestamp.
fn check_restore(f: &Frontier<u64>, model: &Model, restore: impl FnOnce(&mut Frontier<u64>)) {
    let Some(&high_water) = model.values().min() else {
        return;
    };
    let spans = model.keys().map(|&k| Span::new([k], [k + 1]).unwrap());
    let mut fresh = Frontier::from_spans(FrontierConfig::default(), spans, high_water).unwrap();
    restore(&mut fresh);
    for (&k, &t) in model {
        let got = fresh.get(&[k]).unwrap();
        assert!(
            high_water <= got && got <= t,
            "key {k}: {got} not in [{high_water}, {t}]"
        );
    }
    assert_eq!(fresh.len(), {
        let restored: Model = model
            .keys()
            .map(|&k| (k, fresh.get(&[k]).unwrap()))
            .collect();
        runs(&restored).len()
    });
    let _ = f;
}

fuzz_target!(|input: Input| {
    let config = FrontierConfig::default().with_max_entries(usize::from(input.max_entries.max(1)));
    let initial: Vec<Span> = input
        .initial
        .iter()
        .filter_map(|&(a, b)| span(a, b))
        .collect();
    let initial_ts = u64::from(input.initial_ts);
    let mut model = Model::new();
    for s in &initial {
        for k in s.start()[0]..s.end()[0] {
            model.insert(k, initial_ts);
        }
    }
    let mut f = match Frontier::from_spans(config, initial, initial_ts) {
        Ok(f) => f,
        Err(FrontierError::TooManyEntries { .. }) => {
            assert!(runs(&model).len() > usize::from(input.max_entries.max(1)));
            return;
        }
        Err(e) => panic!("unexpected {e}"),
    };
    check(&f, &model);
    for op in input.ops.into_iter().take(256) {
        match op {
            Op::Add { a, b, ts } | Op::Forward { a, b, ts } if span(a, b).is_none() => {
                let (a, b) = (a % (KEYS + 1), b % (KEYS + 1));
                assert!(a == b, "span({a}, {b}) refused");
                let _ = ts;
            }
            Op::Add { a, b, ts } => {
                let s = span(a, b).unwrap();
                let ts = u64::from(ts);
                let before = entries(&f);
                match f.add(&s, ts) {
                    Ok(()) => {
                        for k in s.start()[0]..s.end()[0] {
                            let t = model.entry(k).or_insert(ts);
                            *t = (*t).max(ts);
                        }
                    }
                    Err(FrontierError::TooManyEntries { .. }) => assert_eq!(entries(&f), before),
                    Err(e) => panic!("unexpected {e}"),
                }
            }
            Op::Forward { a, b, ts } => {
                let s = span(a, b).unwrap();
                let ts = u64::from(ts);
                let before = entries(&f);
                let low = model.values().min().copied();
                match f.forward(&s, ts) {
                    Ok(advanced) => {
                        for k in s.start()[0]..s.end()[0] {
                            if let Some(t) = model.get_mut(&k) {
                                *t = (*t).max(ts);
                            }
                        }
                        let high = model.values().min().copied();
                        assert_eq!(advanced, matches!((low, high), (Some(l), Some(h)) if h > l));
                    }
                    Err(FrontierError::TooManyEntries { limit }) => {
                        assert_eq!(entries(&f), before);
                        assert!(f.len() + 2 > limit);
                    }
                    Err(e) => panic!("unexpected {e}"),
                }
            }
            Op::Checkpoint { budget } => {
                let cp = f.checkpoint(usize::from(budget));
                assert!(cp.key_bytes() <= usize::from(budget));
                for pair in cp.groups.windows(2) {
                    assert!(pair[0].timestamp > pair[1].timestamp);
                }
                for g in &cp.groups {
                    for s in &g.spans {
                        for k in s.start()[0]..s.end()[0] {
                            assert_eq!(model.get(&k), Some(&g.timestamp));
                        }
                    }
                }
                check_restore(&f, &model, |fresh| {
                    fresh.restore(&cp).unwrap();
                });
            }
            Op::LegacyCheckpoint { budget } => {
                let cp = f.legacy_checkpoint(usize::from(budget));
                assert!(cp.key_bytes() <= usize::from(budget));
                check_restore(&f, &model, |fresh| {
                    fresh.restore_legacy(&cp).unwrap();
                });
            }
        }
        check(&f, &model);
    }
});
