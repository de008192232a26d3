//! Unit tests of the frontier, checkpoints and the policy, including the failures CockroachDB's
//! frontier once had.

use alloc::collections::BTreeMap;
use alloc::vec;
use alloc::vec::Vec;
use core::time::Duration;

use super::*;
use crate::time::Instant;

fn ts(wall: i64) -> Timestamp {
    Timestamp::new(wall, 0)
}

fn span(a: &str, b: &str) -> Span {
    Span::new(a, b).unwrap()
}

fn frontier(spans: &[(&str, &str)], at: i64) -> Frontier<Timestamp> {
    let spans = spans.iter().map(|(a, b)| span(a, b));
    Frontier::from_spans(FrontierConfig::default(), spans, ts(at)).unwrap()
}

fn dump(f: &Frontier<Timestamp>) -> Vec<(Vec<u8>, Vec<u8>, i64)> {
    f.entries()
        .map(|(s, t)| (s.start().to_vec(), s.end().to_vec(), t.wall))
        .collect()
}

fn e(a: &str, b: &str, t: i64) -> (Vec<u8>, Vec<u8>, i64) {
    (a.as_bytes().to_vec(), b.as_bytes().to_vec(), t)
}

#[test]
fn from_spans_unions_overlapping_input() {
    let f = frontier(&[("c", "e"), ("a", "b"), ("d", "g"), ("b", "c")], 5);
    assert_eq!(dump(&f), vec![e("a", "g", 5)]);
    let f = frontier(&[("a", "b"), ("c", "d")], 5);
    assert_eq!(dump(&f), vec![e("a", "b", 5), e("c", "d", 5)]);
    assert_eq!(
        f.frontier_span().map(|(s, _)| s.start().to_vec()),
        Some(b"a".to_vec())
    );
}

#[test]
fn forward_splits_partial_overlaps_and_ignores_untracked_keys() {
    let mut f = frontier(&[("b", "f"), ("h", "k")], 1);
    assert!(!f.forward(&span("a", "c"), ts(3)).unwrap());
    assert!(!f.forward(&span("e", "i"), ts(4)).unwrap());
    assert_eq!(
        dump(&f),
        vec![
            e("b", "c", 3),
            e("c", "e", 1),
            e("e", "f", 4),
            e("h", "i", 4),
            e("i", "k", 1)
        ]
    );
    assert_eq!(f.get(b"a"), None);
    assert_eq!(f.get(b"g"), None);
    assert_eq!(f.get(b"h"), Some(ts(4)));
}

#[test]
fn forward_never_lowers_and_reports_advances() {
    let mut f = frontier(&[("a", "c")], 5);
    assert!(!f.forward(&span("a", "c"), ts(4)).unwrap());
    assert_eq!(dump(&f), vec![e("a", "c", 5)]);
    assert!(!f.forward(&span("a", "b"), ts(7)).unwrap());
    assert!(f.forward(&span("b", "c"), ts(6)).unwrap());
    assert_eq!(f.frontier(), Some(ts(6)));
    assert_eq!(dump(&f), vec![e("a", "b", 7), e("b", "c", 6)]);
}

#[test]
fn forwarding_to_the_same_timestamp_does_not_split() {
    let mut f = frontier(&[("a", "z")], 5);
    assert!(!f.forward(&span("m", "n"), ts(5)).unwrap());
    assert!(!f.forward(&span("b", "y"), ts(3)).unwrap());
    assert_eq!(dump(&f), vec![e("a", "z", 5)]);
}

#[test]
fn adjacent_entries_merge_when_timestamps_meet() {
    let mut f = frontier(&[("a", "z")], 1);
    f.forward(&span("a", "c"), ts(2)).unwrap();
    f.forward(&span("e", "g"), ts(2)).unwrap();
    assert_eq!(f.len(), 4);
    f.forward(&span("c", "e"), ts(2)).unwrap();
    assert_eq!(dump(&f), vec![e("a", "g", 2), e("g", "z", 1)]);
    assert!(f.forward(&span("g", "z"), ts(2)).unwrap());
    assert_eq!(dump(&f), vec![e("a", "z", 2)]);
}

