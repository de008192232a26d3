//! Runs every flow-control scenario, writes a CSV and an SVG plot per scenario, and prints a
//! summary and the benchmark figures.
//!
//! Usage: `flow_sim [--out DIR]` (default `target/flow-sim`).

use std::path::PathBuf;
use std::process::ExitCode;

use weir::flow::Class;
use weir_examples::flow_sim::{figures, render_csv, render_svg, run, scenarios};

fn main() -> ExitCode {
    let mut out = PathBuf::from("target/flow-sim");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match (arg.as_str(), args.next()) {
            ("--out", Some(dir)) => out = PathBuf::from(dir),
            _ => {
                eprintln!("usage: flow_sim [--out DIR]");
                return ExitCode::FAILURE;
            }
        }
    }
    if let Err(e) = std::fs::create_dir_all(&out) {
        eprintln!("cannot create {}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    let mut runs = Vec::new();
    let mut healthy = true;
    for scenario in scenarios::all() {
        let r = run(&scenario);
        let csv = out.join(format!("{}.csv", r.name));
        let svg = out.join(format!("{}.svg", r.name));
        if let Err(e) =
            std::fs::write(&csv, render_csv(&r)).and_then(|()| std::fs::write(&svg, render_svg(&r)))
        {
            eprintln!("cannot write {}: {e}", out.display());
            return ExitCode::FAILURE;
        }
        println!(
            "{:<22} regular {:>6.1}/s  elastic {:>6.1}/s  deepest regular debt {:>9} B  rejected {:?}  {}",
            r.name,
            r.rate(Class::Regular, 0.0, scenario.duration),
            r.rate(Class::Elastic, 0.0, scenario.duration),
            r.max_regular_debt,
            r.rejections,
            svg.display()
        );
        for v in &r.violations {
            eprintln!("  violation: {v}");
            healthy = false;
        }
        runs.push(r);
    }
    let Some(f) = figures(&runs) else {
        eprintln!("a scenario the figures need is missing");
        return ExitCode::FAILURE;
    };
    println!("over_admission_bytes={}", f.over_admission_bytes);
    match f.slow_stream_regular_rate_ratio {
        Some(ratio) => println!("slow_stream_regular_rate_ratio={ratio:.3}"),
        None => {
            eprintln!("the run with no slow stream admitted nothing: no rate ratio");
            healthy = false;
        }
    }
    println!("heartbeats_queued={}", f.heartbeats_queued);
    if f.heartbeats_queued > 0 {
        healthy = false;
    }
    if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
