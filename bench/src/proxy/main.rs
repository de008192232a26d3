//! `make bench-proxy`: pgbench's TPC-B-like script (simple protocol, or prepared where the
//! contender's name says so; 8 clients, 2 threads) against two throwaway PostgreSQL clusters,
//! straight and through each proxy, in one run:
//!
//! - `direct`: straight to cluster A.
//! - `pgbouncer`: PgBouncer in session mode in front of cluster A.
//! - `weir`: the weir proxy with both clusters as backends and B marked draining, so that
//!   every session lands on A, as with `direct` and `pgbouncer`.
//! - `weir-spread`: the weir proxy with both backends live, so sessions are placed 4 and 4.
//! - `weir-moving`: as `weir-spread`, while every 100 ms every session is asked to move to
//!   the other backend (in pairs, one session from each backend at a time: see `mover`). A move usually lands on a server connection another session left
//!   (reset and kept by the proxy, `ProxyConfig::max_idle_per_backend`).
//! - `weir-moving-dial`: the same moves with no connection kept, so every move dials a new
//!   server (a new backend process, cold caches).
//! - `weir-spread-prepared` and `weir-moving-prepared`: `weir-spread` and `weir-moving` with
//!   `pgbench -M prepared`, whose sessions hold named statements (`BEGIN` and `END` among them)
//!   that every move creates again on the new server.
//!
//! `tps_ratio_vs_pgbouncer` is `weir` over `pgbouncer` (same server, same load on it);
//! `tps_ratio_moving_vs_static` is `weir-moving` over `weir-spread` (both spread over the two
//! servers, which at scale 1 halves the contention on the one branch row); the transfer
//! percentiles are those of `weir-moving`. The `*_dial` figures are the same for
//! `weir-moving-dial`. `tps_ratio_moving_vs_static_prepared` is `weir-moving-prepared` over
//! `weir-spread-prepared`, and the `*_prepared` move figures are `weir-moving-prepared`'s.
//!
//! Each round runs the eight in a fresh random order (the seed is printed; `WEIR_BENCH_SEED`
//! replays one); before every run both clusters get `TRUNCATE pgbench_history`, `VACUUM` and
//! a `CHECKPOINT`. `WEIR_BENCH_QUICK=1`: one round of 5 s runs. Otherwise three rounds of 20 s
//! runs, tps averaged per contender. Overrides: `WEIR_BENCH_SECONDS`, `WEIR_BENCH_ROUNDS`,
//! `WEIR_BENCH_SCALE`, `WEIR_BENCH_CLIENTS`; `WEIR_BENCH_ONLY=direct,weir` picks contenders;
//! `WEIR_BENCH_MOVE_EVERY_MS` sets the moving runs' period and `WEIR_BENCH_MOVES=staggered`
//! moves sessions one at a time; `WEIR_BENCH_LOG=weir_tokio=debug` (an `EnvFilter`) turns on
//! the proxy's tracing on stderr. The `name=value` lines come last.

mod mover;
mod pgbench;
mod pgbouncer;
#[path = "../stats.rs"]
mod stats;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;
use weir_tests::postgres::Cluster;
use weir_tokio::proxy::{BackendId, Proxy, ProxyConfig};

use mover::{Moves, Pattern};
use pgbench::Report;
use pgbouncer::PgBouncer;
use stats::{percentile, ratio};

/// How often the moving runs move every session, unless `WEIR_BENCH_MOVE_EVERY_MS` says.
const MOVE_EVERY: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Contender {
    Direct,
    PgBouncer,
    Weir,
    WeirSpread,
    WeirMoving,
    WeirMovingDial,
    WeirSpreadPrepared,
    WeirMovingPrepared,
}

const CONTENDERS: [Contender; 8] = [
    Contender::Direct,
    Contender::PgBouncer,
    Contender::Weir,
    Contender::WeirSpread,
    Contender::WeirMoving,
    Contender::WeirMovingDial,
    Contender::WeirSpreadPrepared,
    Contender::WeirMovingPrepared,
];