#[test]
fn more_than_32_nested_entries() {
    // Each forward covers a narrower span at a higher timestamp: 64 levels of nesting.
    let depth: u8 = 64;
    let outer = Span::new([0], [255]).unwrap();
    let mut f = Frontier::from_spans(FrontierConfig::default(), [outer.clone()], ts(0)).unwrap();
    for i in 1..=depth {
        f.forward(&Span::new([i], [255 - i]).unwrap(), ts(i64::from(i)))
            .unwrap();
    }
    assert_eq!(f.len(), 2 * usize::from(depth) + 1);
    assert_eq!(f.frontier(), Some(ts(0)));
    for i in 1..=depth {
        assert_eq!(f.get(&[i]), Some(ts(i64::from(i))));
        assert_eq!(f.get(&[255 - i]), Some(ts(i64::from(i) - 1)));
    }
    // Forward everything to the top: one entry again.
    assert!(f.forward(&outer, ts(i64::from(depth))).unwrap());
    assert_eq!(f.len(), 1);
    assert_eq!(f.frontier_span(), Some((outer, ts(i64::from(depth)))));
}

#[test]
fn add_unions_and_never_lowers() {
    let mut f = frontier(&[("c", "e")], 5);
    f.add(&span("a", "g"), ts(3)).unwrap();
    assert_eq!(
        dump(&f),
        vec![e("a", "c", 3), e("c", "e", 5), e("e", "g", 3)]
    );
    f.add(&span("b", "f"), ts(5)).unwrap();
    assert_eq!(
        dump(&f),
        vec![e("a", "b", 3), e("b", "f", 5), e("f", "g", 3)]
    );
    assert_eq!(f.frontier(), Some(ts(3)));
    let mut empty = Frontier::default();
    empty.add(&span("x", "y"), ts(1)).unwrap();
    assert_eq!(dump(&empty), vec![e("x", "y", 1)]);
}

#[test]
fn entries_in_clips_to_the_span() {
    let mut f = frontier(&[("a", "z")], 1);
    f.forward(&span("c", "f"), ts(2)).unwrap();
    let got: Vec<_> = f
        .entries_in(&span("b", "d"))
        .map(|(s, t)| (s, t.wall))
        .collect();
    assert_eq!(got, vec![(span("b", "c"), 1), (span("c", "d"), 2)]);
    assert_eq!(f.entries_in(&span("0", "1")).count(), 0);
    assert_eq!(f.entries_in(&span("a", "z")).count(), 3);
}

#[test]
fn entry_limit_is_an_explicit_rejection() {
    let config = FrontierConfig { max_entries: 2 };
    let mut f = Frontier::from_spans(config, [span("a", "z")], ts(1)).unwrap();
    f.forward(&span("a", "c"), ts(2)).unwrap();
    let before = dump(&f);
    assert_eq!(
        f.forward(&span("d", "e"), ts(2)),
        Err(FrontierError::TooManyEntries { limit: 2 })
    );
    assert_eq!(
        f.add(&span("0", "1"), ts(1)),
        Err(FrontierError::TooManyEntries { limit: 2 })
    );
    assert_eq!(dump(&f), before);
    // A forward that needs no new entry is still fine at the limit.
    assert!(f.forward(&span("c", "z"), ts(2)).unwrap());
}

#[test]
fn caller_mutating_its_buffers_cannot_corrupt_the_frontier() {
    let mut f: Frontier<Timestamp> = Frontier::default();
    let mut start = b"key-that-is-longer-than-inline-00".to_vec();
    let mut end = b"key-that-is-longer-than-inline-99".to_vec();
    for i in 0..10u8 {
        start[0] = b'a' + i;
        end[0] = b'a' + i;
        f.add(&Span::new(&start, &end).unwrap(), ts(i64::from(i)))
            .unwrap();
        // Scribble over the buffers the span was made from.
        start.iter_mut().for_each(|b| *b = 0xff);
        end.iter_mut().for_each(|b| *b = 0);
        start = b"key-that-is-longer-than-inline-00".to_vec();
        end = b"key-that-is-longer-than-inline-99".to_vec();
    }
    let starts: Vec<u8> = f.entries().map(|(s, _)| s.start()[0]).collect();
    assert_eq!(starts, (b'a'..b'k').collect::<Vec<_>>());
    assert_eq!(f.frontier(), Some(ts(0)));
}

/// A tiny deterministic generator, so the test needs no dependency.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % bound
    }
}

