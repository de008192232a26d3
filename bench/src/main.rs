//! `make bench-mux`: weir-tokio over loopback TCP, each figure beside its baseline in the same
//! run. `WEIR_BENCH_QUICK=1` shortens every phase, `WEIR_BENCH_ONLY=bulk,unary,hol,go` picks
//! phases; the `name=value` lines come last.
//!
//! 1. Bulk: one stream of 1 MiB messages, against raw tokio TCP copying the same bytes.
//! 2. Unary: 64 concurrent callers making 64-byte echo calls on one mux connection.
//! 3. Head-of-line: p99 of 100-byte calls while 64 MiB messages stream on the same
//!    connection (one at a time, back to back), over their p99 without it.
//!
//! 4. Go DRPC (phase `go`): stock Go DRPC's client and server beside weir's, both in compat
//!    mode: sequential unary calls, and one bulk stream (see go_drpc.rs).
//!
//! The unary figure is compared with tonic gRPC unary (a raw-bytes codec, one HTTP/2
//! connection) and with yamux (one stream per call carrying the same length-prefixed echo).

use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use weir::mux::session::Config;
use weir::mux::wire::Metadata;
use weir_tokio::{Client, Router, Server};

mod go_drpc;
mod stats;
mod tonic_echo;
mod yamux_echo;

use stats::{percentile, ratio};

const MIB: usize = 1 << 20;
const HOL_MESSAGE: usize = 64 << 20;

/// Mux settings that let one 64 MiB message through.
fn config() -> Config {
    Config {
        max_packet_len: HOL_MESSAGE + MIB,
        max_unread_per_stream: HOL_MESSAGE + MIB,
        ..Config::mux()
    }
}

fn router() -> Router {
    Router::new()
        .unary("/echo", |request| async move { Ok(request.message) })
        .streaming("/sink", |mut stream| async move {
            let mut total = 0u64;
            while let Some(message) = stream.recv().await? {
                total += message.len() as u64;
            }
            stream.send(total.to_le_bytes().to_vec()).await?;
            Ok(())
        })
}

async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (client, server) = tokio::join!(TcpStream::connect(address), listener.accept());
    let (client, server) = (client.unwrap(), server.unwrap().0);
    client.set_nodelay(true).unwrap();
    server.set_nodelay(true).unwrap();
    (client, server)
}

/// Loopback TCP with the kernel send buffers capped at `send_buffer` bytes: what waits there
/// waits in front of every stream.
async fn small_buffer_pair(send_buffer: u32) -> (TcpStream, TcpStream) {
    let listen = tokio::net::TcpSocket::new_v4().unwrap();
    listen.set_send_buffer_size(send_buffer).unwrap();
    listen.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = listen.listen(1).unwrap();
    let connect = tokio::net::TcpSocket::new_v4().unwrap();
    connect.set_send_buffer_size(send_buffer).unwrap();
    let address = listener.local_addr().unwrap();
    let (client, server) = tokio::join!(connect.connect(address), listener.accept());
    let (client, server) = (client.unwrap(), server.unwrap().0);
    client.set_nodelay(true).unwrap();
    server.set_nodelay(true).unwrap();
    (client, server)
}

async fn weir_pair() -> Client {
    weir_on(tcp_pair().await)
}

fn weir_on((client, server): (TcpStream, TcpStream)) -> Client {
    tokio::spawn(async move { router().serve(Server::new(server, config())).await });
    Client::connect(client, config())
}

/// Bytes per second of one weir stream sending 1 MiB messages for `time`.
async fn bulk_weir(time: Duration) -> f64 {
    let client = weir_pair().await;
    let mut stream = client.open("/sink", &Metadata::new()).await.unwrap();
    let chunk = Bytes::from(vec![0x5a; MIB]);
    let started = Instant::now();
    let mut sent = 0u64;
    while started.elapsed() < time {
        stream.send(chunk.clone()).await.unwrap();
        sent += MIB as u64;
    }
    stream.close_send().await.unwrap();
    let reply = stream.recv().await.unwrap().unwrap();
    let counted = u64::from_le_bytes(reply[..8].try_into().unwrap());
    assert_eq!(counted, sent);
    sent as f64 / started.elapsed().as_secs_f64()
}

