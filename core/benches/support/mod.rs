//! Shared by every criterion benchmark of the core: a quick mode and `name=value` figures.
//!
//! Each benchmark routine is timed through [`Figures::time`], which runs it under criterion's
//! `iter_custom` and also keeps the total iterations and time of every sample criterion takes. The
//! figures printed at the end are computed from those same samples, so the report and the
//! `name=value` lines never disagree about what was measured.
//!
//! `WEIR_BENCH_QUICK=1` shortens warm-up and measurement so a whole file finishes in well under a
//! minute; without it criterion's defaults apply.

// Each benchmark file compiles this module on its own and uses only some of it.
#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use criterion::{Bencher, Criterion};

/// Warm-up and measurement per case in the quick mode.
pub const QUICK_WARM_UP: Duration = Duration::from_millis(300);
pub const QUICK_MEASUREMENT: Duration = Duration::from_millis(1500);

/// A criterion configured for the quick or the full mode, from `WEIR_BENCH_QUICK`.
pub fn criterion() -> Criterion {
    let quick = std::env::var("WEIR_BENCH_QUICK").is_ok_and(|v| v == "1");
    let c = Criterion::default().configure_from_args();
    if quick {
        c.warm_up_time(QUICK_WARM_UP)
            .measurement_time(QUICK_MEASUREMENT)
            .sample_size(10)
    } else {
        c
    }
}

/// Iterations and time accumulated per benchmark id.
#[derive(Default)]
pub struct Figures {
    totals: RefCell<BTreeMap<String, (u128, Duration)>>,
}

impl Figures {
    /// Time `routine` under criterion, recording every sample under `id`.
    pub fn time<F: FnMut()>(&self, b: &mut Bencher<'_>, id: &str, mut routine: F) {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                routine();
            }
            let elapsed = start.elapsed();
            self.record(id, iters, elapsed);
            elapsed
        });
    }

    /// Like [`Figures::time`], but each iteration first builds its input with `setup` and drops
    /// it afterwards, both untimed: for routines that use up their input, such as a decoder
    /// splitting a receive buffer that a connection would keep and reuse.
    pub fn time_with_setup<I, S: FnMut() -> I, F: FnMut(&mut I)>(
        &self,
        b: &mut Bencher<'_>,
        id: &str,
        mut setup: S,
        mut routine: F,
    ) {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iters {
                let mut input = setup();
                let start = Instant::now();
                routine(&mut input);
                elapsed += start.elapsed();
                drop(input);
            }
            self.record(id, iters, elapsed);
            elapsed
        });
    }

    fn record(&self, id: &str, iters: u64, elapsed: Duration) {
        let mut totals = self.totals.borrow_mut();
        let entry = totals.entry(id.to_owned()).or_default();
        entry.0 += u128::from(iters);
        entry.1 += elapsed;
    }

    /// Mean nanoseconds per iteration of `id` over everything measured.
    ///
    /// Panics if `id` was never timed (a mistake in the benchmark itself) or has no samples to
    /// average: no iterations, or no time measured, would make a figure of 0 or `inf`.
    pub fn ns_per_iter(&self, id: &str) -> f64 {
        let totals = self.totals.borrow();
        let (iters, time) = totals
            .get(id)
            .unwrap_or_else(|| panic!("benchmark {id} was never timed"));
        assert!(
            *iters > 0 && !time.is_zero(),
            "benchmark {id} has no samples to report ({iters} iterations in {time:?})"
        );
        time.as_nanos() as f64 / *iters as f64
    }

    /// Iterations per second of `id`.
    pub fn per_sec(&self, id: &str) -> f64 {
        1e9 / self.ns_per_iter(id)
    }
}

/// Print one `name=value` figure line. Panics on a value that is not a finite number: that is
/// a figure computed from nothing (a division by zero), not a measurement.
pub fn figure(name: &str, value: f64) {
    assert!(
        value.is_finite(),
        "figure {name} is {value}: nothing to report"
    );
    if value.abs() >= 1000.0 {
        println!("{name}={value:.0}");
    } else {
        println!("{name}={value:.3}");
    }
}
