//! Span frontier benchmarks.
//!
//! - `random/rN`: the shape of CockroachDB's `BenchmarkFrontier`: a pool of 32,768 random spans
//!   whose keys have one to four symbols from a 64-character alphabet, forwarded in turn with
//!   slowly rising timestamps over one tracked span (`r1`) or N tracked random point spans. The
//!   naive model (a `BTreeMap` of entries, rescanned for the minimum after every forward) runs the
//!   same input at 1,024 for the ratio.
//! - `exact/nN`: the changefeed case: N tracked point spans (7-byte keys), each op forwards one
//!   span picked at random, exactly as tracked, to a slowly rising timestamp, then reads the
//!   frontier and the span holding it. `exact/sweep_n1000000` forwards the same spans in key
//!   order instead: the same work without the cache and TLB misses of random access.
//! - `bytes_per_span_1m`: heap bytes the 1,000,000-span frontier holds (keys included), counted by
//!   a global allocator, after building and after the forwards; the larger is reported.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::ops::Bound::{Excluded, Included, Unbounded};
use std::sync::atomic::{AtomicIsize, Ordering};

use criterion::Criterion;
use support::Figures;
use weir::frontier::{Frontier, FrontierConfig, Span, Timestamp};

/// Counts the bytes currently allocated, to measure what a frontier holds.
struct Counting;

static ALLOCATED: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        ALLOCATED.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATED.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocated() -> isize {
    ALLOCATED.load(Ordering::Relaxed)
}

/// A small deterministic generator (PCG-style LCG), so runs are repeatable.
struct Rng(u64);

impl Rng {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % bound
    }
}

const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-_";

fn random_key(rng: &mut Rng) -> Vec<u8> {
    let len = 1 + rng.below(4) as usize;
    (0..len).map(|_| ALPHABET[rng.below(64) as usize]).collect()
}

fn random_span(rng: &mut Rng) -> Span {
    let (a, b) = (random_key(rng), random_key(rng));
    Span::new(&a, &b)
        .or_else(|_| Span::new(&b, &a))
        .unwrap_or_else(|_| Span::point(&a))
}

/// The naive frontier: entries in a `BTreeMap`, split on forward, never merged, and rescanned for
/// the minimum after every forward.
struct Naive {
    entries: BTreeMap<Vec<u8>, (Vec<u8>, Timestamp)>,
}

impl Naive {
    fn new(spans: &[Span], ts: Timestamp) -> Naive {
        let entries = spans
            .iter()
            .map(|s| (s.start().to_vec(), (s.end().to_vec(), ts)))
            .collect();
        Naive { entries }
    }

    fn min(&self) -> Option<Timestamp> {
        self.entries.values().map(|(_, t)| *t).min()
    }

    fn forward(&mut self, span: &Span, ts: Timestamp) -> bool {
        let before = self.min();
        let (s, e) = (span.start(), span.end());
        let first = self
            .entries
            .range::<[u8], _>((Unbounded, Included(s)))
            .next_back()
            .filter(|(_, (end, _))| end.as_slice() > s)
            .map(|(k, _)| k.clone());
        let mut keys: Vec<Vec<u8>> = first.into_iter().collect();
        keys.extend(
            self.entries
                .range::<[u8], _>((Excluded(s), Excluded(e)))
                .map(|(k, _)| k.clone()),
        );
        for start in keys {
            let Some((end, old)) = self.entries.get(&start).cloned() else {
                continue;
            };
            if old >= ts {
                continue;
            }
            let lo = start.as_slice().max(s).to_vec();
            let hi = end.as_slice().min(e).to_vec();
            self.entries.remove(&start);
            if start < lo {
                self.entries.insert(start, (lo.clone(), old));
            }
            if hi < end {
                self.entries.insert(hi.clone(), (end, old));
            }
            self.entries.insert(lo, (hi, ts));
        }
        matches!((before, self.min()), (Some(b), Some(a)) if a > b)
    }
}

const POOL: usize = 32 << 10;
const TRACKED: [usize; 6] = [1, 128, 1024, 4096, 8192, 16384];

fn tracked_spans(rng: &mut Rng, n: usize) -> Vec<Span> {
    if n == 1 {
        return vec![Span::new(b"0", b"~").unwrap()];
    }
    let mut keys = std::collections::BTreeSet::new();
    while keys.len() < n {
        keys.insert(random_key(rng));
    }
    keys.into_iter().map(Span::point).collect()
}

/// Slowly rising timestamps: the wall time moves by 0 to 4 every ten forwards.
struct Clock {
    wall: i64,
    ops: u64,
}

impl Clock {
    fn tick(&mut self, rng: &mut Rng) -> Timestamp {
        self.ops += 1;
        if self.ops % 10 == 0 {
            self.wall += rng.below(5) as i64;
        }
        Timestamp::new(self.wall, 0)
    }
}

