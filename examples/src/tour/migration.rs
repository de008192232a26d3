//! The migration section: two throwaway PostgreSQL servers behind weir's proxy, and a client
//! that keeps writing while its session moves back and forth between them.

use std::io::Write;
use std::time::{Duration, Instant};

use tokio_postgres::NoTls;
use weir::transfer::{Config, Dialect, TransferResult};
use weir_tests::postgres::{self, Cluster};
use weir_tokio::proxy::{Proxy, ProxyConfig};

/// Moves the story makes.
const MOVES: usize = 6;

/// What the section saw, for the caller to check.
#[derive(Debug, Default)]
pub struct Summary {
    /// Whether it ran (PostgreSQL is installed) or was skipped.
    pub ran: bool,
    /// Moves that succeeded.
    pub moved: usize,
    /// Rows the client wrote.
    pub written: i32,
    /// Distinct rows found on the two servers together.
    pub found: usize,
    /// Whether they are exactly 1..=written.
    pub complete: bool,
}

/// Run the section, writing its story to `out`.
pub fn run(out: &mut impl Write) -> Result<Summary, String> {
    if !postgres::available() {
        writeln!(
            out,
            "   skipped: PostgreSQL is not installed here (`apt-get install postgresql`, or \
             set {} to its bin directory, shows this part).",
            postgres::BIN_ENV
        )
        .map_err(|e| e.to_string())?;
        return Ok(Summary::default());
    }
    writeln!(
        out,
        "   Starting two throwaway PostgreSQL servers on loopback..."
    )
    .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let clusters = [start()?, start()?];
    writeln!(
        out,
        "   Servers A (port {}) and B (port {}) are up in {:.1} s, with weir's transfer SQL installed.",
        clusters[0].port(),
        clusters[1].port(),
        started.elapsed().as_secs_f64()
    )
    .map_err(|e| e.to_string())?;
    let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
    runtime.block_on(story(out, &clusters))
}

fn start() -> Result<Cluster, String> {
    let cluster = Cluster::start().map_err(|e| e.to_string())?;
    cluster
        .psql("CREATE TABLE events (n int PRIMARY KEY, written_by text);")
        .map_err(|e| e.to_string())?;
    Ok(cluster)
}

async fn story(out: &mut impl Write, clusters: &[Cluster; 2]) -> Result<Summary, String> {
    let io = |e: std::io::Error| e.to_string();
    let db = |e: tokio_postgres::Error| e.to_string();
    let mut config = ProxyConfig::new(clusters.iter().map(Cluster::addr).collect());
    config.transfer = Config::with_dialect(Dialect::postgres());
    let proxy = Proxy::bind("127.0.0.1:0", config).await.map_err(io)?;
    let (client, connection) = tokio_postgres::Config::new()
        .host("127.0.0.1")
        .port(proxy.local_addr().port())
        .user("postgres")
        .dbname("postgres")
        .connect(NoTls)
        .await
        .map_err(db)?;
    tokio::spawn(connection);
    client
        .batch_execute("SET application_name = 'tour'")
        .await
        .map_err(db)?;
    let name = |port: i32| {
        if port as u16 == clusters[0].port() {
            "A"
        } else {
            "B"
        }
    };
    let port = || async {
        let row = client
            .query_one("SELECT current_setting('port')::int", &[])
            .await?;
        Ok::<i32, tokio_postgres::Error>(row.get(0))
    };
    writeln!(
        out,
        "   A client connects through the proxy (port {}) and lands on server {}.",
        proxy.local_addr().port(),
        name(port().await.map_err(db)?)
    )
    .map_err(io)?;
    writeln!(
        out,
        "   It inserts numbered rows without pause while the proxy moves its session {MOVES} times:"
    )
    .map_err(io)?;

    let id = proxy.sessions()[0].id;
    let insert = client
        .prepare("INSERT INTO events VALUES ($1, current_setting('application_name'))")
        .await
        .map_err(db)?;
    let mut summary = Summary {
        ran: true,
        ..Summary::default()
    };
    let mut n = 0;
    while summary.moved < MOVES {
        for _ in 0..50 {
            n += 1;
            client.execute(&insert, &[&n]).await.map_err(db)?;
        }
        let (outcome, written) = tokio::join!(proxy.move_session(id, None), async {
            for _ in 0..50 {
                n += 1;
                client.execute(&insert, &[&n]).await?;
            }
            Ok(())
        });
        written
            .map_err(|e: tokio_postgres::Error| format!("an insert failed during a move: {e}"))?;
        let outcome = outcome.map_err(|e| e.to_string())?;
        let now_on = name(port().await.map_err(db)?);
        match outcome.result {
            TransferResult::Success => {
                summary.moved += 1;
                writeln!(
                    out,
                    "     move {}: now on server {now_on}, {:.1} ms, {n} rows written so far",
                    summary.moved,
                    outcome.latency.as_secs_f64() * 1e3
                )
                .map_err(io)?;
            }
            other => return Err(format!("a move failed: {other:?}")),
        }
    }
    summary.written = n;
    let mut numbers = Vec::new();
    for c in clusters {
        let rows = c
            .psql("SELECT n FROM events WHERE written_by = 'tour';")
            .map_err(|e| e.to_string())?;
        numbers.extend(rows.lines().filter_map(|l| l.parse::<i32>().ok()));
    }
    numbers.sort_unstable();
    numbers.dedup();
    summary.found = numbers.len();
    summary.complete = numbers == (1..=n).collect::<Vec<_>>();
    writeln!(
        out,
        "   Rows 1..{n} are spread over both servers: {} distinct found, {}; every row was written \
         with the client's own application_name, which moved with the session.",
        summary.found,
        if summary.complete {
            "none lost, none twice"
        } else {
            "SOME MISSING"
        }
    )
    .map_err(io)?;
    let m = proxy.metrics();
    writeln!(
        out,
        "   Proxy metrics: {} transfers succeeded, {} failed; sessions per backend {:?}.",
        m.transfers.success,
        m.transfers.error_fatal + m.transfers.error_recoverable,
        m.sessions_per_backend
    )
    .map_err(io)?;
    writeln!(
        out,
        "   {} of the moves landed on a server connection an earlier move had left (reset with \
         DISCARD ALL and kept) instead of starting a new server process.",
        m.idle_servers_taken
    )
    .map_err(io)?;
    drop(client);
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok(summary)
}
