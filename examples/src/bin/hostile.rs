//! `make hostile`: hostile peers against fresh server processes, with the servers' peak memory.
//!
//! Each case starts a server process of its own (`hostile_server`, weir-tokio's DRPC echo
//! server, or the `proxy` binary in front of a throwaway PostgreSQL cluster), attacks it over
//! loopback TCP for a few seconds while a well-behaved client keeps calling it, then checks that
//! a new well-behaved client is still served. It prints the server's peak RSS (`VmHWM`) and its
//! RSS at the end (`VmRSS`), both in MiB, and fails when the peak passes the case's bound: the
//! server's peak before the attack plus an allowance derived from the configuration, written
//! next to each case.
//!
//! `hostile [--server PATH] [--proxy PATH] [CASE...]`: the binaries default to the ones beside
//! this one; with case names, only those cases run.

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::timeout;
use weir::mux::session::{Config, FRAME_OUTPUT_MAX};
use weir::mux::wire::{Frame, Id, Kind};
use weir_tests::postgres::Cluster;
use weir_tokio::Client;

const MIB: usize = 1 << 20;
const KIB: usize = 1 << 10;
/// The read buffer weir-tokio's driver keeps per connection (its `READ_CHUNK`).
const READ_BUFFER: usize = 256 * KIB;
/// What one open connection may cost the server besides its buffers: its task, its session and
/// the kernel's socket bookkeeping charged to the process.
const PER_CONNECTION: usize = 64 * KIB;
/// What one stream a server holds may cost: its state in the session, its handler's task and
/// the small messages it echoes.
const PER_STREAM: usize = 4 * KIB;
/// Room in every bound for what an attack touches once: the allocator's per-thread arenas, the
/// worker threads' stacks, tables that grow to their high-water mark.
const SLACK: usize = 8 * MIB;
/// How long each flood lasts.
const FLOOD_FOR: Duration = Duration::from_secs(3);
/// The well-behaved client calls this often, and fails the case when a call takes longer than
/// [`PROBE_TIMEOUT`].
const PROBE_EVERY: Duration = Duration::from_millis(100);
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// The short timeouts the slowloris and garbage cases give the server (their
/// `--handshake-timeout-ms` and `--idle-timeout-ms`).
const SHORT_TIMEOUT_MS: u64 = 500;
/// The proxy's login timeout in its cases (the flag takes whole seconds).
const LOGIN_TIMEOUT_S: u64 = 1;