impl Contender {
    fn name(self) -> &'static str {
        match self {
            Contender::Direct => "direct",
            Contender::PgBouncer => "pgbouncer",
            Contender::Weir => "weir",
            Contender::WeirSpread => "weir-spread",
            Contender::WeirMoving => "weir-moving",
            Contender::WeirMovingDial => "weir-moving-dial",
            Contender::WeirSpreadPrepared => "weir-spread-prepared",
            Contender::WeirMovingPrepared => "weir-moving-prepared",
        }
    }

    /// pgbench's query mode (`-M`).
    fn mode(self) -> &'static str {
        match self {
            Contender::WeirSpreadPrepared | Contender::WeirMovingPrepared => "prepared",
            _ => "simple",
        }
    }

    fn is_weir(self) -> bool {
        !matches!(self, Contender::Direct | Contender::PgBouncer)
    }

    fn is_moving(self) -> bool {
        matches!(
            self,
            Contender::WeirMoving | Contender::WeirMovingDial | Contender::WeirMovingPrepared
        )
    }
}

struct Settings {
    seconds: u64,
    rounds: u32,
    scale: u32,
    seed: u64,
    only: Option<String>,
    move_every: Duration,
    pattern: Pattern,
}

impl Settings {
    fn from_env() -> Result<Settings, String> {
        let quick = std::env::var_os("WEIR_BENCH_QUICK").is_some();
        let number = |name: &str, default: u64| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Ok(Settings {
            seconds: number("WEIR_BENCH_SECONDS", if quick { 5 } else { 20 }),
            rounds: number("WEIR_BENCH_ROUNDS", if quick { 1 } else { 3 }) as u32,
            scale: number("WEIR_BENCH_SCALE", 1) as u32,
            seed: number("WEIR_BENCH_SEED", clock % 1_000_000),
            only: std::env::var("WEIR_BENCH_ONLY").ok(),
            move_every: Duration::from_millis(number(
                "WEIR_BENCH_MOVE_EVERY_MS",
                MOVE_EVERY.as_millis() as u64,
            )),
            pattern: Pattern::from_env()?,
        })
    }
}

/// Everything a run needs; dropping it stops PgBouncer and both clusters.
struct Bench {
    a: Cluster,
    b: Cluster,
    bouncer: PgBouncer,
    pgbench: PathBuf,
}

/// One contender's run: pgbench's report, and the moves of a moving run.
struct Run {
    report: Report,
    moves: Option<Moves>,
    placement: Vec<usize>,
    /// pgbench_history rows on A and B after the run.
    history: [u64; 2],
}

#[tokio::main]
async fn main() -> ExitCode {
    if let Ok(filter) = std::env::var("WEIR_BENCH_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .init();
    }
    // Ctrl-C returns through the drops, so PgBouncer and the clusters stop with us.
    let result = tokio::select! {
        r = bench() => r,
        _ = tokio::signal::ctrl_c() => Err("interrupted".to_owned()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-proxy: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn bench() -> Result<(), String> {
    let settings = Settings::from_env()?;
    let bench = setup(&settings).await?;
    let mut runs: Vec<(Contender, Run)> = Vec::new();
    let mut rng = settings.seed.max(1);
    println!(
        "{} round(s) of {} s runs, scale {}, seed {} (WEIR_BENCH_SEED), moves every {} ms in {}",
        settings.rounds,
        settings.seconds,
        settings.scale,
        settings.seed,
        settings.move_every.as_millis(),
        settings.pattern.name()
    );
    for round in 1..=settings.rounds {
        let mut order = CONTENDERS.to_vec();
        shuffle(&mut order, &mut rng);
        if let Some(only) = &settings.only {
            order.retain(|c| only.split(',').any(|name| name.trim() == c.name()));
        }
        let names: Vec<&str> = order.iter().map(|c| c.name()).collect();
        println!("round {round}: {}", names.join(", "));
        for contender in order {
            bench.reset()?;
            let mut run = bench.run(contender, &settings).await?;
            bench.check_history(&mut run)?;
            print_run(round, contender, &run);
            runs.push((contender, run));
        }
    }
    summarize(&runs, bench.bouncer.version())
}

async fn setup(settings: &Settings) -> Result<Bench, String> {
    println!("starting two PostgreSQL clusters");
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(Cluster::start);
        let b = s.spawn(Cluster::start);
        (a.join(), b.join())
    });
    let a = a.map_err(|_| "starting cluster A panicked")?;
    let b = b.map_err(|_| "starting cluster B panicked")?;
    let (a, b) = match (a, b) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => return Err(format!("a cluster did not start: {e}")),
    };
    let pgbench = pgbench::binary(a.bin_dir());
    println!(
        "clusters on ports {} (A) and {} (B); pgbench -i -s {}",
        a.port(),
        b.port(),
        settings.scale
    );
    let (ia, ib) = tokio::join!(
        pgbench::initialize(&pgbench, a.port(), settings.scale),
        pgbench::initialize(&pgbench, b.port(), settings.scale),
    );
    ia.and(ib)?;
    let bouncer = PgBouncer::start(a.addr())?;
    println!("{} on port {}", bouncer.version(), bouncer.port());
    Ok(Bench {
        a,
        b,
        bouncer,
        pgbench,
    })
}