#[test]
fn thousands_of_random_forwards_match_a_model() {
    const KEYS: u64 = 200;
    let key = |k: u64| alloc::format!("{k:04}").into_bytes();
    let mut rng = Lcg(7);
    let mut f = Frontier::from_spans(
        FrontierConfig::default(),
        [Span::new(key(0), key(KEYS)).unwrap()],
        0u64,
    )
    .unwrap();
    let mut model: BTreeMap<u64, u64> = (0..KEYS).map(|k| (k, 0)).collect();
    for round in 0..20_000u64 {
        let a = rng.next(KEYS);
        let b = a + 1 + rng.next((KEYS - a).min(20));
        let t = round / 10 + rng.next(50);
        let before = *model.values().min().unwrap();
        for k in a..b {
            let v = model.get_mut(&k).unwrap();
            *v = (*v).max(t);
        }
        let after = *model.values().min().unwrap();
        let advanced = f.forward(&Span::new(key(a), key(b)).unwrap(), t).unwrap();
        assert_eq!(advanced, after > before, "round {round}");
        assert_eq!(f.frontier(), Some(after), "round {round}");
        if round % 97 == 0 {
            for k in 0..KEYS {
                assert_eq!(
                    f.get(&key(k)),
                    model.get(&k).copied(),
                    "round {round} key {k}"
                );
            }
        }
    }
    let entries: Vec<_> = f.entries().collect();
    for pair in entries.windows(2) {
        assert!(pair[0].0.end() <= pair[1].0.start());
        assert!(pair[0].0.end() != pair[1].0.start() || pair[0].1 != pair[1].1);
    }
}

#[test]
fn checkpoint_groups_by_timestamp_and_keeps_the_furthest_ahead() {
    let mut f = frontier(&[("a", "z")], 1);
    f.forward(&span("b", "c"), ts(5)).unwrap();
    f.forward(&span("d", "e"), ts(9)).unwrap();
    f.forward(&span("f", "g"), ts(5)).unwrap();
    let full = f.checkpoint(usize::MAX);
    assert_eq!(full.groups.len(), 2);
    assert_eq!(full.groups[0].timestamp, ts(9));
    assert_eq!(full.groups[0].spans, vec![span("d", "e")]);
    assert_eq!(full.groups[1].spans, vec![span("b", "c"), span("f", "g")]);
    assert_eq!(
        (full.span_count(), full.key_bytes(), full.omitted_spans),
        (3, 6, 0)
    );

    // Four bytes: the span at 9 first, then the first span at 5 in key order.
    let cut = f.checkpoint(4);
    assert_eq!(cut.span_count(), 2);
    assert_eq!(cut.groups[0].spans, vec![span("d", "e")]);
    assert_eq!(cut.groups[1].spans, vec![span("b", "c")]);
    assert_eq!(cut.omitted_spans, 1);
    assert!(f.checkpoint(1).is_empty());
}

#[test]
fn budget_skips_a_span_too_large_and_keeps_smaller_ones() {
    let mut f = frontier(&[("a", "z")], 1);
    f.forward(&span("b", "bbbbbbbbbb"), ts(9)).unwrap();
    f.forward(&span("c", "d"), ts(9)).unwrap();
    let cut = f.checkpoint(4);
    assert_eq!(cut.groups[0].spans, vec![span("c", "d")]);
    assert_eq!(cut.omitted_spans, 1);
}

#[test]
fn legacy_checkpoint_merges_across_timestamps_at_the_lowest() {
    let mut f = frontier(&[("a", "z")], 1);
    f.forward(&span("b", "c"), ts(5)).unwrap();
    f.forward(&span("c", "d"), ts(9)).unwrap();
    f.forward(&span("f", "g"), ts(7)).unwrap();
    let legacy = f.legacy_checkpoint(usize::MAX);
    assert_eq!(legacy.spans, vec![span("b", "d"), span("f", "g")]);
    assert_eq!(legacy.timestamp, Some(ts(5)));
    // Only the second run fits: its own lowest timestamp is used.
    let cut = f.legacy_checkpoint(2);
    assert_eq!(cut.spans, vec![span("b", "d")]);
    assert_eq!(cut.timestamp, Some(ts(5)));
    let mut long = frontier(&[("a", "z")], 1);
    long.forward(&span("b", "cccc"), ts(5)).unwrap();
    long.forward(&span("f", "g"), ts(7)).unwrap();
    let cut = long.legacy_checkpoint(2);
    assert_eq!(
        (cut.spans, cut.timestamp, cut.omitted_spans),
        (vec![span("f", "g")], Some(ts(7)), 1)
    );

    let mut restarted = frontier(&[("a", "z")], 1);
    restarted.restore_legacy(&legacy).unwrap();
    assert_eq!(restarted.get(b"c"), Some(ts(5)));
    assert_eq!(restarted.get(b"f"), Some(ts(5)));
    assert_eq!(restarted.get(b"e"), Some(ts(1)));
}

