//! pgbench through the `proxy` binary while it moves every session every 100 ms, in each of
//! pgbench's query modes: simple, extended, and prepared (named statements, `BEGIN` and `END`
//! among them, that the proxy must create again on every new server). No transaction may fail
//! or be lost, and at least 90% of the moves must succeed.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use weir_tests::postgres::Cluster;

/// How long pgbench runs in each mode: short, so that the test stays quick.
const SECONDS: u64 = 4;
const CLIENTS: &str = "4";

/// The proxy binary over both clusters, and its stdout lines.
struct ProxyProcess {
    child: Child,
    port: u16,
    lines: mpsc::Receiver<String>,
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The transfer counters of one stats line: (succeeded, recoverable, fatal).
fn transfers(line: &str) -> Option<(u64, u64, u64)> {
    let rest = line.split("transfers: ").nth(1)?;
    let mut numbers = rest
        .split(|c: char| !c.is_ascii_digit())
        .filter(|w| !w.is_empty())
        .map(|w| w.parse::<u64>().ok());
    Some((numbers.next()??, numbers.next()??, numbers.next()??))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_proxy(clusters: &[Cluster]) -> ProxyProcess {
    let port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_proxy"));
    command.args(["--listen", &format!("127.0.0.1:{port}")]);
    for c in clusters {
        command.args(["--backend", &c.addr().to_string()]);
    }
    let mut child = command
        .args(["--dialect", "postgres", "--move-every-ms", "100"])
        .args(["--stats-every-s", "1", "--quiet"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run the proxy binary");
    let stdout = child.stdout.take().unwrap();
    let (send, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if send.send(line).is_err() {
                break;
            }
        }
    });
    let proxy = ProxyProcess { child, port, lines };
    let first = proxy
        .lines
        .recv_timeout(Duration::from_secs(30))
        .expect("the proxy starts");
    assert!(first.starts_with("weir proxy on"), "{first}");
    proxy
}

fn pgbench(cluster: &Cluster, port: u16, args: &[&str]) -> (String, String) {
    let output = Command::new(cluster.bin_dir().join("pgbench"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
        .args(args)
        .arg("postgres")
        .env_remove("PGOPTIONS")
        .output()
        .expect("run pgbench");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        output.status.success(),
        "pgbench {args:?}: {stdout}{stderr}"
    );
    (stdout, stderr)
}

/// The number after `prefix` on the line that starts with it.
fn figure(report: &str, prefix: &str) -> u64 {
    let line = report
        .lines()
        .find_map(|l| l.trim().strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} in {report}"));
    line.split_whitespace().next().unwrap().parse().unwrap()
}

fn history_rows(clusters: &[Cluster]) -> u64 {
    clusters
        .iter()
        .map(|c| {
            let n = c.psql("SELECT count(*) FROM pgbench_history;").unwrap();
            n.trim().parse::<u64>().unwrap()
        })
        .sum()
}

#[test]
fn pgbench_in_every_mode_loses_nothing_while_every_session_moves() {
    let starts: Vec<_> = (0..2).map(|_| std::thread::spawn(Cluster::start)).collect();
    let clusters: Vec<Cluster> = starts
        .into_iter()
        .map(|s| s.join().unwrap().expect("start a cluster"))
        .collect();
    for c in &clusters {
        pgbench(c, c.port(), &["-i", "-q", "-s", "1"]);
    }
    let mut summary = Vec::new();
    for mode in ["simple", "extended", "prepared"] {
        for c in &clusters {
            c.psql("TRUNCATE pgbench_history;").unwrap();
        }
        // A fresh proxy per mode, so that its counters are this mode's.
        let proxy = start_proxy(&clusters);
        let seconds = SECONDS.to_string();
        let (report, stderr) = pgbench(
            &clusters[0],
            proxy.port,
            &["-n", "-M", mode, "-c", CLIENTS, "-j", "2", "-T", &seconds],
        );
        let done = Instant::now();
        let transactions = figure(&report, "number of transactions actually processed:");
        let failed = figure(&report, "number of failed transactions:");
        assert_eq!(failed, 0, "{mode}: {report}{stderr}");
        assert!(transactions > 0, "{mode}: {report}");
        assert_eq!(history_rows(&clusters), transactions, "{mode}");

        // The stats line printed after pgbench ended holds every move of the run.
        let mut last = None;
        while last.is_none() || done.elapsed() < Duration::from_millis(1500) {
            let line = proxy
                .lines
                .recv_timeout(Duration::from_secs(5))
                .expect("a stats line");
            if let Some(counts) = transfers(&line) {
                last = Some(counts);
            }
        }
        let (ok, recoverable, fatal) = last.unwrap();
        let attempted = ok + recoverable + fatal;
        summary.push(format!(
            "{mode}: {transactions} transactions, {ok} of {attempted} moves succeeded"
        ));
        assert_eq!(fatal, 0, "{mode}: {summary:?}");
        assert!(ok >= 10, "{mode}: sessions hardly moved: {summary:?}");
        assert!(ok * 10 >= attempted * 9, "{mode}: {summary:?}");
    }
    println!("{}", summary.join("\n"));
}
