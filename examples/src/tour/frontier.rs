//! The frontier section: a changefeed over 1,000 key ranges on a virtual clock. One range stalls,
//! the checkpoint policy saves the progress of the others, a restart restores it, and the range
//! recovers.

use std::fmt::Write as _;
use std::time::Duration;

use weir::frontier::{
    Checkpoint, CheckpointPolicy, Frontier, FrontierConfig, FrontierError, Output, PolicyConfig,
    Span, Timestamp,
};
use weir::time::Instant;

const RANGES: usize = 1000;
const STALLED: usize = 417;

/// What the section found, for the caller to check.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// High-water persists the policy asked for.
    pub high_water_persists: usize,
    /// Spans in the checkpoint written while the range lagged.
    pub checkpoint_spans: usize,
    /// Entries of the restarted frontier still at the high-water after the restore.
    pub behind_after_restore: usize,
    /// The policy cleared the checkpoint once the range caught up.
    pub cleared: bool,
}

fn range(i: usize) -> Span {
    let key = |i: usize| format!("/table/1/{i:04}");
    Span::new(key(i), key(i + 1)).expect("ordered keys")
}

fn seconds(s: u64) -> Timestamp {
    Timestamp::new(i64::try_from(s).unwrap_or(i64::MAX) * 1_000_000_000, 0)
}

/// Run the story and tell it in `out`.
pub fn run_section(out: &mut String) -> Result<Summary, FrontierError> {
    let table = Span::new("/table/1/0000", format!("/table/1/{RANGES:04}"))?;
    let config = PolicyConfig::default()
        .with_interval(Duration::from_secs(10))
        .with_lag_threshold(Duration::from_secs(60));
    let start = Frontier::from_spans(FrontierConfig::default(), [table.clone()], seconds(0))?;
    let mut policy = CheckpointPolicy::new(Instant::ZERO, config, start);
    let mut summary = Summary::default();
    let mut saved: Option<Checkpoint> = None;
    drain(&mut policy, &mut summary, &mut saved, out, 0);
    let _ = writeln!(
        out,
        "   {RANGES} ranges resolve every second, 3 s behind the clock; range {STALLED} stalls from 20 s to 150 s."
    );
    for t in 1..=200u64 {
        let now = Instant::from_secs(t);
        for i in 0..RANGES {
            let stalled = i == STALLED && (20..150).contains(&t);
            let resolved = if stalled { 17 } else { t.saturating_sub(3) };
            policy.handle_resolved(now, &range(i), seconds(resolved))?;
            drain(&mut policy, &mut summary, &mut saved, out, t);
        }
        if t == 100 {
            let lagging: Vec<String> = policy
                .lagging_spans()
                .iter()
                .map(|(span, _)| format!("{span:?}"))
                .collect();
            let _ = writeln!(out, "   at 100 s: lagging spans: {}", lagging.join(", "));
            // A restart: a fresh frontier at the persisted high-water, with the checkpoint.
            if let Some(checkpoint) = &saved {
                let high_water = policy.frontier().frontier().unwrap_or(seconds(0));
                let mut restarted =
                    Frontier::from_spans(FrontierConfig::default(), [table.clone()], high_water)?;
                restarted.restore(checkpoint)?;
                summary.behind_after_restore = restarted
                    .entries()
                    .filter(|(_, ts)| *ts == high_water)
                    .count();
                let _ = writeln!(
                    out,
                    "   at 100 s: restart. Restoring the checkpoint leaves {} of {} entries at the high-water: only the stalled range is re-read.",
                    summary.behind_after_restore,
                    restarted.len()
                );
            }
        }
    }
    let frontier_s = policy
        .frontier()
        .frontier()
        .map_or(0, |ts| ts.wall / 1_000_000_000);
    let _ = writeln!(
        out,
        "   {} high-water persists in 200 s (at most one every 10 s); the frontier ends at {frontier_s} s.",
        summary.high_water_persists,
    );
    Ok(summary)
}

/// Acts on everything the policy decided: counts high-water persists, keeps the latest
/// checkpoint, and tells when the first one is written and when it is cleared.
fn drain(
    policy: &mut CheckpointPolicy,
    summary: &mut Summary,
    saved: &mut Option<Checkpoint>,
    out: &mut String,
    t: u64,
) {
    while let Some(output) = policy.poll_output() {
        match output {
            Output::PersistHighWater(_) => summary.high_water_persists += 1,
            Output::PersistCheckpoint(c) if c.is_empty() && saved.is_some() => {
                *saved = None;
                summary.cleared = true;
                let _ = writeln!(
                    out,
                    "   at {t:>3} s: range {STALLED} caught up; the checkpoint is cleared"
                );
            }
            Output::PersistCheckpoint(c) if c.is_empty() => {}
            Output::PersistCheckpoint(c) => {
                if saved.is_none() {
                    let _ = writeln!(
                        out,
                        "   at {t:>3} s: the frontier lags by more than 60 s; checkpoint of {} spans ({} key bytes)",
                        c.span_count(),
                        c.key_bytes()
                    );
                    summary.checkpoint_spans = c.span_count();
                }
                *saved = Some(c);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_frontier_section_checkpoints_restores_and_clears() {
        let mut out = String::new();
        let summary = super::run_section(&mut out).unwrap();
        // The ranges either side of the stalled one, possibly cut where the check fell mid-second.
        assert!(
            (2..=4).contains(&summary.checkpoint_spans),
            "{summary:?}\n{out}"
        );
        assert_eq!(summary.behind_after_restore, 1, "{out}");
        assert!(summary.cleared, "{out}");
        assert!(summary.high_water_persists <= 20, "{summary:?}");
    }
}
