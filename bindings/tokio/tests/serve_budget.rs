//! `ServeConfig::max_buffered_bytes` over loopback TCP: many peers that each send most of a
//! large frame and stop keep the server's total under its budget, and a well-behaved client is
//! still answered.

mod common;

use std::time::Duration;

use common::echo_router;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use weir::mux::session::Config;
use weir::mux::wire::{Frame, Id, Kind};
use weir_tokio::{Client, ServeConfig};

/// An Invoke of the echo rpc on stream 1, and all but the last `missing` bytes of a Message
/// frame of `len` bytes.
fn unfinished_call(len: usize, missing: usize) -> Vec<u8> {
    let mut wire = Vec::new();
    let body = vec![7u8; len];
    for (kind, data) in [
        (Kind::INVOKE, &b"/echo.Echo/Unary"[..]),
        (Kind::MESSAGE, &body[..]),
    ] {
        Frame {
            kind,
            done: true,
            control: false,
            id: Id::new(1, 1),
            data,
        }
        .encode(&mut wire)
        .unwrap();
    }
    wire.truncate(wire.len() - missing);
    wire
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_unfinished_frames_keep_the_server_under_its_budget() {
    let config = Config::default();
    let budget = 8 << 20;
    let peers = 40;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let router = echo_router();
    let mut serve = ServeConfig::new(config);
    serve.max_buffered_bytes = budget;
    let serving = router.clone();
    tokio::spawn(async move { serving.serve_tcp_with(listener, serve).await });

    let client = Client::connect(TcpStream::connect(address).await.unwrap(), config);
    assert_eq!(
        client.call("/echo.Echo/Unary", "before").await.unwrap(),
        "before"
    );

    // Each peer sends 3 MiB of a frame of 3.5 MiB, then waits: 120 MiB in all.
    let wire = unfinished_call(7 << 19, 1 << 19);
    let mut sockets = Vec::new();
    for _ in 0..peers {
        sockets.push(TcpStream::connect(address).await.unwrap());
    }
    // All are accepted before any sends.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut senders = Vec::new();
    for mut socket in sockets {
        let wire = wire.clone();
        senders.push(tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(3), socket.write_all(&wire)).await;
            socket
        }));
    }
    let mut sockets = Vec::new();
    for sender in senders {
        sockets.push(sender.await.unwrap());
    }
    // Time for the server to read whatever it would.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let answer = tokio::time::timeout(
        Duration::from_secs(5),
        client.call("/echo.Echo/Unary", "after"),
    )
    .await
    .expect("a small call is answered over the budget")
    .unwrap();
    assert_eq!(answer, "after");
    let metrics = router.serve_metrics();
    eprintln!("{metrics:?}, budget {budget} B");
    // Past the budget: what each connection read as the total crossed it (a read of 256 KiB,
    // plus the 64 KiB a connection may read over it), and the one connection completing its
    // message (under 4 MiB).
    let slack = peers * ((256 << 10) + (64 << 10)) + (4 << 20);
    assert!(metrics.buffered_bytes >= (budget / 2) as u64, "{metrics:?}");
    assert!(
        metrics.peak_buffered_bytes <= (budget + slack) as u64,
        "{metrics:?}, budget {budget}"
    );
    // Over the budget, a new connection is closed at once.
    let late = Client::connect(TcpStream::connect(address).await.unwrap(), config);
    assert!(late.call("/echo.Echo/Unary", "late").await.is_err());
    assert_eq!(router.serve_metrics().connections_over_budget, 1);
    drop(sockets);
}

/// Well-behaved clients whose messages together fill the budget 24 times over: the
/// connections stop reading, one at a time completes its message, and every call is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_calls_past_the_budget_all_complete() {
    let config = Config::default();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let router = echo_router();
    let mut serve = ServeConfig::new(config);
    serve.max_buffered_bytes = 1 << 20;
    let serving = router.clone();
    tokio::spawn(async move { serving.serve_tcp_with(listener, serve).await });

    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(Client::connect(
            TcpStream::connect(address).await.unwrap(),
            config,
        ));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let message = bytes::Bytes::from(vec![9u8; 3 << 20]);
    let calls: Vec<_> = clients
        .into_iter()
        .map(|client| {
            let message = message.clone();
            tokio::spawn(async move { client.call("/echo.Echo/Unary", message).await })
        })
        .collect();
    for call in calls {
        let answer = tokio::time::timeout(Duration::from_secs(20), call)
            .await
            .expect("every call is answered")
            .unwrap()
            .unwrap();
        assert_eq!(answer, message);
    }
    eprintln!("{:?}", router.serve_metrics());
}