impl Bench {
    /// Start every run from the same state: empty history, vacuumed tables, a fresh checkpoint.
    fn reset(&self) -> Result<(), String> {
        for cluster in [&self.a, &self.b] {
            cluster
                .psql(
                    "TRUNCATE pgbench_history;\n\
                     VACUUM ANALYZE pgbench_accounts, pgbench_branches, pgbench_tellers;\n\
                     CHECKPOINT;\n",
                )
                .map_err(|e| format!("resetting a cluster: {e}"))?;
        }
        Ok(())
    }

    /// Every transaction pgbench counted inserted one history row, on whichever server its
    /// session was on then; a transaction lost or run twice shows as a difference, which counts
    /// as failed transactions.
    fn check_history(&self, run: &mut Run) -> Result<(), String> {
        let mut rows = [0u64; 2];
        for (n, cluster) in [&self.a, &self.b].into_iter().enumerate() {
            let out = cluster
                .psql("SELECT count(*) FROM pgbench_history;")
                .map_err(|e| format!("counting history rows: {e}"))?;
            rows[n] = out.trim().parse().map_err(|e| format!("{out:?}: {e}"))?;
        }
        run.history = rows;
        let r = &mut run.report;
        if r.transactions > 0 && rows[0] + rows[1] != r.transactions {
            r.failures += (rows[0] + rows[1]).abs_diff(r.transactions);
            r.errors.push(format!(
                "{} history rows (A {}, B {}) for {} transactions",
                rows[0] + rows[1],
                rows[0],
                rows[1],
                r.transactions
            ));
        }
        Ok(())
    }

    async fn run(&self, contender: Contender, settings: &Settings) -> Result<Run, String> {
        let seconds = settings.seconds;
        let port = match contender {
            Contender::Direct => self.a.port(),
            Contender::PgBouncer => self.bouncer.port(),
            _ => return self.run_weir(contender, settings).await,
        };
        Ok(Run {
            report: pgbench::run(&self.pgbench, port, contender.mode(), seconds).await,
            moves: None,
            placement: Vec::new(),
            history: [0; 2],
        })
    }

