//! Live interop with the stock Go DRPC (storj.io/drpc, the peer in tests/interop/go), compat
//! mode, over loopback TCP: for every case, the Go client against a weir-tokio server, and a
//! weir-tokio client against the Go server.
//!
//! The peer binary comes from `make go-peer` (target/drpc-go-peer, or the path in WEIR_GO_PEER);
//! the tests fail when it is missing.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::timeout;
use weir::mux::session::Config;
use weir::mux::wire::Metadata;
use weir_tokio::{Client, Error, IncomingStream, Router, Status};

const ECHO: &str = "/interop.Interop/Echo";
const FAIL: &str = "/interop.Interop/Fail";
const SERVER_STREAM: &str = "/interop.Interop/ServerStream";
const CLIENT_STREAM: &str = "/interop.Interop/ClientStream";
const BIDI: &str = "/interop.Interop/Bidi";
const METADATA: &str = "/interop.Interop/Metadata";
const HOLD: &str = "/interop.Interop/Hold";
const CANCEL_REPORT: &str = "/interop.Interop/CancelReport";
const UNKNOWN: &str = "/interop.Interop/Nope";
/// Fail answers with this code and "boom: " followed by the request.
const FAIL_CODE: u64 = 4_242_424_242_424;

/// Every case gets this long, start to end.
const CASE_TIMEOUT: Duration = Duration::from_secs(60);

/// Both peers accept packets up to 32 MiB, so that the 16 MiB message fits (Go's default is 4).
fn config() -> Config {
    Config {
        max_packet_len: 32 << 20,
        max_unread_per_stream: 32 << 20,
        ..Config::default()
    }
}

/// The peer's data pattern: byte `i` is `(i*31 + i>>8) mod 251`, so that no two 64 KiB frames
/// are alike.
fn pattern(len: usize) -> Bytes {
    (0..len)
        .map(|i| ((i * 31 + (i >> 8)) % 251) as u8)
        .collect::<Vec<_>>()
        .into()
}

/// The metadata the cases send, and the Metadata rpc's answer to it: sorted `key=value` lines.
fn case_metadata() -> Metadata {
    Metadata::from_iter([("tenant", "acme"), ("trace", "ü-1"), ("empty", "")])
}

fn format_metadata(metadata: &Metadata) -> String {
    let mut lines: Vec<String> = metadata
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                String::from_utf8_lossy(k),
                String::from_utf8_lossy(v)
            )
        })
        .collect();
    lines.sort();
    lines.join("\n")
}

fn go_peer() -> PathBuf {
    let path = std::env::var_os("WEIR_GO_PEER")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/drpc-go-peer")
        });
    assert!(
        path.is_file(),
        "the Go DRPC peer is missing at {} (WEIR_GO_PEER): build it with `make go-peer`",
        path.display()
    );
    path
}

// ---- Go client, weir server -----------------------------------------------------------------

/// What the weir server saw, for the checks on its side.
#[derive(Default)]
struct Seen {
    /// The rpcs its handlers answered, in order (an unknown rpc has no handler).
    calls: Vec<String>,
    metadata: Option<Metadata>,
    client_stream: Vec<Bytes>,
    unary_lens: Vec<usize>,
}

