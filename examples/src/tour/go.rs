//! The tour's Go section: weir-tokio and the stock Go DRPC (the peer in tests/interop/go) call
//! each other over loopback TCP, in compat mode.

use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::Command;
use tokio::time::timeout;
use weir::mux::session::Config;
use weir_tokio::{Client, Router};

const ECHO: &str = "/interop.Interop/Echo";
/// Cases of the Go client this section runs against a weir server (see tests/interop/go).
const GO_CASES: [&str; 3] = ["unary", "empty", "large-1m"];
/// Every step gets this long.
const STEP: Duration = Duration::from_secs(30);

/// Where the Go peer is: WEIR_GO_PEER, else what `make go-peer` builds.
pub fn peer_path() -> PathBuf {
    std::env::var_os("WEIR_GO_PEER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/drpc-go-peer"))
}

/// Runs the section; the count of exchanges that agreed, or why one did not.
pub fn run(out: &mut dyn Write) -> Result<usize, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    runtime.block_on(tour(out))
}

async fn tour(out: &mut dyn Write) -> Result<usize, String> {
    let peer = peer_path();
    let mut agreed = 0;

    // weir client, Go server.
    let mut child = Command::new(&peer)
        .args(["-mode", "server", "-addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("starting {}: {e}", peer.display()))?;
    let stdout = child.stdout.take().ok_or("the Go server has no stdout")?;
    let line = timeout(STEP, BufReader::new(stdout).lines().next_line())
        .await
        .map_err(|_| "the Go server did not start")?
        .map_err(|e| e.to_string())?
        .ok_or("the Go server exited before listening")?;
    let addr = line
        .strip_prefix("listening ")
        .ok_or_else(|| format!("the Go server said {line:?}"))?;
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    let client = Client::connect(tcp, Config::default());
    let big: Bytes = (0..1 << 20)
        .map(|i: u32| (i % 251) as u8)
        .collect::<Vec<_>>()
        .into();
    for message in [Bytes::from_static(b"hello from weir"), big] {
        let started = Instant::now();
        let reply = timeout(STEP, client.call(ECHO, message.clone()))
            .await
            .map_err(|_| "the Go server did not answer")?
            .map_err(|e| e.to_string())?;
        if reply != message {
            return Err(format!(
                "the Go server echoed {} bytes differently",
                message.len()
            ));
        }
        agreed += 1;
        let _ = writeln!(
            out,
            "   weir client -> Go server: a {}-byte echo came back intact in {:.1} ms",
            message.len(),
            started.elapsed().as_secs_f64() * 1e3
        );
    }
    drop(child);

    // Go client, weir server.
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let router = Router::new().unary(ECHO, |request| async move { Ok(request.message) });
    let server = tokio::spawn(async move { router.serve_tcp(listener, Config::default()).await });
    for case in GO_CASES {
        let output = Command::new(&peer)
            .args(["-mode", "client", "-addr", &addr.to_string(), "-case", case])
            .kill_on_drop(true)
            .output();
        let output = timeout(STEP, output)
            .await
            .map_err(|_| format!("the Go client's {case} case timed out"))?
            .map_err(|e| e.to_string())?;
        let said = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() || said.trim() != format!("PASS {case}") {
            return Err(format!(
                "Go client, case {case}: {said}{}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        agreed += 1;
        let _ = writeln!(out, "   Go client -> weir server: case {case} passed");
    }
    server.abort();
    Ok(agreed)
}