/// What an attack found besides the server's memory: `(name, value)` figures to print.
type Figures = Vec<(&'static str, usize)>;

type CaseFuture<'a> = Pin<Box<dyn Future<Output = Result<Figures, String>> + Send + 'a>>;

/// A server process, killed when dropped.
struct Process {
    child: Child,
    addr: SocketAddr,
}

impl Process {
    /// Starts `program` and waits for the line that names its address (the first word that
    /// parses as one), then discards the rest of its output.
    fn start(program: &Path, args: &[String]) -> Result<Process, String> {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut line = String::new();
        let addr = loop {
            line.clear();
            if stdout.read_line(&mut line).unwrap_or(0) == 0 {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{} ended before listening", program.display()));
            }
            let found = line
                .split_whitespace()
                .find_map(|word| word.trim_end_matches(',').parse::<SocketAddr>().ok());
            if let Some(addr) = found {
                break addr;
            }
        };
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        Ok(Process { child, addr })
    }

    /// A field of `/proc/<pid>/status` in kB, as bytes.
    fn status(&self, field: &str) -> Result<usize, String> {
        let path = format!("/proc/{}/status", self.child.id());
        let status = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
            .and_then(|value| value.trim().strip_suffix(" kB")?.parse::<usize>().ok())
            .map(|kb| kb * KIB)
            .ok_or_else(|| format!("no {field} in {path}"))
    }

    fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a case needs from the harness.
struct Target {
    addr: SocketAddr,
    /// The DRPC session configuration of the server (and of the well-behaved client).
    session: Config,
}

/// One frame on the wire.
fn frame(kind: Kind, stream: u64, message: u64, data: &[u8]) -> Vec<u8> {
    let mut wire = Vec::new();
    Frame {
        kind,
        done: true,
        control: false,
        id: Id::new(stream, message),
        data,
    }
    .encode(&mut wire)
    .expect("a frame fits a Vec");
    wire
}

/// A whole unary call on `stream`: Invoke, Message, CloseSend.
fn unary_call(stream: u64, rpc: &str, message: &[u8]) -> Vec<u8> {
    let mut wire = frame(Kind::INVOKE, stream, 1, rpc.as_bytes());
    wire.extend(frame(Kind::MESSAGE, stream, 2, message));
    wire.extend(frame(Kind::CLOSE_SEND, stream, 3, &[]));
    wire
}

/// One call from a new well-behaved client.
async fn call_once(target: &Target) -> Result<(), String> {
    let attempt = async {
        let socket = TcpStream::connect(target.addr)
            .await
            .map_err(|e| e.to_string())?;
        let client = Client::connect(socket, target.session);
        let reply = client
            .call("/echo.Echo/Unary", "well-behaved")
            .await
            .map_err(|e| e.to_string())?;
        match &reply[..] {
            b"well-behaved" => Ok(()),
            other => Err(format!("the echo answered {other:?}")),
        }
    };
    timeout(PROBE_TIMEOUT, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("no answer in {PROBE_TIMEOUT:?}")))
}

/// Retries [`call_once`] until it succeeds or `within` passes (the server frees places as it
/// notices closed connections).
async fn call_within(target: &Target, within: Duration) -> Result<(), String> {
    let deadline = Instant::now() + within;
    loop {
        match call_once(target).await {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                return Err(format!("a new client is not served after the attack: {e}"))
            }
            Err(_) => tokio::time::sleep(PROBE_EVERY).await,
        }
    }
}

/// A well-behaved client on one connection, opened before the attack, calling every
/// [`PROBE_EVERY`] until stopped; it ends with the number of calls answered, or the first
/// failure.
fn probe(target: &Target, stop: Arc<AtomicBool>) -> JoinHandle<Result<usize, String>> {
    let (addr, session) = (target.addr, target.session);
    tokio::spawn(async move {
        let socket = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
        let client = Client::connect(socket, session);
        let mut answered = 0;
        while !stop.load(Ordering::Relaxed) {
            let call = client.call("/echo.Echo/Unary", "during");
            match timeout(PROBE_TIMEOUT, call).await {
                Ok(Ok(reply)) if &reply[..] == b"during" => answered += 1,
                Ok(Ok(reply)) => return Err(format!("the echo answered {reply:?}")),
                Ok(Err(e)) => return Err(format!("a call during the attack failed: {e}")),
                Err(_) => {
                    return Err(format!(
                        "a call during the attack took over {PROBE_TIMEOUT:?}"
                    ))
                }
            }
            tokio::time::sleep(PROBE_EVERY).await;
        }
        Ok(answered)
    })
}

/// Writes the batches `next` makes on one connection for [`FLOOD_FOR`], never reading; returns
/// the connection still open.
async fn flood_unread(
    addr: SocketAddr,
    mut next: impl FnMut() -> Vec<u8>,
) -> Result<TcpStream, String> {
    let mut socket = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let deadline = tokio::time::Instant::now() + FLOOD_FOR;
    while tokio::time::Instant::now() < deadline {
        let batch = next();
        match tokio::time::timeout_at(deadline, socket.write_all(&batch)).await {
            Ok(Ok(())) => {}
            // Blocked until the end (the server stopped reading), or closed by the server.
            Ok(Err(_)) | Err(_) => break,
        }
    }
    Ok(socket)
}