    async fn run_weir(&self, contender: Contender, settings: &Settings) -> Result<Run, String> {
        let mut config = ProxyConfig::new(vec![self.a.addr(), self.b.addr()]);
        config.transfer = weir::transfer::Config::with_dialect(weir::transfer::Dialect::postgres());
        if contender == Contender::WeirMovingDial {
            config.max_idle_per_backend = 0;
        }
        let proxy = Proxy::bind("127.0.0.1:0", config)
            .await
            .map_err(|e| format!("the weir proxy did not bind: {e}"))?;
        if contender == Contender::Weir {
            proxy
                .set_draining(BackendId(1), true)
                .map_err(|e| e.to_string())?;
        }
        let proxy = Arc::new(proxy);
        let port = proxy.local_addr().port();
        let (stop, stopped) = oneshot::channel();
        let mover = contender.is_moving().then(|| {
            tokio::spawn(mover::run(
                proxy.clone(),
                settings.move_every,
                settings.pattern,
                stopped,
            ))
        });
        // Where the sessions are a second in, before any move.
        let placement = {
            let proxy = proxy.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                proxy.metrics().sessions_per_backend
            })
        };
        let report = pgbench::run(&self.pgbench, port, contender.mode(), settings.seconds).await;
        let _ = stop.send(());
        let moves = match mover {
            Some(task) => Some(task.await.map_err(|e| format!("the mover failed: {e}"))?),
            None => None,
        };
        let placement = placement.await.unwrap_or_default();
        let metrics = proxy.metrics();
        if contender.is_moving() {
            let t = &metrics.transfers;
            println!(
                "  proxy: {} transfer attempts, {} succeeded, {} recoverable, {} fatal, {} retries; \
                 {} onto kept servers, {} servers kept",
                t.attempted,
                t.success,
                t.error_recoverable,
                t.error_fatal,
                metrics.transfer_retries,
                metrics.idle_servers_taken,
                metrics.idle_servers_kept
            );
        }
        Ok(Run {
            report,
            moves,
            placement,
            history: [0; 2],
        })
    }
}

fn print_run(round: u32, contender: Contender, run: &Run) {
    let r = &run.report;
    let mut line = format!(
        "round {round} {:<20} tps {:>8.1}  transactions {:>7} (history rows A {} B {})  \
         latency {:>6.2} ms  failed {}",
        contender.name(),
        r.tps,
        r.transactions,
        run.history[0],
        run.history[1],
        r.latency_ms,
        r.failures
    );
    if contender.is_weir() {
        line += &format!("  sessions per backend 1 s in {:?}", run.placement);
    }
    println!("{line}");
    if let Some(m) = &run.moves {
        println!(
            "  moves: {} ran ({} failed), {}; session held {}; \
             {} asked while still moving, {} cut short by the session's end",
            m.total(),
            m.failed.len(),
            spread(&m.latencies_ms),
            spread(&m.suspended_ms),
            m.in_progress,
            m.cut_by_session_end
        );
        for failure in m.failed.iter().take(5) {
            println!("  failed move: {failure}");
        }
    }
    for error in r.errors.iter().take(5) {
        println!("  pgbench: {error}");
    }
}

/// p50, p99 and max of one run's successful moves in ms, for its progress line.
fn spread(values_ms: &[f64]) -> String {
    let p = |p: f64| percentile("successful moves", values_ms, p);
    match (p(50.0), p(99.0), p(100.0)) {
        (Ok(p50), Ok(p99), Ok(max)) => {
            format!("p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms")
        }
        _ => "no move succeeded".to_owned(),
    }
}