/// The Go peer's service, in weir.
fn router(seen: Arc<Mutex<Seen>>) -> Router {
    let (holds_tx, holds_rx) = mpsc::unbounded_channel::<String>();
    let holds_rx = Arc::new(tokio::sync::Mutex::new(holds_rx));
    let note = move |seen: &Arc<Mutex<Seen>>, rpc: &str| {
        seen.lock().unwrap().calls.push(rpc.to_owned());
    };
    let s = seen.clone();
    let router = Router::new().unary(ECHO, move |request| {
        note(&s, ECHO);
        s.lock().unwrap().unary_lens.push(request.message.len());
        async move { Ok(request.message) }
    });
    let s = seen.clone();
    let router = router.unary(FAIL, move |request| {
        note(&s, FAIL);
        let message = format!("boom: {}", String::from_utf8_lossy(&request.message));
        async move { Err::<Bytes, _>(Status::new(FAIL_CODE, message)) }
    });
    let s = seen.clone();
    let router = router.unary(METADATA, move |request| {
        note(&s, METADATA);
        s.lock().unwrap().metadata = Some(request.metadata.clone());
        let reply = Bytes::from(format_metadata(&request.metadata));
        async move { Ok(reply) }
    });
    let s = seen.clone();
    let router = router.streaming(SERVER_STREAM, move |mut stream| {
        note(&s, SERVER_STREAM);
        async move {
            let request = stream.recv().await?.unwrap_or_default();
            let n: usize = std::str::from_utf8(&request)
                .ok()
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| Status::new(0, "not a count"))?;
            for i in 0..n {
                stream.send(i.to_string()).await?;
            }
            Ok(())
        }
    });
    let s = seen.clone();
    let router = router.streaming(CLIENT_STREAM, move |mut stream| {
        note(&s, CLIENT_STREAM);
        let s = s.clone();
        async move {
            let mut parts = Vec::new();
            while let Some(part) = stream.recv().await? {
                parts.push(part);
            }
            let joined: Vec<_> = parts.iter().map(|p| String::from_utf8_lossy(p)).collect();
            let reply = format!("{}:{}", parts.len(), joined.join(","));
            s.lock().unwrap().client_stream = parts;
            stream.send(reply).await?;
            Ok(())
        }
    });
    let s = seen.clone();
    let router = router.streaming(BIDI, move |mut stream| {
        note(&s, BIDI);
        async move {
            while let Some(message) = stream.recv().await? {
                stream.send(message).await?;
            }
            Ok(())
        }
    });
    let s = seen.clone();
    let router = router.streaming(HOLD, move |stream: IncomingStream| {
        note(&s, HOLD);
        let holds = holds_tx.clone();
        async move {
            let (n, end) = hold(stream).await;
            // As the Go peer words it: "canceled", "EOF" for a clean end, or the error.
            let why = match &end {
                Ok(()) => "EOF".to_owned(),
                Err(Error::Canceled) => "canceled".to_owned(),
                Err(other) => other.to_string(),
            };
            let _ = holds.send(format!("received {n}, then {why}"));
            end.map_err(Status::from)
        }
    });
    let s = seen;
    router.unary(CANCEL_REPORT, move |_| {
        note(&s, CANCEL_REPORT);
        let holds = holds_rx.clone();
        async move {
            let report = timeout(Duration::from_secs(5), async {
                holds.lock().await.recv().await
            });
            match report.await {
                Ok(Some(report)) => Ok(Bytes::from(report)),
                _ => Err(Status::new(0, "no Hold stream ended")),
            }
        }
    })
}

/// Echo until the stream ends: how many messages made it, and how it ended (`Ok` for a clean
/// end of the peer's messages).
async fn hold(mut stream: IncomingStream) -> (usize, Result<(), Error>) {
    let mut n = 0;
    loop {
        match stream.recv().await {
            // Counted on receipt: the peer cancels as soon as it has the echo, which can land
            // before `send` returns.
            Ok(Some(message)) => {
                n += 1;
                if let Err(e) = stream.send(message).await {
                    return (n, Err(e));
                }
            }
            Ok(None) => return (n, Ok(())),
            Err(e) => return (n, Err(e)),
        }
    }
}

/// Run the Go client's `case` against a weir server; the client checks its results itself.
/// Returns what the server saw.
async fn go_client(case: &str) -> Seen {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn({
        let router = router(seen.clone());
        async move { router.serve_tcp(listener, config()).await }
    });
    let output = Command::new(go_peer())
        .args(["-mode", "client", "-addr", &addr.to_string(), "-case", case])
        .kill_on_drop(true)
        .output();
    let output = timeout(CASE_TIMEOUT, output)
        .await
        .unwrap_or_else(|_| panic!("the Go client's {case} case timed out"))
        .unwrap();
    server.abort();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout == format!("PASS {case}\n"),
        "Go client, case {case}: {}\nstdout: {stdout}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    seen
}

// ---- weir client, Go server -----------------------------------------------------------------

/// The Go server: a child process killed when dropped.
struct GoServer {
    _child: Child,
    addr: String,
}