/// Waits until the server has closed every one of `sockets` (end of stream or reset), reading
/// and discarding what it sends; fails with the number still open after `within`.
async fn all_closed(sockets: Vec<TcpStream>, within: Duration) -> Result<(), String> {
    let total = sockets.len();
    match still_open(sockets, within).await? {
        0 => Ok(()),
        open => Err(format!(
            "{open} of {total} connections still open after {within:?}"
        )),
    }
}

/// How many of `sockets` the server has not closed (end of stream or reset) after `within`,
/// reading and discarding what it sends meanwhile.
async fn still_open(sockets: Vec<TcpStream>, within: Duration) -> Result<usize, String> {
    let waits = sockets.into_iter().map(|mut socket| {
        tokio::spawn(async move {
            let mut sink = vec![0u8; 16 * KIB];
            let read = async { while let Ok(1..) = socket.read(&mut sink).await {} };
            timeout(within, read).await.is_ok()
        })
    });
    let mut open = 0;
    for wait in waits.collect::<Vec<_>>() {
        if !wait.await.map_err(|e| e.to_string())? {
            open += 1;
        }
    }
    Ok(open)
}

/// A small xorshift generator, so that the garbage is the same on every run.
struct Noise(u64);

impl Noise {
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                self.0 as u8
            })
            .collect()
    }
}

/// Well-formed frames that break the protocol, and malformed ones.
fn invalid_frames() -> Vec<Vec<u8>> {
    let mut overlong_varint = vec![0x05];
    overlong_varint.extend([0xff; 11]);
    vec![
        // A Message on a stream never invoked.
        frame(Kind::MESSAGE, 1, 2, b"orphan"),
        // Stream and packet 0.
        frame(Kind::INVOKE, 0, 0, b"/echo.Echo/Unary"),
        // An unknown kind.
        frame(Kind(0x3e), 1, 1, b"?"),
        // Metadata that is not protobuf.
        frame(Kind::INVOKE_METADATA, 1, 1, &[0xff; 32]),
        // A stream id that goes backwards.
        [
            unary_call(5, "/echo.Echo/Unary", b"x"),
            frame(Kind::INVOKE, 3, 1, b"/echo.Echo/Unary"),
        ]
        .concat(),
        // A frame longer than max_packet_len announces itself, then never comes.
        {
            let mut wire = vec![0x05, 0x01, 0x01];
            wire.extend([0x80, 0x80, 0x80, 0x80, 0x01]);
            wire
        },
        overlong_varint,
    ]
}

/// A server case: its name, the server's flags, the allowance over the peak before the attack,
/// and the attack.
struct ServerCase {
    name: &'static str,
    args: &'static [&'static str],
    allowance: usize,
    attack: for<'a> fn(&'a Target) -> CaseFuture<'a>,
}

fn mux_output_bound() -> usize {
    Config::mux().max_queued_output + FRAME_OUTPUT_MAX
}

fn held_streams() -> usize {
    // Open streams, and as many ended ones not yet read to the end.
    2 * Config::mux().max_concurrent_streams
}

const SLOWLORIS_CONNECTIONS: usize = 200;
const GARBAGE_CONNECTIONS: usize = 100;
const STREAM_FLOOD_CONNECTIONS: usize = 4;
const STREAM_FLOOD_STREAMS: u64 = 20_000;
/// The `--max-connections` of idle_past_cap_mux.
const CAP: usize = 100;
const PAST_CAP: usize = 150;