/// The summary and the `name=value` lines, for the contenders that ran (`WEIR_BENCH_ONLY` may
/// leave some out). A figure with nothing to compute it from (no successful move, a ratio over
/// a tps of 0) fails the benchmark instead of printing 0; the per-run lines above show why.
fn summarize(runs: &[(Contender, Run)], bouncer_version: &str) -> Result<(), String> {
    let tps = |c: Contender| {
        let all: Vec<f64> = runs
            .iter()
            .filter(|(k, _)| *k == c)
            .map(|(_, r)| r.report.tps)
            .collect();
        (!all.is_empty()).then(|| all.iter().sum::<f64>() / all.len() as f64)
    };
    let weir_failures: u64 = runs
        .iter()
        .filter(|(c, _)| c.is_weir())
        .map(|(_, r)| r.report.failures)
        .sum();
    let other_failures: u64 = runs
        .iter()
        .filter(|(c, _)| !c.is_weir())
        .map(|(_, r)| r.report.failures)
        .sum();
    let moves_of = |c: Contender| {
        let mut all = AllMoves {
            contender: c,
            latencies: Vec::new(),
            suspended: Vec::new(),
            total: 0,
            failed: 0,
        };
        for (_, run) in runs.iter().filter(|(k, _)| *k == c) {
            if let Some(moves) = &run.moves {
                all.latencies.extend_from_slice(&moves.latencies_ms);
                all.suspended.extend_from_slice(&moves.suspended_ms);
                all.total += moves.total();
                all.failed += moves.failed.len();
            }
        }
        all
    };
    let tps_ratio = |name: &str, a: Contender, b: Contender| match (tps(a), tps(b)) {
        (Some(a), Some(b)) => ratio(name, a, b).map(|r| Some(format!("{name}={r:.3}"))),
        _ => Ok(None),
    };
    println!();
    for c in CONTENDERS {
        if let Some(tps) = tps(c) {
            println!("mean tps {:<20} {:>8.1}", c.name(), tps);
        }
    }
    println!(
        "pgbench failures outside weir (direct, pgbouncer): {other_failures}; {bouncer_version}"
    );
    // Every figure first, so that none is printed when one fails.
    let mut figures = Vec::new();
    figures.extend(tps(Contender::Direct).map(|tps| format!("tps_direct={tps:.1}")));
    figures.extend(tps_ratio(
        "tps_ratio_vs_pgbouncer",
        Contender::Weir,
        Contender::PgBouncer,
    )?);
    figures.extend(tps_ratio(
        "tps_ratio_moving_vs_static",
        Contender::WeirMoving,
        Contender::WeirSpread,
    )?);
    if runs.iter().any(|(c, _)| c.is_weir()) {
        figures.push(format!("pgbench_failed_transactions={weir_failures}"));
    }
    if tps(Contender::WeirMoving).is_some() {
        figures.extend(moves_of(Contender::WeirMoving).figures("")?);
    }
    figures.extend(tps_ratio(
        "tps_ratio_moving_dial_vs_static",
        Contender::WeirMovingDial,
        Contender::WeirSpread,
    )?);
    if tps(Contender::WeirMovingDial).is_some() {
        figures.extend(moves_of(Contender::WeirMovingDial).figures("_dial")?);
    }
    figures.extend(tps_ratio(
        "tps_ratio_moving_vs_static_prepared",
        Contender::WeirMovingPrepared,
        Contender::WeirSpreadPrepared,
    )?);
    if tps(Contender::WeirMovingPrepared).is_some() {
        figures.extend(moves_of(Contender::WeirMovingPrepared).figures("_prepared")?);
    }
    for figure in figures {
        println!("{figure}");
    }
    Ok(())
}

/// The successful moves of every run of one contender.
struct AllMoves {
    contender: Contender,
    latencies: Vec<f64>,
    suspended: Vec<f64>,
    total: usize,
    failed: usize,
}

impl AllMoves {
    /// The `name=value` lines, each name ending in `suffix`; an error when no move succeeded.
    fn figures(&self, suffix: &str) -> Result<Vec<String>, String> {
        let what = |samples: &str| {
            format!(
                "{samples} of a successful {} move ({} ran, {} failed)",
                self.contender.name(),
                self.total,
                self.failed
            )
        };
        let latency = |p: f64| percentile(&what("latencies"), &self.latencies, p);
        let held = |p: f64| percentile(&what("session hold times"), &self.suspended, p);
        Ok(vec![
            format!("transfer_p50_ms{suffix}={:.2}", latency(50.0)?),
            format!("transfer_p99_ms{suffix}={:.2}", latency(99.0)?),
            format!("transfer_held_p50_ms{suffix}={:.2}", held(50.0)?),
            format!("transfer_held_p99_ms{suffix}={:.2}", held(99.0)?),
            format!("transfers_total{suffix}={}", self.total),
            format!("transfers_failed{suffix}={}", self.failed),
        ])
    }
}

/// Fisher-Yates with xorshift64: enough to vary the order, and replayable from the seed.
fn shuffle<T>(items: &mut [T], state: &mut u64) {
    for i in (1..items.len()).rev() {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        let j = (*state % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}
