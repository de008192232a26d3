//! Hostile peers over loopback TCP: one that sends but never reads, one that sends half a
//! frame and waits. Each is held to the server's configured bounds while other clients are
//! served.

mod common;

use std::time::{Duration, Instant};

use common::echo_router;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use weir::mux::session::{Config, FRAME_OUTPUT_MAX};
use weir::mux::wire::{Frame, Id, Kind};
use weir_tokio::{Client, Server};

/// `n` Invokes for the streams from `first` on, back to back.
fn invokes(first: u64, n: u64) -> Vec<u8> {
    let mut wire = Vec::new();
    for stream in first..first + n {
        Frame {
            kind: Kind::INVOKE,
            done: true,
            control: false,
            id: Id::new(stream, 1),
            data: &b"/echo.Echo/Unary"[..],
        }
        .encode(&mut wire)
        .unwrap();
    }
    wire
}

/// A client that opens streams as fast as it can, far past the stream limit, and never reads
/// the refusals: the server stops reading it once its output is full, and answers a
/// well-behaved client meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_floods_invokes_and_never_reads_is_held_to_the_output_bound() {
    let config = Config::mux();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let flooding_for = Duration::from_secs(3);

    let flooder = tokio::spawn(async move {
        let mut socket = TcpStream::connect(address).await.unwrap();
        let (mut next, mut sent) = (1, 0usize);
        let deadline = tokio::time::Instant::now() + flooding_for;
        loop {
            let batch = invokes(next, 1000);
            next += 1000;
            match tokio::time::timeout_at(deadline, socket.write_all(&batch)).await {
                Ok(Ok(())) => sent += batch.len(),
                // Blocked until the deadline (the server stopped reading), or closed.
                Ok(Err(_)) | Err(_) => return (sent, socket),
            }
        }
    });
    let (socket, _) = listener.accept().await.unwrap();
    let mut server = Server::new(socket, config);
    tokio::spawn(async move { echo_router().serve_tcp(listener, config).await });
    let client = Client::connect(TcpStream::connect(address).await.unwrap(), config);

    let bound = (config.max_queued_output + FRAME_OUTPUT_MAX) as u64;
    let started = Instant::now();
    let mut held = Vec::new();
    let mut calls = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    while started.elapsed() < flooding_for {
        tokio::select! {
            Some(incoming) = server.accept() => held.push(incoming),
            _ = tick.tick() => {
                let metrics = server.metrics().await.unwrap();
                assert!(
                    metrics.peak_queued_output <= bound,
                    "{} bytes wait for the flooder",
                    metrics.peak_queued_output
                );
                let reply = tokio::time::timeout(
                    Duration::from_secs(1),
                    client.call("/echo.Echo/Unary", "still here"),
                );
                assert_eq!(reply.await.unwrap().unwrap(), "still here");
                calls += 1;
            }
        }
    }
    let metrics = server.metrics().await.unwrap();
    let (sent, _socket) = flooder.await.unwrap();
    assert!(calls >= 10, "{calls} calls answered");
    assert_eq!(held.len(), config.max_concurrent_streams);
    assert!(metrics.streams_refused > 0);
    assert!(
        metrics.peak_queued_output >= config.max_queued_output as u64
            && metrics.peak_queued_output <= bound,
        "peak {}",
        metrics.peak_queued_output
    );
    // The server stopped reading: most of what the flooder got out is still in the sockets.
    assert!(
        metrics.bytes_received < sent as u64,
        "{} of {sent} bytes read",
        metrics.bytes_received
    );
}

/// A client that sends half a frame and waits is closed after the handshake timeout.
#[tokio::test]
async fn half_a_frame_is_closed_after_the_handshake_timeout() {
    let timeout = Duration::from_millis(300);
    let config = Config {
        handshake_timeout: Some(timeout),
        ..Config::mux()
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { echo_router().serve_tcp(listener, config).await });

    let started = Instant::now();
    let mut socket = TcpStream::connect(address).await.unwrap();
    socket.write_all(&invokes(1, 1)[..3]).await.unwrap();
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(3), socket.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the connection is still open after 3 s");
    assert!(rest.is_empty());
    assert!(started.elapsed() >= timeout);

    // A client that sends whole frames is served as usual.
    let client = Client::connect(TcpStream::connect(address).await.unwrap(), config);
    assert_eq!(client.call("/echo.Echo/Unary", "hi").await.unwrap(), "hi");
}
