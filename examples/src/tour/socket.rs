//! The socket section: a weir server and client on loopback TCP, talking DRPC through
//! `weir-tokio`: one call of each kind, many streams at once, then small calls sharing the
//! connection with a bulk upload.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::net::TcpSocket;
use weir::mux::session::Config;
use weir::mux::wire::Metadata;
use weir_tokio::{Client, Router};

/// How big the section runs.
#[derive(Clone, Copy, Debug)]
pub struct Scale {
    /// Streams open at once in the concurrency part.
    pub streams: usize,
    /// Round trips on each of those streams.
    pub rounds: usize,
    /// Bytes of the bulk upload.
    pub bulk_bytes: usize,
    /// Small calls timed without the bulk upload.
    pub small_calls: usize,
}

impl Scale {
    /// The tour's scale: 64 streams, a 64 MiB upload.
    pub fn full() -> Scale {
        Scale {
            streams: 64,
            rounds: 10,
            bulk_bytes: 64 << 20,
            small_calls: 500,
        }
    }
}

/// What the section measured, for the caller to check.
#[derive(Debug, Default)]
pub struct Summary {
    /// The unary reply.
    pub unary_reply: Bytes,
    /// Messages the server stream delivered.
    pub streamed: usize,
    /// Messages the bidi stream echoed correctly.
    pub echoed: usize,
    /// Streams whose every round trip came back correctly.
    pub streams_ok: usize,
    /// Bytes the server counted from the bulk upload.
    pub bulk_received: u64,
    /// Small-call latencies alone: p50 and p99.
    pub alone: (Duration, Duration),
    /// Small-call latencies during the bulk upload: p50 and p99.
    pub with_bulk: (Duration, Duration),
    /// Small calls made while the upload ran.
    pub calls_with_bulk: usize,
}

const BULK_MESSAGE: usize = 1 << 20;
/// The kernel send buffer asked for on each socket.
const SOCKET_BUFFER: u32 = 128 << 10;

fn router() -> Router {
    Router::new()
        .unary(
            "/echo.Echo/Unary",
            |request| async move { Ok(request.message) },
        )
        .streaming("/echo.Echo/ServerStream", |mut stream| async move {
            let input = stream.recv().await?.unwrap_or_default();
            for i in 0..input.first().copied().unwrap_or(0) {
                stream
                    .send(format!("message {} of {}", i + 1, input[0]))
                    .await?;
            }
            Ok(())
        })
        .streaming("/echo.Echo/Bidi", |mut stream| async move {
            while let Some(message) = stream.recv().await? {
                stream.send(message).await?;
            }
            Ok(())
        })
        // Counts the bytes uploaded and answers with the total.
        .streaming("/bulk.Bulk/Upload", |mut stream| async move {
            let mut total = 0u64;
            while let Some(message) = stream.recv().await? {
                total += message.len() as u64;
            }
            stream.send(total.to_le_bytes().to_vec()).await?;
            Ok(())
        })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let at = |p: f64| {
        let i = ((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len().max(1)) - 1;
        samples.get(i).copied().unwrap_or_default()
    };
    (at(0.50), at(0.99))
}

/// Run the section at `scale`, writing the story to `out` as it goes.
pub fn run(out: &mut dyn Write, scale: Scale) -> Result<Summary, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    runtime.block_on(tour(out, scale))
}