fn bench_random(c: &mut Criterion, figures: &Figures) {
    let mut rng = Rng(0x5eed);
    let pool: Vec<Span> = (0..POOL).map(|_| random_span(&mut rng)).collect();
    let mut group = c.benchmark_group("random");
    for n in TRACKED {
        let tracked = tracked_spans(&mut rng, n);
        let mut f =
            Frontier::from_spans(FrontierConfig::default(), tracked.clone(), Timestamp::ZERO)
                .unwrap();
        let (mut clock, mut i) = (Clock { wall: 1, ops: 0 }, 0);
        let id = format!("random/r{n}");
        group.bench_function(format!("r{n}"), |b| {
            figures.time(b, &id, || {
                let ts = clock.tick(&mut rng);
                black_box(f.forward(&pool[i % POOL], ts).unwrap());
                i += 1;
            })
        });
        if n == 1024 {
            let mut naive = Naive::new(&tracked, Timestamp::ZERO);
            let (mut clock, mut i) = (Clock { wall: 1, ops: 0 }, 0);
            group.bench_function("naive_r1024", |b| {
                figures.time(b, "random/naive_r1024", || {
                    let ts = clock.tick(&mut rng);
                    black_box(naive.forward(&pool[i % POOL], ts));
                    i += 1;
                })
            });
        }
    }
    group.finish();
}

/// Point spans over keys `/t\x89` + a 4-byte big-endian index: short, table-like keys.
fn exact_spans(n: usize) -> Vec<Span> {
    (0..n as u32)
        .map(|i| {
            let mut key = b"/t\x89".to_vec();
            key.extend_from_slice(&i.to_be_bytes());
            Span::point(key)
        })
        .collect()
}

/// Runs exact-match forwards over `n` spans in random order (and, if `sweep`, also in key order,
/// as when every range of a table resolves in turn); returns the heap bytes per span the frontier
/// held.
fn bench_exact(c: &mut Criterion, figures: &Figures, n: usize, sweep: bool) -> f64 {
    let spans = exact_spans(n);
    let baseline = allocated();
    let mut f =
        Frontier::from_spans(FrontierConfig::default(), spans.clone(), Timestamp::ZERO).unwrap();
    let built = allocated() - baseline;
    let mut rng = Rng(n as u64);
    let mut op: u64 = 0;
    let mut forward = |f: &mut Frontier<Timestamp>, pick: usize| {
        op += 1;
        // One wall nanosecond per 1,024 forwards: slowly rising, as resolved timestamps are.
        let ts = Timestamp::new(1 + (op >> 10) as i64, 0);
        black_box(f.forward(&spans[pick], ts).unwrap());
        black_box(f.frontier_span());
    };
    // Move every span off the initial timestamp first, so the structure is in its steady state.
    for _ in 0..n {
        forward(&mut f, rng.below(n as u64) as usize);
    }
    let mut group = c.benchmark_group("exact");
    let id = format!("exact/n{n}");
    group.bench_function(format!("n{n}"), |b| {
        figures.time(b, &id, || forward(&mut f, rng.below(n as u64) as usize))
    });
    if sweep {
        let id = format!("exact/sweep_n{n}");
        let mut next = 0;
        group.bench_function(format!("sweep_n{n}"), |b| {
            figures.time(b, &id, || {
                forward(&mut f, next);
                next = (next + 1) % n;
            })
        });
    }
    group.finish();
    let after = allocated() - baseline;
    assert_eq!(f.len(), n, "point spans never merge");
    built.max(after) as f64 / n as f64
}

fn main() {
    let mut c = support::criterion();
    let figures = Figures::default();
    bench_random(&mut c, &figures);
    bench_exact(&mut c, &figures, 100_000, false);
    let bytes_per_span = bench_exact(&mut c, &figures, 1_000_000, true);
    c.final_summary();
    let ns = |id: &str| figures.ns_per_iter(id);
    for n in &TRACKED[..TRACKED.len() - 1] {
        support::figure(
            &format!("forward_random_r{n}_ns"),
            ns(&format!("random/r{n}")),
        );
    }
    support::figure("forward_naive_r1024_ns", ns("random/naive_r1024"));
    support::figure("forward_exact_100k_ns", ns("exact/n100000"));
    support::figure("forward_exact_1m_sweep_ns", ns("exact/sweep_n1000000"));
    // The figures the issue names, last.
    support::figure("forward_exact_1m_ns", ns("exact/n1000000"));
    support::figure("forward_random_r16384_ns", ns("random/r16384"));
    support::figure("bytes_per_span_1m", bytes_per_span);
    let baseline = ns("random/r1024");
    assert!(
        baseline > 0.0,
        "random/r1024 took no time: there is no ratio to it"
    );
    support::figure("ratio_vs_naive_r1024", ns("random/naive_r1024") / baseline);
}