fn server_cases() -> Vec<ServerCase> {
    vec![
        // One connection opens streams far past max_concurrent_streams and never reads the
        // refusals. Bound: its output (max_queued_output + FRAME_OUTPUT_MAX), its read buffer,
        // the streams held, and the well-behaved client's connection.
        ServerCase {
            name: "invoke_flood_mux",
            args: &["--mode", "mux"],
            allowance: mux_output_bound()
                + READ_BUFFER
                + held_streams() * PER_STREAM
                + 2 * PER_CONNECTION
                + SLACK,
            attack: |target| {
                Box::pin(async move {
                    let mut next = 1;
                    let _socket = flood_unread(target.addr, || {
                        let batch: Vec<u8> = (next..next + 1000)
                            .flat_map(|s| frame(Kind::INVOKE, s, 1, b"/echo.Echo/Unary"))
                            .collect();
                        next += 1000;
                        batch
                    })
                    .await?;
                    Ok(Figures::new())
                })
            },
        },
        // One connection sends whole unary calls of 1 KiB back to back and never reads the
        // answers. Bound: as the Invoke flood (compat mode holds one stream at a time).
        ServerCase {
            name: "pipelined_unary_mux",
            args: &["--mode", "mux"],
            allowance: mux_output_bound()
                + READ_BUFFER
                + held_streams() * (PER_STREAM + KIB)
                + 2 * PER_CONNECTION
                + SLACK,
            attack: |target| Box::pin(pipelined_unary(target)),
        },
        ServerCase {
            name: "pipelined_unary_compat",
            args: &["--mode", "compat"],
            allowance: mux_output_bound()
                + READ_BUFFER
                + held_streams() * (PER_STREAM + KIB)
                + 2 * PER_CONNECTION
                + SLACK,
            attack: |target| Box::pin(pipelined_unary(target)),
        },
        // SLOWLORIS_CONNECTIONS connections send three bytes of an Invoke and wait: each is
        // closed after the handshake timeout. Bound: each connection's cost and read buffer.
        ServerCase {
            name: "slowloris_mux",
            args: &["--mode", "mux", "--handshake-timeout-ms", "500"],
            allowance: (SLOWLORIS_CONNECTIONS + 1) * (READ_BUFFER + PER_CONNECTION) + SLACK,
            attack: |target| Box::pin(slowloris(target)),
        },
        ServerCase {
            name: "slowloris_compat",
            args: &["--mode", "compat", "--handshake-timeout-ms", "500"],
            allowance: (SLOWLORIS_CONNECTIONS + 1) * (READ_BUFFER + PER_CONNECTION) + SLACK,
            attack: |target| Box::pin(slowloris(target)),
        },
        // SLOWLORIS_CONNECTIONS connections send one whole frame that begins an Invoke packet
        // (done unset) and wait. The handshake timer stops at the first whole frame; a stream
        // whose Invoke never completes is no call, so the idle timer closes every one. Bound:
        // as slowloris.
        ServerCase {
            name: "half_packet_mux",
            args: &[
                "--mode",
                "mux",
                "--handshake-timeout-ms",
                "500",
                "--idle-timeout-ms",
                "500",
            ],
            allowance: (SLOWLORIS_CONNECTIONS + 1) * (READ_BUFFER + PER_CONNECTION) + SLACK,
            attack: |target| Box::pin(half_packet(target)),
        },
        // GARBAGE_CONNECTIONS connections: half send 64 KiB of noise, half the invalid frames
        // of `invalid_frames`. The server closes each on the error or after a short handshake
        // or idle timeout. Bound: each connection's read buffer filled.
        ServerCase {
            name: "garbage_mux",
            args: &[
                "--mode",
                "mux",
                "--handshake-timeout-ms",
                "500",
                "--idle-timeout-ms",
                "500",
            ],
            allowance: (GARBAGE_CONNECTIONS + 1) * (READ_BUFFER + PER_CONNECTION) + SLACK,
            attack: |target| Box::pin(garbage(target)),
        },
        ServerCase {
            name: "garbage_compat",
            args: &[
                "--mode",
                "compat",
                "--handshake-timeout-ms",
                "500",
                "--idle-timeout-ms",
                "500",
            ],
            allowance: (GARBAGE_CONNECTIONS + 1) * (READ_BUFFER + PER_CONNECTION) + SLACK,
            attack: |target| Box::pin(garbage(target)),
        },
        // STREAM_FLOOD_CONNECTIONS connections each open STREAM_FLOOD_STREAMS Bidi streams with
        // one small message and keep them open, reading all the server sends (the echoes and
        // the refusals: the case reports the bytes read). Bound: per connection, its output, its
        // read buffer and the streams held.
        ServerCase {
            name: "stream_flood_mux",
            args: &["--mode", "mux"],
            allowance: (STREAM_FLOOD_CONNECTIONS + 1)
                * (mux_output_bound() + READ_BUFFER + held_streams() * PER_STREAM)
                + SLACK,
            attack: |target| Box::pin(stream_flood(target)),
        },
        // PAST_CAP idle connections against --max-connections CAP: those past the cap are
        // closed at once. Bound: CAP connections.
        ServerCase {
            name: "idle_past_cap_mux",
            args: &["--mode", "mux", "--max-connections", "100"],
            allowance: CAP * PER_CONNECTION + SLACK,
            attack: |target| Box::pin(idle_past_cap(target)),
        },
    ]
}