async fn tour(out: &mut dyn Write, scale: Scale) -> Result<Summary, String> {
    let e = |e: weir_tokio::Error| e.to_string();
    let say = |out: &mut dyn Write, line: String| {
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    };
    // Small kernel send buffers: what waits in them waits in front of every stream.
    let listen = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    listen
        .set_send_buffer_size(SOCKET_BUFFER)
        .map_err(|e| e.to_string())?;
    listen
        .bind("127.0.0.1:0".parse().map_err(|_| "bad address")?)
        .map_err(|e| e.to_string())?;
    let listener = listen.listen(16).map_err(|e| e.to_string())?;
    let address = listener.local_addr().map_err(|e| e.to_string())?;
    let config = Config::mux();
    tokio::spawn(async move { router().serve_tcp(listener, config).await });
    let connect = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    connect
        .set_send_buffer_size(SOCKET_BUFFER)
        .map_err(|e| e.to_string())?;
    let socket = connect.connect(address).await.map_err(|e| e.to_string())?;
    socket.set_nodelay(true).map_err(|e| e.to_string())?;
    let client = Client::connect(socket, config);
    say(
        out,
        format!("   A weir server listens on {address}; a weir client connects (mux mode, one TCP connection)."),
    );

    let mut summary = Summary::default();
    let started = Instant::now();
    summary.unary_reply = client
        .call("/echo.Echo/Unary", "hello, weir")
        .await
        .map_err(e)?;
    say(
        out,
        format!(
            "   unary          /echo.Echo/Unary(\"hello, weir\") answered {:?} in {:.2} ms",
            String::from_utf8_lossy(&summary.unary_reply),
            ms(started.elapsed())
        ),
    );

    let mut stream = client
        .open("/echo.Echo/ServerStream", &Metadata::new())
        .await
        .map_err(e)?;
    stream.send(vec![3u8]).await.map_err(e)?;
    stream.close_send().await.map_err(e)?;
    let mut got = Vec::new();
    while let Some(message) = stream.recv().await.map_err(e)? {
        got.push(String::from_utf8_lossy(&message).into_owned());
    }
    summary.streamed = got.len();
    say(
        out,
        format!(
            "   server stream  asked for 3 messages, got: {}",
            got.join(", ")
        ),
    );

    let mut stream = client
        .open("/echo.Echo/Bidi", &Metadata::new())
        .await
        .map_err(e)?;
    let words = ["ping", "pong", "weir"];
    for word in words {
        stream.send(word).await.map_err(e)?;
        if stream.recv().await.map_err(e)?.as_deref() == Some(word.as_bytes()) {
            summary.echoed += 1;
        }
    }
    stream.close_send().await.map_err(e)?;
    say(
        out,
        format!(
            "   bidi stream    sent {:?} one at a time; {} of 3 came straight back",
            words, summary.echoed
        ),
    );

    // Many streams at once.
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..scale.streams {
        let client = client.clone();
        let rounds = scale.rounds;
        tasks.spawn(async move {
            let mut stream = client.open("/echo.Echo/Bidi", &Metadata::new()).await?;
            let mut ok = true;
            for round in 0..rounds {
                let message = Bytes::from(format!("stream {i} round {round}"));
                stream.send(message.clone()).await?;
                ok &= stream.recv().await?.as_ref() == Some(&message);
            }
            stream.close_send().await?;
            Ok::<bool, weir_tokio::Error>(ok)
        });
    }
    while let Some(done) = tasks.join_next().await {
        if done.map_err(|e| e.to_string())?.map_err(e)? {
            summary.streams_ok += 1;
        }
    }
    say(
        out,
        format!(
            "\n   {} streams at once, {} round trips each: {} of {} all correct, {:.1} ms in all, on the one connection.",
            scale.streams,
            scale.rounds,
            summary.streams_ok,
            scale.streams,
            ms(started.elapsed())
        ),
    );

    // Small calls, alone and beside a bulk upload.
    let small = Bytes::from(vec![b'x'; 100]);
    let mut alone = Vec::with_capacity(scale.small_calls);
    for _ in 0..scale.small_calls {
        let started = Instant::now();
        client
            .call("/echo.Echo/Unary", small.clone())
            .await
            .map_err(e)?;
        alone.push(started.elapsed());
    }
    summary.alone = percentiles(alone);
    say(
        out,
        format!(
            "\n   {} small calls (100 bytes) alone: p50 {:.3} ms, p99 {:.3} ms",
            scale.small_calls,
            ms(summary.alone.0),
            ms(summary.alone.1)
        ),
    );

    let mib = scale.bulk_bytes >> 20;
    say(
        out,
        format!("   Now the same calls while a {mib} MiB upload streams on the same connection:"),
    );
    let uploaded = Arc::new(AtomicUsize::new(0));
    let progress = uploaded.clone();
    let bulk_client = client.clone();
    let total = scale.bulk_bytes;
    let bulk = tokio::spawn(async move {
        let mut stream = bulk_client
            .open("/bulk.Bulk/Upload", &Metadata::new())
            .await?;
        let chunk = Bytes::from(vec![0x5a; BULK_MESSAGE]);
        let mut sent = 0;
        while sent < total {
            let n = BULK_MESSAGE.min(total - sent);
            stream.send(chunk.slice(..n)).await?;
            sent += n;
            progress.store(sent, Ordering::Relaxed);
        }
        stream.close_send().await?;
        let reply = stream.recv().await?.unwrap_or_default();
        let mut count = [0u8; 8];
        let len = reply.len().min(8);
        count[..len].copy_from_slice(&reply[..len]);
        Ok::<u64, weir_tokio::Error>(u64::from_le_bytes(count))
    });
    let mut with_bulk = Vec::new();
    let started = Instant::now();
    let mut next_progress = Duration::from_secs(1);
    // Only calls made while the upload runs count.
    while !bulk.is_finished() {
        let call = Instant::now();
        client
            .call("/echo.Echo/Unary", small.clone())
            .await
            .map_err(e)?;
        with_bulk.push(call.elapsed());
        if started.elapsed() >= next_progress {
            next_progress += Duration::from_secs(1);
            say(
                out,
                format!(
                    "   ... {} of {mib} MiB uploaded, {} small calls so far",
                    uploaded.load(Ordering::Relaxed) >> 20,
                    with_bulk.len()
                ),
            );
        }
    }
    let upload_time = started.elapsed();
    summary.bulk_received = bulk.await.map_err(|e| e.to_string())?.map_err(e)?;
    summary.calls_with_bulk = with_bulk.len();
    summary.with_bulk = percentiles(with_bulk);
    say(
        out,
        format!(
            "   the server counted {} bytes uploaded ({:.0} MiB/s); {} small calls meanwhile: p50 {:.3} ms, p99 {:.3} ms",
            summary.bulk_received,
            summary.bulk_received as f64 / (1 << 20) as f64 / upload_time.as_secs_f64(),
            summary.calls_with_bulk,
            ms(summary.with_bulk.0),
            ms(summary.with_bulk.1)
        ),
    );
    say(
        out,
        format!(
            "   p99 with the upload / p99 alone = {:.1}. The upload took {:.0} ms; frames of all streams\n   \
             interleave, so a small call waits behind a few bulk frames and the socket buffers, not\n   \
             behind the whole upload.",
            summary.with_bulk.1.as_secs_f64() / summary.alone.1.as_secs_f64().max(1e-9),
            ms(upload_time)
        ),
    );
    Ok(summary)
}