async fn go_server() -> GoServer {
    let mut child = Command::new(go_peer())
        .args(["-mode", "server", "-addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("the Go server did not start in 10 s")
        .unwrap()
        .expect("the Go server exited before listening");
    let addr = line
        .strip_prefix("listening ")
        .unwrap_or_else(|| panic!("unexpected first line from the Go server: {line}"))
        .to_owned();
    GoServer {
        _child: child,
        addr,
    }
}

/// Run `case` with a weir client against a fresh Go server.
async fn weir_client<F, Fut>(case: F)
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let server = go_server().await;
    let tcp = TcpStream::connect(&server.addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let client = Client::connect(tcp, config());
    timeout(CASE_TIMEOUT, case(client))
        .await
        .expect("the case timed out");
}

async fn echo(client: &Client, message: Bytes) {
    let reply = client.call(ECHO, message.clone()).await.unwrap();
    assert_eq!(reply.len(), message.len());
    assert!(reply == message, "the echo differs");
}

fn assert_remote(error: Error, code: u64, message: &str) {
    match error {
        Error::Remote {
            code: c,
            message: m,
        } => {
            assert_eq!((c, m.as_str()), (code, message));
        }
        other => panic!("want a remote error (code {code}) {message:?}, got {other:?}"),
    }
}

async fn recv_all(stream: &mut weir_tokio::Stream) -> Vec<Bytes> {
    let mut all = Vec::new();
    while let Some(message) = stream.recv().await.unwrap() {
        all.push(message);
    }
    all
}

// ---- the cases, both directions -------------------------------------------------------------

mod go_client_weir_server {
    use super::*;

    #[tokio::test]
    async fn unary() {
        let seen = go_client("unary").await;
        assert_eq!(seen.calls, [ECHO]);
        assert_eq!(seen.unary_lens, ["hello from go".len()]);
    }

    #[tokio::test]
    async fn empty() {
        let seen = go_client("empty").await;
        assert_eq!(seen.calls, [ECHO]);
        assert_eq!(seen.unary_lens, [0]);
    }

    #[tokio::test]
    async fn error() {
        // The Go client checks code 4242424242424 and "boom: go", then an echo.
        let seen = go_client("error").await;
        assert_eq!(seen.calls, [FAIL, ECHO]);
    }

    #[tokio::test]
    async fn server_stream() {
        // The Go client checks the five messages "0".."4", then EOF.
        let seen = go_client("server-stream").await;
        assert_eq!(seen.calls, [SERVER_STREAM]);
    }

    #[tokio::test]
    async fn client_stream() {
        let seen = go_client("client-stream").await;
        assert_eq!(seen.calls, [CLIENT_STREAM]);
        assert_eq!(seen.client_stream, ["one", "two", "", "three"]);
    }

    #[tokio::test]
    async fn bidi() {
        let seen = go_client("bidi").await;
        assert_eq!(seen.calls, [BIDI]);
    }

    #[tokio::test]
    async fn metadata() {
        let seen = go_client("metadata").await;
        assert_eq!(seen.calls, [METADATA]);
        assert_eq!(seen.metadata, Some(case_metadata()));
    }

    #[tokio::test]
    async fn large_1m() {
        let seen = go_client("large-1m").await;
        assert_eq!(seen.unary_lens, [1 << 20]);
    }

    #[tokio::test]
    async fn large_16m() {
        let seen = go_client("large-16m").await;
        assert_eq!(seen.unary_lens, [16 << 20]);
    }

    #[tokio::test]
    async fn cancel() {
        // The Go client soft-cancels a Hold stream after two echoes, checks its own recv fails
        // with context.Canceled, waits 100 ms, checks an echo still works on the connection
        // and that CancelReport says "received 2, then canceled".
        let seen = go_client("cancel").await;
        assert_eq!(seen.calls, [HOLD, ECHO, CANCEL_REPORT]);
    }

    /// The same without the pause: Go writes the Cancel and the next call's Invoke together,
    /// and both often arrive in one read.
    #[tokio::test]
    async fn cancel_then_call() {
        let seen = go_client("cancel-then-call").await;
        assert_eq!(seen.calls, [HOLD, ECHO, CANCEL_REPORT]);
    }

    #[tokio::test]
    async fn unknown_rpc() {
        // The Go client checks code 0 and `protocol error: unknown rpc: "/interop.Interop/Nope"`.
        let seen = go_client("unknown").await;
        assert_eq!(seen.calls, [ECHO]);
    }
}

mod weir_client_go_server {
    use super::*;

    #[tokio::test]
    async fn unary() {
        weir_client(|client| async move {
            let reply = client.call(ECHO, "hello from weir").await.unwrap();
            assert_eq!(reply, "hello from weir");
        })
        .await;
    }

    #[tokio::test]
    async fn empty() {
        weir_client(|client| async move {
            assert_eq!(client.call(ECHO, "").await.unwrap(), "");
        })
        .await;
    }

    #[tokio::test]
    async fn error() {
        weir_client(|client| async move {
            let error = client.call(FAIL, "weir").await.unwrap_err();
            assert_remote(error, FAIL_CODE, "boom: weir");
            echo(&client, Bytes::from("after error")).await;
        })
        .await;
    }

    #[tokio::test]
    async fn server_stream() {
        weir_client(|client| async move {
            let mut stream = client.open(SERVER_STREAM, &Metadata::new()).await.unwrap();
            stream.send("5").await.unwrap();
            stream.close_send().await.unwrap();
            assert_eq!(recv_all(&mut stream).await, ["0", "1", "2", "3", "4"]);
        })
        .await;
    }

    #[tokio::test]
    async fn client_stream() {
        weir_client(|client| async move {
            let mut stream = client.open(CLIENT_STREAM, &Metadata::new()).await.unwrap();
            for part in ["one", "two", "", "three"] {
                stream.send(part).await.unwrap();
            }
            stream.close_send().await.unwrap();
            assert_eq!(recv_all(&mut stream).await, ["4:one,two,,three"]);
        })
        .await;
    }

    #[tokio::test]
    async fn bidi() {
        weir_client(|client| async move {
            let mut stream = client.open(BIDI, &Metadata::new()).await.unwrap();
            for i in 0..10 {
                let message = Bytes::from(format!("ping {i}"));
                stream.send(message.clone()).await.unwrap();
                assert_eq!(stream.recv().await.unwrap(), Some(message));
            }
            stream.close_send().await.unwrap();
            assert_eq!(stream.recv().await.unwrap(), None);
        })
        .await;
    }

    #[tokio::test]
    async fn metadata() {
        weir_client(|client| async move {
            let reply = client
                .call_with_metadata(METADATA, &case_metadata(), "")
                .await
                .unwrap();
            assert_eq!(reply, "empty=\ntenant=acme\ntrace=ü-1");
        })
        .await;
    }

    #[tokio::test]
    async fn large_1m() {
        weir_client(|client| async move { echo(&client, pattern(1 << 20)).await }).await;
    }

    #[tokio::test]
    async fn large_16m() {
        weir_client(|client| async move { echo(&client, pattern(16 << 20)).await }).await;
    }

    /// Two echoes on a Hold stream, a cancel, `pause`, then an echo and the Go handler's report
    /// on the same connection.
    async fn cancel_hold(client: Client, pause: Duration) {
        let mut stream = client.open(HOLD, &Metadata::new()).await.unwrap();
        for i in 0..2 {
            let message = Bytes::from(format!("hold {i}"));
            stream.send(message.clone()).await.unwrap();
            assert_eq!(stream.recv().await.unwrap(), Some(message));
        }
        stream.cancel().await.unwrap();
        assert!(matches!(stream.recv().await, Err(Error::Canceled)));
        tokio::time::sleep(pause).await;
        echo(&client, Bytes::from("after cancel")).await;
        let report = client.call(CANCEL_REPORT, "").await.unwrap();
        assert_eq!(report, "received 2, then canceled");
    }

    #[tokio::test]
    async fn cancel() {
        weir_client(|client| cancel_hold(client, Duration::from_millis(100))).await;
    }

    #[tokio::test]
    async fn cancel_then_call() {
        weir_client(|client| cancel_hold(client, Duration::ZERO)).await;
    }

    #[tokio::test]
    async fn unknown_rpc() {
        weir_client(|client| async move {
            let error = client.call(UNKNOWN, "x").await.unwrap_err();
            assert_remote(
                error,
                0,
                "protocol error: unknown rpc: \"/interop.Interop/Nope\"",
            );
            echo(&client, Bytes::from("after unknown")).await;
        })
        .await;
    }
}

/// weir's mux mode against the stock Go peer, which speaks only compat. Not a pass/fail test:
/// each probe runs a few calls with short timeouts and prints what happened, with a summary of
/// the frames each side wrote (seen through a relay). The findings are in
/// tests/interop/go/README.md; run with
/// `cargo test -p weir-tests --test go_interop mux_probe -- --ignored --nocapture --test-threads 1`.
mod mux_probe {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio::io::AsyncWriteExt;
    use weir::mux::session::Mode;
    use weir::mux::wire::parse_frame;

    fn mux() -> Config {
        Config {
            mode: Mode::Mux,
            ..config()
        }
    }

    type Wire = Arc<Mutex<Vec<u8>>>;

    /// Relay one connection from a new listener to `target`, keeping what each side wrote.
    /// Returns the listener's address, and the client's and the server's bytes.
    async fn relay(target: String) -> (String, Wire, Wire) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let (up, down) = (Wire::default(), Wire::default());
        let (u, d) = (up.clone(), down.clone());
        tokio::spawn(async move {
            let (client, _) = listener.accept().await.unwrap();
            let server = TcpStream::connect(target).await.unwrap();
            client.set_nodelay(true).unwrap();
            server.set_nodelay(true).unwrap();
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            tokio::join!(pump(cr, sw, u), pump(sr, cw, d));
        });
        (addr, up, down)
    }

    async fn pump(
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        wire: Wire,
    ) {
        let mut buf = vec![0; 64 << 10];
        while let Ok(n @ 1..) = from.read(&mut buf).await {
            wire.lock().unwrap().extend_from_slice(&buf[..n]);
            if to.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = to.shutdown().await;
    }

    /// The frames in `wire`, runs of alike frames (same kind and stream) folded into one line.
    fn frames(who: &str, wire: &Wire) {
        let wire = wire.lock().unwrap();
        let mut rest = &wire[..];
        let mut lines: Vec<(String, usize, usize)> = Vec::new();
        while let Ok(Some((frame, used))) = parse_frame(rest) {
            let line = format!(
                "{}{} s:{}{}",
                frame.kind,
                if frame.control { " (control)" } else { "" },
                frame.id.stream,
                if frame.id.stream == 0 {
                    format!(" m:{} data:{:02x?}", frame.id.message, frame.data)
                } else if frame.kind == weir::mux::wire::Kind::ERROR && frame.data.len() >= 8 {
                    let (code, message) = frame.data.split_at(8);
                    let code = u64::from_be_bytes(code.try_into().unwrap());
                    format!(" code:{code} {:?}", String::from_utf8_lossy(message))
                } else {
                    String::new()
                }
            );
            match lines.last_mut() {
                Some((last, n, bytes)) if *last == line => {
                    *n += 1;
                    *bytes += frame.data.len();
                }
                _ => lines.push((line, 1, frame.data.len())),
            }
            rest = &rest[used..];
        }
        eprintln!("  {who} wrote {} bytes:", wire.len());
        for (line, n, bytes) in lines {
            eprintln!("    {n} x {line} ({bytes} data bytes)");
        }
        if !rest.is_empty() {
            eprintln!("    + {} bytes that are no whole frame", rest.len());
        }
    }

    #[tokio::test]
    #[ignore = "a probe: prints what happens"]
    async fn weir_mux_client_go_server() {
        // Stream windows as large as the connection's, so that the connection's credit is what
        // runs out.
        let wide = Config {
            initial_stream_window: 16 << 20,
            ..mux()
        };
        for (name, config, sizes) in [
            (
                "5 B, 200 KiB, then 1 MiB",
                mux(),
                &[5, 200 << 10, 1 << 20][..],
            ),
            ("1 MiB first", mux(), &[1 << 20][..]),
            ("2 MiB first, 16 MiB stream windows", wide, &[2 << 20][..]),
        ] {
            eprintln!("weir mux client -> Go server, {name}:");
            let server = go_server().await;
            let (addr, up, down) = relay(server.addr.clone()).await;
            let tcp = TcpStream::connect(&addr).await.unwrap();
            tcp.set_nodelay(true).unwrap();
            let client = Client::connect(tcp, config);
            for &len in sizes {
                let call = timeout(Duration::from_secs(3), client.call(ECHO, pattern(len))).await;
                let result = match call {
                    Ok(Ok(reply)) => format!("echoed {} bytes", reply.len()),
                    Ok(Err(e)) => format!("error: {e}"),
                    Err(_) => "no answer in 3 s".to_owned(),
                };
                eprintln!("  echo of {len} bytes: {result}");
            }
            drop(client);
            tokio::time::sleep(Duration::from_millis(200)).await;
            if let Some(dir) = std::env::var_os("WEIR_PROBE_DUMP") {
                let name = name.replace(' ', "_").replace(',', "");
                std::fs::write(PathBuf::from(dir).join(name), &*up.lock().unwrap()).unwrap();
            }
            frames("weir", &up);
            frames("Go", &down);
        }
    }

    #[tokio::test]
    #[ignore = "a probe: prints what happens"]
    async fn go_client_weir_mux_server() {
        let cases = [
            "unary",
            "empty",
            "error",
            "server-stream",
            "bidi",
            "large-1m",
            "cancel",
        ];
        for case in cases {
            eprintln!("Go client -> weir mux server, {case}:");
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let server = listener.local_addr().unwrap().to_string();
            let serve = tokio::spawn({
                let router = router(Arc::default());
                async move { router.serve_tcp(listener, mux()).await }
            });
            let (addr, up, down) = relay(server).await;
            let output = Command::new(go_peer())
                .args(["-mode", "client", "-addr", &addr, "-case", case])
                .kill_on_drop(true)
                .output();
            match timeout(Duration::from_secs(5), output).await {
                Ok(output) => {
                    let output = output.unwrap();
                    eprintln!(
                        "  {}: {}",
                        output.status,
                        String::from_utf8_lossy(&output.stdout).trim()
                    );
                }
                Err(_) => eprintln!("  no result in 5 s"),
            }
            serve.abort();
            frames("Go", &up);
            frames("weir", &down);
        }
    }
}
