//! Running pgbench and reading its report.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

/// Clients of every measured run: the 8, or `WEIR_BENCH_CLIENTS`; two threads.
fn clients() -> u32 {
    std::env::var("WEIR_BENCH_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8)
}

/// The pgbench next to the server binaries, else the one on the PATH.
pub fn binary(bin_dir: &Path) -> PathBuf {
    let beside = bin_dir.join("pgbench");
    if beside.is_file() {
        beside
    } else {
        PathBuf::from("pgbench")
    }
}

/// What one pgbench run reported.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// `tps = ... (without initial connection time)`.
    pub tps: f64,
    /// `number of transactions actually processed: N`.
    pub transactions: u64,
    /// `latency average = ... ms`.
    pub latency_ms: f64,
    /// `number of failed transactions: N`, plus one per aborted client, plus one when pgbench
    /// exited with an error and said nothing else about it.
    pub failures: u64,
    /// The lines that explain the failures (pgbench's errors, the exit status).
    pub errors: Vec<String>,
}

/// `pgbench -i` at this scale, straight to the server.
pub async fn initialize(pgbench: &Path, port: u16, scale: u32) -> Result<(), String> {
    let output = Command::new(pgbench)
        .args(connection(port))
        .args(["-i", "-q", "-s", &scale.to_string()])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run {}: {e}", pgbench.display()))?;
    if !output.status.success() {
        return Err(format!(
            "pgbench -i on port {port} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(())
}

/// The TPC-B-like script in query `mode` (`simple`, `extended` or `prepared`), no vacuum (the
/// caller vacuums), for `seconds`. A run that overstays its time by half a minute is killed and
/// reported as failed.
pub async fn run(pgbench: &Path, port: u16, mode: &str, seconds: u64) -> Report {
    let mut command = Command::new(pgbench);
    command
        .args(connection(port))
        .args(["-n", "-M", mode])
        .args([
            "-c",
            &clients().to_string(),
            "-j",
            &clients().min(2).to_string(),
        ])
        .args(["-T", &seconds.to_string()])
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let limit = Duration::from_secs(seconds + 30);
    match tokio::time::timeout(limit, command.output()).await {
        Err(_) => failed(format!("pgbench did not finish within {limit:?}; killed")),
        Ok(Err(e)) => failed(format!("cannot run {}: {e}", pgbench.display())),
        Ok(Ok(output)) => {
            let stdout = String::from_utf8_lossy(&output.stdout);
            let stderr = String::from_utf8_lossy(&output.stderr);
            let mut report = parse(&stdout, &stderr);
            if !output.status.success() && report.failures == 0 {
                report.failures = 1;
            }
            if !output.status.success() {
                report
                    .errors
                    .push(format!("pgbench exited with {}", output.status));
            }
            report
        }
    }
}

fn failed(error: String) -> Report {
    Report {
        failures: 1,
        errors: vec![error],
        ..Report::default()
    }
}

fn connection(port: u16) -> Vec<String> {
    [
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-U",
        "postgres",
        "postgres",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Read pgbench's summary (stdout) and its error lines (stderr).
pub fn parse(stdout: &str, stderr: &str) -> Report {
    let mut report = Report::default();
    for line in stdout.lines() {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("tps = ") {
            if line.contains("without initial connection time") {
                report.tps = first_number(rest);
            }
        } else if let Some(rest) = line.strip_prefix("number of transactions actually processed:") {
            report.transactions = first_number(rest) as u64;
        } else if let Some(rest) = line.strip_prefix("number of failed transactions:") {
            report.failures += first_number(rest) as u64;
        } else if let Some(rest) = line.strip_prefix("latency average =") {
            report.latency_ms = first_number(rest);
        }
    }
    for line in stderr.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        // "pgbench: error: client 3 script 0 aborted in command 4 query 0: ..."
        if line.contains("aborted in command") || line.contains("aborted while") {
            report.failures += 1;
        }
        if line.contains("error") || line.contains("fatal") || line.contains("aborted") {
            report.errors.push(line.to_owned());
        }
    }
    report
}

fn first_number(s: &str) -> f64 {
    s.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_postgres_15_report() {
        let stdout = "pgbench (15.14 (Debian 15.14-0+deb12u1))\n\
            transaction type: <builtin: TPC-B (sort of)>\n\
            scaling factor: 1\nquery mode: simple\nnumber of clients: 8\n\
            number of threads: 2\nmaximum number of tries: 1\nduration: 5 s\n\
            number of transactions actually processed: 12345\n\
            number of failed transactions: 2 (0.016%)\n\
            latency average = 3.241 ms\ninitial connection time = 12.345 ms\n\
            tps = 2468.123456 (without initial connection time)\n";
        let stderr = "pgbench: error: client 3 script 0 aborted in command 4 query 0: \
            server closed the connection unexpectedly\n";
        let r = parse(stdout, stderr);
        assert_eq!(r.transactions, 12345);
        assert!((r.tps - 2468.123456).abs() < 1e-9);
        assert!((r.latency_ms - 3.241).abs() < 1e-9);
        assert_eq!(r.failures, 3);
        assert_eq!(r.errors.len(), 1);
    }
}