#[test]
fn restore_brings_back_each_span_at_its_own_timestamp() {
    let mut f = frontier(&[("a", "z")], 1);
    f.forward(&span("b", "c"), ts(5)).unwrap();
    f.forward(&span("d", "e"), ts(9)).unwrap();
    let cp = f.checkpoint(usize::MAX);
    let mut restarted = frontier(&[("a", "z")], 1);
    assert!(!restarted.restore(&cp).unwrap());
    assert_eq!(dump(&restarted), dump(&f));
    assert!(!restarted.restore(&Checkpoint::empty()).unwrap());
}

fn policy_config() -> PolicyConfig {
    PolicyConfig {
        interval: Duration::from_secs(10),
        lag_threshold: Duration::from_secs(60),
        max_bytes: 1 << 20,
    }
}

fn drain(p: &mut CheckpointPolicy<Timestamp>) -> Vec<Output> {
    core::iter::from_fn(|| p.poll_output()).collect()
}

/// A policy over `f` past its first decision, which clears any checkpoint an earlier run left.
fn started(config: PolicyConfig, f: Frontier<Timestamp>) -> CheckpointPolicy<Timestamp> {
    let mut p = CheckpointPolicy::new(Instant::ZERO, config, f);
    assert_eq!(
        drain(&mut p),
        vec![Output::PersistCheckpoint(Checkpoint::empty())]
    );
    p
}

#[test]
fn a_new_policy_clears_a_checkpoint_an_earlier_run_may_have_left() {
    let mut p = CheckpointPolicy::new(Instant::ZERO, policy_config(), frontier(&[("a", "b")], 0));
    assert_eq!(
        drain(&mut p),
        vec![Output::PersistCheckpoint(Checkpoint::empty())]
    );
    assert_eq!(p.poll_timeout(), None);
    p.handle_resolved(Instant::from_secs(1), &span("a", "b"), ts(0))
        .unwrap();
    assert!(drain(&mut p).is_empty(), "cleared once");
    p.handle_timeout(Instant::from_secs(2));
    assert!(drain(&mut p).is_empty(), "cleared once");
}

const SEC: i64 = 1_000_000_000;

#[test]
fn policy_persists_the_high_water_throttled_by_interval() {
    let mut p = started(policy_config(), frontier(&[("a", "b"), ("c", "d")], 0));
    assert_eq!(p.poll_timeout(), None);
    p.handle_resolved(Instant::from_secs(1), &span("a", "b"), ts(SEC))
        .unwrap();
    assert!(drain(&mut p).is_empty(), "the frontier did not move");
    assert!(p
        .handle_resolved(Instant::from_secs(2), &span("c", "d"), ts(SEC))
        .unwrap());
    assert_eq!(drain(&mut p), vec![Output::PersistHighWater(ts(SEC))]);
    // Advances within the interval wait for it.
    p.handle_resolved(Instant::from_secs(3), &span("a", "d"), ts(2 * SEC))
        .unwrap();
    p.handle_resolved(Instant::from_secs(4), &span("a", "d"), ts(3 * SEC))
        .unwrap();
    assert!(drain(&mut p).is_empty());
    assert_eq!(p.poll_timeout(), Some(Instant::from_secs(12)));
    p.handle_timeout(Instant::from_secs(11));
    assert!(drain(&mut p).is_empty());
    p.handle_timeout(Instant::from_secs(12));
    assert_eq!(drain(&mut p), vec![Output::PersistHighWater(ts(3 * SEC))]);
    assert_eq!(p.poll_timeout(), None);
    assert_eq!(p.metrics().high_water_persists, 2);
    assert_eq!(p.metrics().frontier_advances, 3);
}

