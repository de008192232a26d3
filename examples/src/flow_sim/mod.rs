//! A deterministic flow-control simulator after CockroachDB's `kvflowsimulator`: writers,
//! receivers that admit at a set rate, and a leader that holds back entries for replicas out of
//! tokens, all around one [`weir::flow::FlowControl`] on a virtual clock.
//!
//! ```
//! use weir_examples::flow_sim::{run, scenarios};
//!
//! let run = run(&scenarios::over_admission());
//! assert!(run.violations.is_empty());
//! assert!(run.max_regular_debt < scenarios::OVER_ADMISSION_REQUEST);
//! ```

mod engine;
pub mod scenarios;
mod svg;

use std::fmt::Write;

pub use engine::{run, Action, Run, Sample, Scenario, Workload, TICK};
pub use svg::render as render_svg;

/// The run as CSV, one row per sample.
pub fn render_csv(run: &Run) -> String {
    let mut csv = String::from(
        "t_s,regular_tokens_bytes,elastic_tokens_bytes,regular_admitted_per_s,elastic_admitted_per_s,\
         control_admitted_per_s,regular_waiting,elastic_waiting,regular_blocked_streams,\
         elastic_blocked_streams,send_queue_bytes,rejected_total\n",
    );
    for s in &run.samples {
        let _ = writeln!(
            csv,
            "{:.1},{},{},{},{},{},{},{},{},{},{},{}",
            s.t,
            s.regular_tokens,
            s.elastic_tokens,
            s.regular_per_sec,
            s.elastic_per_sec,
            s.control_per_sec,
            s.regular_waiting,
            s.elastic_waiting,
            s.regular_blocked,
            s.elastic_blocked,
            s.send_queue_bytes,
            s.rejected
        );
    }
    csv
}

/// The three figures the flow benchmark reports, from the scenarios that define them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Figures {
    /// How deep the regular pool went into debt in the over-admission scenario, in bytes.
    pub over_admission_bytes: u64,
    /// Regular admissions per second with one slow replica divided by with none, from 10 s on;
    /// `None` when the run with none slow admitted nothing, since there is no ratio to a zero
    /// baseline.
    pub slow_stream_regular_rate_ratio: Option<f64>,
    /// Heartbeats (control requests) queued during the heartbeat flood. Zero by design, since
    /// control traffic never enters the queue: this checks that property, it does not measure a
    /// wait.
    pub heartbeats_queued: u64,
}

/// `numerator / baseline`, or `None` when the baseline is not positive.
pub fn ratio(numerator: f64, baseline: f64) -> Option<f64> {
    (baseline > 0.0).then(|| numerator / baseline)
}

/// Computes [`Figures`] from runs of every scenario (as returned for [`scenarios::all`]); `None`
/// if a scenario they need is missing.
pub fn figures(runs: &[Run]) -> Option<Figures> {
    let by_name = |name: &str| runs.iter().find(|r| r.name == name);
    let over = by_name("over_admission")?;
    let slow = by_name("single_slow_stream")?;
    let baseline = by_name("no_slow_stream")?;
    let flood = by_name("heartbeat_flood")?;
    let rate = |r: &Run| r.rate(weir::flow::Class::Regular, 10.0, 50.0);
    Some(Figures {
        over_admission_bytes: over.max_regular_debt,
        slow_stream_regular_rate_ratio: ratio(rate(slow), rate(baseline)),
        heartbeats_queued: flood.heartbeats_queued,
    })
}