async fn pipelined_unary(target: &Target) -> Result<Figures, String> {
    let mut next = 1;
    let message = [7u8; KIB];
    let _socket = flood_unread(target.addr, || {
        let batch: Vec<u8> = (next..next + 100)
            .flat_map(|s| unary_call(s, "/echo.Echo/Unary", &message))
            .collect();
        next += 100;
        batch
    })
    .await?;
    Ok(Figures::new())
}

async fn slowloris(target: &Target) -> Result<Figures, String> {
    let half = &frame(Kind::INVOKE, 1, 1, b"/echo.Echo/Unary")[..3];
    let sockets = connect_and_send(target, SLOWLORIS_CONNECTIONS, half).await?;
    all_closed(
        sockets,
        Duration::from_millis(SHORT_TIMEOUT_MS) + Duration::from_secs(2),
    )
    .await?;
    Ok(Figures::new())
}

async fn half_packet(target: &Target) -> Result<Figures, String> {
    let mut begun = Vec::new();
    Frame {
        kind: Kind::INVOKE,
        done: false,
        control: false,
        id: Id::new(1, 1),
        data: &b"/echo.Echo/Unary"[..],
    }
    .encode(&mut begun)
    .expect("a frame fits a Vec");
    let sockets = connect_and_send(target, SLOWLORIS_CONNECTIONS, &begun).await?;
    let within = Duration::from_millis(2 * SHORT_TIMEOUT_MS) + Duration::from_secs(2);
    all_closed(sockets, within).await?;
    Ok(Figures::new())
}

/// `n` connections that each send `wire` and wait.
async fn connect_and_send(
    target: &Target,
    n: usize,
    wire: &[u8],
) -> Result<Vec<TcpStream>, String> {
    let mut sockets = Vec::new();
    for _ in 0..n {
        let mut socket = TcpStream::connect(target.addr)
            .await
            .map_err(|e| e.to_string())?;
        socket.write_all(wire).await.map_err(|e| e.to_string())?;
        sockets.push(socket);
    }
    Ok(sockets)
}

async fn garbage(target: &Target) -> Result<Figures, String> {
    let invalid = invalid_frames();
    let mut noise = Noise(0x9e37_79b9_7f4a_7c15);
    let mut sockets = Vec::new();
    for i in 0..GARBAGE_CONNECTIONS {
        let wire = match i % 2 {
            0 => noise.bytes(64 * KIB),
            _ => invalid[i / 2 % invalid.len()].clone(),
        };
        let mut socket = TcpStream::connect(target.addr)
            .await
            .map_err(|e| e.to_string())?;
        // The server may close before it has read everything: that is its answer.
        let _ = socket.write_all(&wire).await;
        sockets.push(socket);
    }
    let within = Duration::from_millis(2 * SHORT_TIMEOUT_MS) + Duration::from_secs(2);
    all_closed(sockets, within).await?;
    Ok(Figures::new())
}