#[test]
fn policy_checkpoints_only_while_lagging_then_clears() {
    let mut p = started(policy_config(), frontier(&[("a", "b"), ("c", "d")], 0));
    // Thirty seconds ahead: under the threshold, no checkpoint.
    p.handle_resolved(Instant::from_secs(1), &span("c", "d"), ts(30 * SEC))
        .unwrap();
    assert!(drain(&mut p).is_empty());
    assert!(!p.is_lagging());
    // Ninety seconds ahead: lagging, checkpoint at once.
    p.handle_resolved(Instant::from_secs(2), &span("c", "d"), ts(90 * SEC))
        .unwrap();
    let actions = drain(&mut p);
    let [Output::PersistCheckpoint(cp)] = &actions[..] else {
        panic!("expected one checkpoint, got {actions:?}");
    };
    assert_eq!(cp.groups[0].spans, vec![span("c", "d")]);
    let lagging: Vec<_> = p.lagging_spans().into_iter().map(|(s, _)| s).collect();
    assert_eq!(lagging, vec![span("a", "b")]);
    // The next one waits for the interval.
    p.handle_resolved(Instant::from_secs(3), &span("c", "d"), ts(95 * SEC))
        .unwrap();
    assert!(drain(&mut p).is_empty());
    assert_eq!(p.poll_timeout(), Some(Instant::from_secs(12)));
    p.handle_timeout(Instant::from_secs(12));
    assert!(
        matches!(&drain(&mut p)[..], [Output::PersistCheckpoint(cp)] if cp.groups[0].timestamp == ts(95 * SEC))
    );
    // The laggard catches up: the high-water moves and the stale checkpoint is cleared.
    p.handle_resolved(Instant::from_secs(13), &span("a", "b"), ts(95 * SEC))
        .unwrap();
    assert_eq!(
        drain(&mut p),
        vec![
            Output::PersistHighWater(ts(95 * SEC)),
            Output::PersistCheckpoint(Checkpoint::empty())
        ]
    );
    assert_eq!(p.poll_timeout(), None);
    let m = p.metrics();
    assert_eq!(
        (m.checkpoints, m.cleared_checkpoints, m.lag_nanos),
        (2, 2, 0)
    );
}

#[test]
fn policy_over_a_lagging_frontier_checkpoints_when_built() {
    let mut f = frontier(&[("a", "z")], 0);
    f.forward(&span("m", "n"), ts(120 * SEC)).unwrap();
    let mut p = CheckpointPolicy::new(Instant::from_secs(1), policy_config(), f);
    assert!(p.is_lagging());
    assert!(matches!(&drain(&mut p)[..], [Output::PersistCheckpoint(cp)] if cp.span_count() == 1));
    assert_eq!(p.poll_timeout(), Some(Instant::from_secs(11)));
}

#[test]
fn zero_interval_persists_on_input_and_sets_no_timer() {
    let config = policy_config().with_interval(Duration::ZERO);
    let mut p = started(config, frontier(&[("a", "b"), ("c", "d")], 0));
    p.handle_resolved(Instant::from_secs(1), &span("c", "d"), ts(90 * SEC))
        .unwrap();
    assert!(matches!(&drain(&mut p)[..], [Output::PersistCheckpoint(_)]));
    assert_eq!(p.poll_timeout(), None);
    p.handle_resolved(Instant::from_secs(1), &span("c", "d"), ts(95 * SEC))
        .unwrap();
    assert!(matches!(&drain(&mut p)[..], [Output::PersistCheckpoint(_)]));
    p.handle_resolved(Instant::from_secs(1), &span("a", "b"), ts(95 * SEC))
        .unwrap();
    assert_eq!(
        drain(&mut p).len(),
        2,
        "the high-water and the cleared checkpoint"
    );
    assert_eq!(p.poll_timeout(), None);
}

#[test]
fn an_undrained_output_is_replaced_by_a_newer_one_of_its_kind() {
    let mut p = started(policy_config(), frontier(&[("a", "b"), ("c", "d")], 0));
    p.handle_resolved(Instant::from_secs(1), &span("c", "d"), ts(90 * SEC))
        .unwrap();
    p.handle_resolved(Instant::from_secs(2), &span("a", "b"), ts(SEC))
        .unwrap();
    p.handle_timeout(Instant::from_secs(11));
    // The first checkpoint was never drained: only the newer one is left, after the high-water.
    let outputs = drain(&mut p);
    let [Output::PersistHighWater(hw), Output::PersistCheckpoint(cp)] = &outputs[..] else {
        panic!("expected a high-water then a checkpoint, got {outputs:?}");
    };
    assert_eq!(*hw, ts(SEC));
    assert_eq!(cp.groups[0].timestamp, ts(90 * SEC));
    assert_eq!(p.metrics().checkpoints, 2);
}

#[test]
fn policy_time_going_backwards_is_no_time_passing() {
    let mut p = started(policy_config(), frontier(&[("a", "b")], 0));
    p.handle_resolved(Instant::from_secs(20), &span("a", "b"), ts(SEC))
        .unwrap();
    assert_eq!(drain(&mut p), vec![Output::PersistHighWater(ts(SEC))]);
    // An earlier clock counts as 20 s: the next high-water still waits until 30 s.
    p.handle_resolved(Instant::from_secs(5), &span("a", "b"), ts(2 * SEC))
        .unwrap();
    assert!(drain(&mut p).is_empty());
    assert_eq!(p.poll_timeout(), Some(Instant::from_secs(30)));
}