/// Bytes per second of raw TCP copying 1 MiB buffers for `time`, counted the same way.
async fn bulk_tcp(time: Duration) -> f64 {
    let (mut client, mut server) = tcp_pair().await;
    tokio::spawn(async move {
        let mut buf = vec![0u8; 256 << 10];
        let mut total = 0u64;
        loop {
            match server.read(&mut buf).await.unwrap() {
                0 => break,
                n => total += n as u64,
            }
        }
        server.write_all(&total.to_le_bytes()).await.unwrap();
    });
    let chunk = vec![0x5a; MIB];
    let started = Instant::now();
    let mut sent = 0u64;
    while started.elapsed() < time {
        client.write_all(&chunk).await.unwrap();
        sent += MIB as u64;
    }
    client.shutdown().await.unwrap();
    let mut reply = [0u8; 8];
    client.read_exact(&mut reply).await.unwrap();
    assert_eq!(u64::from_le_bytes(reply), sent);
    sent as f64 / started.elapsed().as_secs_f64()
}

/// Calls per second of 64 callers making 64-byte echo calls for `time`.
async fn unary(time: Duration) -> f64 {
    let client = weir_pair().await;
    let started = Instant::now();
    let mut callers = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let client = client.clone();
        callers.spawn(async move {
            let request = Bytes::from(vec![7u8; 64]);
            let mut calls = 0u64;
            while started.elapsed() < time {
                let reply = client.call("/echo", request.clone()).await.unwrap();
                assert_eq!(reply.len(), 64);
                calls += 1;
            }
            calls
        });
    }
    let calls: u64 = callers.join_all().await.into_iter().sum();
    calls as f64 / started.elapsed().as_secs_f64()
}

/// The p99 of `samples` in ms; an error naming `what` they are when there are none.
fn p99_ms(what: &str, samples: &[Duration]) -> Result<f64, String> {
    let ms: Vec<f64> = samples.iter().map(|d| d.as_secs_f64() * 1e3).collect();
    percentile(what, &ms, 99.0)
}

/// p99 in ms of `calls` sequential 100-byte calls alone, then while 64 MiB messages stream.
async fn hol(calls: usize, send_buffer: Option<u32>) -> Result<(f64, f64), String> {
    let client = match send_buffer {
        Some(bytes) => weir_on(small_buffer_pair(bytes).await),
        None => weir_pair().await,
    };
    let request = Bytes::from(vec![1u8; 100]);
    let mut alone = Vec::new();
    for _ in 0..calls {
        let started = Instant::now();
        client.call("/echo", request.clone()).await.unwrap();
        alone.push(started.elapsed());
    }
    // 64 MiB messages back to back on one stream until the calls are done, so that every
    // call below is made while one is streaming.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopped = stop.clone();
    let bulk_client = client.clone();
    let (streaming_tx, streaming) = tokio::sync::oneshot::channel();
    let bulk = tokio::spawn(async move {
        let mut stream = bulk_client.open("/sink", &Metadata::new()).await.unwrap();
        let message = Bytes::from(vec![0x5a; HOL_MESSAGE]);
        let mut sent = 0u64;
        let mut streaming_tx = Some(streaming_tx);
        while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
            stream.send(message.clone()).await.unwrap();
            sent += HOL_MESSAGE as u64;
            // The first message is queued: the calls below start from here.
            if let Some(tx) = streaming_tx.take() {
                let _ = tx.send(());
            }
        }
        stream.close_send().await.unwrap();
        let reply = stream.recv().await.unwrap().unwrap();
        (sent, u64::from_le_bytes(reply[..8].try_into().unwrap()))
    });
    // Without this the calls could be over before the bulk task has even built its message.
    streaming.await.unwrap();
    let mut beside = Vec::new();
    while beside.len() < calls {
        let started = Instant::now();
        client.call("/echo", request.clone()).await.unwrap();
        beside.push(started.elapsed());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (sent, counted) = bulk.await.unwrap();
    assert_eq!(counted, sent);
    Ok((
        p99_ms("calls alone", &alone)?,
        p99_ms("calls beside a 64 MiB message", &beside)?,
    ))
}