async fn stream_flood(target: &Target) -> Result<Figures, String> {
    let read_total = Arc::new(AtomicUsize::new(0));
    let mut floods = Vec::new();
    for _ in 0..STREAM_FLOOD_CONNECTIONS {
        let socket = TcpStream::connect(target.addr)
            .await
            .map_err(|e| e.to_string())?;
        let (mut read, mut write) = socket.into_split();
        let total = read_total.clone();
        let reader = tokio::spawn(async move {
            let mut sink = vec![0u8; 64 * KIB];
            while let Ok(n @ 1..) = read.read(&mut sink).await {
                total.fetch_add(n, Ordering::Relaxed);
            }
        });
        floods.push(tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + FLOOD_FOR;
            for first in (1..=STREAM_FLOOD_STREAMS).step_by(500) {
                let batch: Vec<u8> = (first..first + 500)
                    .flat_map(|s| {
                        [
                            frame(Kind::INVOKE, s, 1, b"/echo.Echo/Bidi"),
                            frame(Kind::MESSAGE, s, 2, &[1u8; 64]),
                        ]
                        .concat()
                    })
                    .collect();
                match tokio::time::timeout_at(deadline, write.write_all(&batch)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Err(format!("the server closed a stream flooder: {e}")),
                    Err(_) => break,
                }
            }
            tokio::time::sleep_until(deadline).await;
            Ok((write, reader))
        }));
    }
    // Every connection stays open until all have flooded.
    let mut held = Vec::new();
    for flood in floods {
        held.push(flood.await.map_err(|e| e.to_string())??);
    }
    for (_, reader) in &held {
        reader.abort();
    }
    Ok(vec![("bytes_read", read_total.load(Ordering::Relaxed))])
}

