//! The flow-control section: CockroachDB's over-admission scenario and a slow replica, on a
//! virtual clock, with a plot written for the reader to open.

use std::fmt::Write as _;
use std::path::Path;

use weir::flow::Class;

use crate::flow_sim::{render_svg, run, scenarios};

/// What the section found, for the caller to check.
#[derive(Debug, PartialEq)]
pub struct Summary {
    /// Deepest regular debt in the over-admission scenario, in bytes.
    pub over_admission_bytes: u64,
    /// Regular admissions per second with one slow replica over the same with none.
    pub slow_stream_ratio: f64,
    /// Invariant violations the simulator saw (none expected).
    pub violations: usize,
}

/// Run the scenarios, write the over-admission plot into `plots`, and tell the story in `out`.
pub fn run_section(out: &mut String, plots: &Path) -> Result<Summary, String> {
    let over = run(&scenarios::over_admission());
    let plot = plots.join("over_admission.svg");
    std::fs::create_dir_all(plots)
        .and_then(|()| std::fs::write(&plot, render_svg(&over)))
        .map_err(|e| format!("cannot write {}: {e}", plot.display()))?;
    let request = scenarios::OVER_ADMISSION_REQUEST;
    let _ = writeln!(
        out,
        "   Over-admission, CockroachDB's own scenario: 16 MiB of tokens taken, 100 writes of {:.1} MiB",
        request as f64 / (1 << 20) as f64
    );
    let _ = writeln!(
        out,
        "   waiting, then one 1 KiB return. Their first design admitted all 100 and went 40 MiB over;"
    );
    let _ = writeln!(
        out,
        "   weir admits one, and the deepest debt is {} bytes (at most one request).",
        over.max_regular_debt
    );

    let slow = run(&scenarios::single_slow_stream(true));
    let baseline = run(&scenarios::single_slow_stream(false));
    let rate = |r: &crate::flow_sim::Run| r.rate(Class::Regular, 10.0, 50.0);
    let ratio = crate::flow_sim::ratio(rate(&slow), rate(&baseline))
        .ok_or("the run with no slow replica admitted nothing: no rate ratio")?;
    let _ = writeln!(
        out,
        "   One replica of three admitting at half speed: writes keep {:.1}/s against {:.1}/s with none",
        rate(&slow),
        rate(&baseline)
    );
    let _ = writeln!(
        out,
        "   slow (ratio {ratio:.3}), because a quorum paces regular work, not the slowest replica."
    );
    let _ = writeln!(out, "   Plot: {}", plot.display());
    Ok(Summary {
        over_admission_bytes: over.max_regular_debt,
        slow_stream_ratio: ratio,
        violations: over.violations.len() + slow.violations.len() + baseline.violations.len(),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_flow_section_tells_the_scenarios_and_writes_the_plot() {
        let dir = std::env::temp_dir().join(format!("weir-tour-flow-{}", std::process::id()));
        let mut out = String::new();
        let summary = super::run_section(&mut out, &dir).unwrap();
        assert_eq!(summary.violations, 0);
        assert!(summary.over_admission_bytes < super::scenarios::OVER_ADMISSION_REQUEST);
        assert!(summary.slow_stream_ratio >= 0.9, "{summary:?}");
        let svg = std::fs::read_to_string(dir.join("over_admission.svg")).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..40.min(svg.len())]);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(out.contains("deepest debt is"), "{out}");
    }
}