fn main() -> ExitCode {
    match bench() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-mux: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Every phase asked for, then the `name=value` lines. A figure with nothing to compute it
/// from (no samples, a baseline of 0) fails the benchmark instead of printing 0 or `inf`.
fn bench() -> Result<(), String> {
    let quick = std::env::var("WEIR_BENCH_QUICK").is_ok_and(|v| v == "1");
    // `WEIR_BENCH_ONLY=bulk,hol` (say) runs only those phases, to look at one figure at a time.
    let only = std::env::var("WEIR_BENCH_ONLY").unwrap_or_default();
    let runs = |phase: &str| only.is_empty() || only.split(',').any(|p| p.trim() == phase);
    let phase = Duration::from_secs(if quick { 2 } else { 10 });
    let calls = if quick { 500 } else { 3000 };
    // Go DRPC beside weir: the same counts on both sides.
    // About 2 s per side in the quick mode on an idle machine, as the other phases.
    let (go_calls, go_messages) = if quick {
        (40_000, 2048)
    } else {
        (200_000, 16_384)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut figures = Vec::new();
        if runs("bulk") {
            let tcp = bulk_tcp(phase).await;
            let weir = bulk_weir(phase).await;
            println!(
                "bulk: raw TCP {:.0} MiB/s, weir {:.0} MiB/s",
                tcp / MIB as f64,
                weir / MIB as f64
            );
            let name = "bulk_ratio_vs_tcp";
            figures.push(format!("{name}={:.3}", ratio(name, weir, tcp)?));
        }
        if runs("unary") {
            let per_sec = unary(phase).await;
            let yamux = yamux_echo::unary(phase, tcp_pair().await).await;
            let tonic = tonic_echo::unary(phase).await;
            println!(
                "unary: 64 callers, weir {per_sec:.0} calls/s, tonic {tonic:.0} calls/s, yamux {yamux:.0} calls/s"
            );
            figures.push(format!("unary_calls_per_sec={per_sec:.0}"));
            for (name, baseline) in [
                ("unary_ratio_vs_tonic", tonic),
                ("unary_ratio_vs_yamux", yamux),
            ] {
                figures.push(format!("{name}={:.3}", ratio(name, per_sec, baseline)?));
            }
        }
        if runs("hol") {
            let (alone, beside) = hol(calls, None).await?;
            println!(
                "head-of-line, default socket buffers: p99 alone {alone:.3} ms, beside a 64 MiB message {beside:.3} ms"
            );
            let (small_alone, small_beside) = hol(calls, Some(128 << 10)).await?;
            println!(
                "head-of-line, 128 KiB send buffers: p99 alone {small_alone:.3} ms, beside a 64 MiB message {small_beside:.3} ms"
            );
            let name = "hol_p99_ratio";
            figures.push(format!("{name}={:.2}", ratio(name, beside, alone)?));
            let name = "hol_p99_ratio_small_send_buffer";
            figures.push(format!(
                "{name}={:.2}",
                ratio(name, small_beside, small_alone)?
            ));
        }
        if runs("go") {
            let weir = go_drpc::unary_weir(go_calls).await;
            let go = go_drpc::unary_go(go_calls).await;
            println!(
                "compat unary, {go_calls} sequential {}-byte calls: weir {weir:.0} calls/s, Go DRPC {go:.0} calls/s",
                go_drpc::UNARY_SIZE
            );
            let weir_bulk = go_drpc::bulk_weir(go_messages).await;
            let go_bulk = go_drpc::bulk_go(go_messages).await;
            println!(
                "compat bulk, one stream of {go_messages} 1 MiB messages: weir {:.0} MiB/s, Go DRPC {:.0} MiB/s",
                weir_bulk / MIB as f64,
                go_bulk / MIB as f64
            );
            let name = "unary_ratio_vs_go_drpc";
            figures.push(format!("{name}={:.3}", ratio(name, weir, go)?));
            let name = "bulk_ratio_vs_go_drpc";
            figures.push(format!("{name}={:.3}", ratio(name, weir_bulk, go_bulk)?));
        }
        for figure in figures {
            println!("{figure}");
        }
        Ok(())
    })
}