async fn idle_past_cap(target: &Target) -> Result<Figures, String> {
    let mut sockets = Vec::new();
    for _ in 0..PAST_CAP {
        sockets.push(
            TcpStream::connect(target.addr)
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    // The well-behaved client holds one place: the last PAST_CAP - (CAP - 1) are closed at
    // once, the others stay open.
    let past = sockets.split_off(CAP - 1);
    all_closed(past, Duration::from_secs(1)).await?;
    let mut still_open = 0;
    for socket in &sockets {
        if timeout(Duration::from_millis(1), socket.readable())
            .await
            .is_err()
        {
            still_open += 1;
        }
    }
    match still_open == CAP - 1 {
        true => Ok(Figures::new()),
        false => Err(format!(
            "{still_open} of the first {} connections are open",
            CAP - 1
        )),
    }
}

/// The outcome of one case.
struct Measured {
    peak: usize,
    end: usize,
    bound: usize,
    figures: Figures,
}

fn mib(bytes: usize) -> String {
    format!("{:.1}", bytes as f64 / MIB as f64)
}

fn report(name: &str, measured: &Measured, elapsed: Duration) {
    println!("hostile_{name}_peak_rss_mib={}", mib(measured.peak));
    println!("hostile_{name}_end_rss_mib={}", mib(measured.end));
    println!("hostile_{name}_bound_mib={}", mib(measured.bound));
    for (figure, value) in &measured.figures {
        println!("hostile_{name}_{figure}={value}");
    }
    println!("hostile_{name}_seconds={:.1}", elapsed.as_secs_f64());
}

async fn run_server_case(program: &Path, case: &ServerCase) -> Result<Measured, String> {
    let args: Vec<String> = case.args.iter().map(|s| s.to_string()).collect();
    let mut process = Process::start(program, &args)?;
    let session = match case.args.windows(2).any(|w| w == ["--mode", "compat"]) {
        true => Config::default(),
        false => Config::mux(),
    };
    let target = Target {
        addr: process.addr,
        session,
    };
    call_once(&target).await?;
    let bound = process.status("VmHWM")? + case.allowance;
    let stop = Arc::new(AtomicBool::new(false));
    let prober = probe(&target, stop.clone());
    tokio::time::sleep(PROBE_EVERY).await;
    let attacked = (case.attack)(&target).await;
    stop.store(true, Ordering::Relaxed);
    let answered = prober.await.map_err(|e| e.to_string())??;
    let figures = attacked?;
    if answered == 0 {
        return Err("the well-behaved client got no answer during the attack".into());
    }
    call_within(&target, Duration::from_secs(5)).await?;
    if process.exited() {
        return Err("the server exited".into());
    }
    Ok(Measured {
        peak: process.status("VmHWM")?,
        end: process.status("VmRSS")?,
        bound,
        figures,
    })
}

/// A proxy case: its cap on client connections, the silent clients and the allowance.
struct ProxyCase {
    name: &'static str,
    max_client_connections: usize,
    silent: usize,
    allowance: usize,
}

const PROXY_CAP: usize = 50;

fn proxy_cases() -> Vec<ProxyCase> {
    vec![
        // Silent clients under the cap: each is closed after the login timeout, while a real
        // client connects and queries. Bound: each client connection's cost.
        ProxyCase {
            name: "proxy_silent_login_timeout",
            max_client_connections: 1000,
            silent: 200,
            allowance: 202 * PER_CONNECTION + SLACK,
        },
        // Silent clients past --max-client-connections: those past it hear SQLSTATE 53300 at
        // once; the rest are closed after the login timeout, and a real client that was refused
        // meanwhile gets in then. Bound: PROXY_CAP connections, and the refusals.
        ProxyCase {
            name: "proxy_silent_past_cap",
            max_client_connections: PROXY_CAP,
            silent: 150,
            allowance: 152 * PER_CONNECTION + SLACK,
        },
    ]
}

async fn pg_query(config: &tokio_postgres::Config) -> Result<(), String> {
    let attempt = async {
        let client = weir_tests::postgres::connect(config)
            .await
            .map_err(|e| e.to_string())?;
        let row = client
            .query_one("SELECT 40 + 2", &[])
            .await
            .map_err(|e| e.to_string())?;
        match row.get::<_, i32>(0) {
            42 => Ok(()),
            other => Err(format!("SELECT 40 + 2 gave {other}")),
        }
    };
    timeout(PROBE_TIMEOUT, attempt)
        .await
        .unwrap_or_else(|_| Err(format!("no answer in {PROBE_TIMEOUT:?}")))
}

async fn run_proxy_case(
    program: &Path,
    cluster: &Cluster,
    case: &ProxyCase,
) -> Result<Measured, String> {
    let args: Vec<String> = [
        "--listen",
        "127.0.0.1:0",
        "--dialect",
        "postgres",
        "--quiet",
        "--stats-every-s",
        "0",
        "--login-timeout-s",
        &LOGIN_TIMEOUT_S.to_string(),
        "--max-client-connections",
        &case.max_client_connections.to_string(),
        "--backend",
        &cluster.addr().to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut process = Process::start(program, &args)?;
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(process.addr.port())
        .user("postgres")
        .dbname("postgres");
    pg_query(&config).await?;
    let bound = process.status("VmHWM")? + case.allowance;

    // A real client with a session open before the attack keeps querying through it.
    let kept = weir_tests::postgres::connect(&config)
        .await
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut silent = Vec::new();
    for _ in 0..case.silent {
        silent.push(
            TcpStream::connect(process.addr)
                .await
                .map_err(|e| e.to_string())?,
        );
    }
    // Past the cap (the kept client holds one place), clients hear 53300 at once.
    let held = (case.max_client_connections - 1).min(case.silent);
    let past = silent.split_off(held);
    let refused = refusals(past).await?;
    if refused != case.silent - held {
        return Err(format!(
            "{refused} of {} clients past the cap heard 53300",
            case.silent - held
        ));
    }
    // Under the cap, a new real client gets in at once; at the cap, once the login timeout
    // has freed places.
    let login_timeout = Duration::from_secs(LOGIN_TIMEOUT_S);
    let deadline = Instant::now() + login_timeout + Duration::from_secs(2);
    let mut got_in = pg_query(&config).await;
    while got_in.is_err() && held + 1 == case.max_client_connections && Instant::now() < deadline {
        tokio::time::sleep(PROBE_EVERY).await;
        got_in = pg_query(&config).await;
    }
    got_in.map_err(|e| format!("a real client did not get in: {e}"))?;
    all_closed(silent, login_timeout + Duration::from_secs(2)).await?;
    if started.elapsed() < login_timeout {
        return Err("silent clients were closed before the login timeout".into());
    }
    let row = timeout(PROBE_TIMEOUT, kept.query_one("SELECT 1", &[]))
        .await
        .map_err(|_| "the kept session did not answer".to_string())?;
    row.map_err(|e| format!("the kept session failed: {e}"))?;
    pg_query(&config).await?;
    if process.exited() {
        return Err("the proxy exited".into());
    }
    Ok(Measured {
        peak: process.status("VmHWM")?,
        end: process.status("VmRSS")?,
        bound,
        figures: Figures::new(),
    })
}

/// How many of `sockets` got an ErrorResponse with SQLSTATE 53300 and then the end.
async fn refusals(sockets: Vec<TcpStream>) -> Result<usize, String> {
    let mut refused = 0;
    for mut socket in sockets {
        let mut reply = Vec::new();
        let read = timeout(Duration::from_secs(2), socket.read_to_end(&mut reply)).await;
        let text = String::from_utf8_lossy(&reply);
        if read.is_ok() && reply.first() == Some(&b'E') && text.contains("53300") {
            refused += 1;
        }
    }
    Ok(refused)
}

struct Options {
    server: PathBuf,
    proxy: PathBuf,
    only: Vec<String>,
}

fn options() -> Result<Options, String> {
    let here = std::env::current_exe().map_err(|e| e.to_string())?;
    let dir = here.parent().ok_or("no directory for this binary")?;
    let mut options = Options {
        server: dir.join("hostile_server"),
        proxy: dir.join("proxy"),
        only: Vec::new(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--server" => options.server = args.next().ok_or("--server needs a path")?.into(),
            "--proxy" => options.proxy = args.next().ok_or("--proxy needs a path")?.into(),
            _ => options.only.push(arg),
        }
    }
    Ok(options)
}

fn main() {
    let options = match options() {
        Ok(options) => options,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let failures = runtime.block_on(run(options));
    if !failures.is_empty() {
        for failure in &failures {
            println!("hostile: FAIL: {failure}");
        }
        std::process::exit(1);
    }
}

/// Runs the chosen cases and returns what failed.
async fn run(options: Options) -> Vec<String> {
    let chosen = |name: &str| options.only.is_empty() || options.only.iter().any(|o| o == name);
    let mut failures = Vec::new();
    let mut judge = |name: &str, started: Instant, result: Result<Measured, String>| match result {
        Ok(measured) => {
            report(name, &measured, started.elapsed());
            if measured.peak > measured.bound {
                failures.push(format!(
                    "{name}: peak RSS {} MiB passes its bound of {} MiB",
                    mib(measured.peak),
                    mib(measured.bound)
                ));
            }
        }
        Err(e) => failures.push(format!("{name}: {e}")),
    };
    for case in server_cases().iter().filter(|case| chosen(case.name)) {
        let started = Instant::now();
        judge(
            case.name,
            started,
            run_server_case(&options.server, case).await,
        );
    }
    let cases: Vec<ProxyCase> = proxy_cases()
        .into_iter()
        .filter(|case| chosen(case.name))
        .collect();
    if !cases.is_empty() {
        match Cluster::start() {
            Ok(cluster) => {
                for case in &cases {
                    let started = Instant::now();
                    judge(
                        case.name,
                        started,
                        run_proxy_case(&options.proxy, &cluster, case).await,
                    );
                }
            }
            Err(e) => failures.push(format!("no PostgreSQL cluster for the proxy cases: {e}")),
        }
    }
    failures
}
