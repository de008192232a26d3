//! Every kind of rpc, in both modes, over an in-memory duplex and over loopback TCP.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::{connect, echo_router, Transport};
use weir::mux::session::Config;
use weir::mux::wire::Metadata;
use weir_tests::drpc::pattern;
use weir_tokio::{Client, Error, Router};

async fn unary(client: Client) {
    assert_eq!(
        client.call("/echo.Echo/Unary", "hello").await.unwrap(),
        "hello"
    );
    assert_eq!(client.call("/echo.Echo/Unary", "").await.unwrap(), "");
    // Several calls in a row on one connection.
    for i in 0..5u8 {
        assert_eq!(
            client.call("/echo.Echo/Unary", vec![i; 3]).await.unwrap(),
            vec![i; 3]
        );
    }
}

async fn server_stream(client: Client) {
    let mut stream = client
        .open("/echo.Echo/ServerStream", &Metadata::new())
        .await
        .unwrap();
    stream.send(vec![3u8, 9]).await.unwrap();
    stream.close_send().await.unwrap();
    for _ in 0..3 {
        assert_eq!(stream.recv().await.unwrap().unwrap(), vec![3u8, 9]);
    }
    assert_eq!(stream.recv().await.unwrap(), None);
}

async fn client_stream(client: Client) {
    let mut stream = client
        .open("/echo.Echo/ClientStream", &Metadata::new())
        .await
        .unwrap();
    for part in ["one ", "two ", "three"] {
        stream.send(part).await.unwrap();
    }
    stream.close_send().await.unwrap();
    assert_eq!(stream.recv().await.unwrap().unwrap(), "one two three");
    assert_eq!(stream.recv().await.unwrap(), None);
}

async fn bidi(client: Client) {
    let mut stream = client
        .open("/echo.Echo/Bidi", &Metadata::new())
        .await
        .unwrap();
    for i in 0..10u32 {
        let message = Bytes::from(i.to_le_bytes().to_vec());
        stream.send(message.clone()).await.unwrap();
        assert_eq!(stream.recv().await.unwrap().unwrap(), message);
    }
    stream.close_send().await.unwrap();
    assert_eq!(stream.recv().await.unwrap(), None);
}

async fn errors(client: Client) {
    let error = client.call("/echo.Echo/Fail", "x").await.unwrap_err();
    assert_eq!(error.code(), Some(7));
    assert!(matches!(&error, Error::Remote { message, .. } if message == "boom"));
    let io: std::io::Error = error.into();
    assert_eq!(io.kind(), std::io::ErrorKind::Other);
    // The connection still works after an error.
    assert_eq!(client.call("/echo.Echo/Unary", "ok").await.unwrap(), "ok");
}

async fn unknown_rpc(client: Client) {
    let error = client.call("/echo.Echo/Nope", "x").await.unwrap_err();
    assert_eq!(error.code(), Some(0));
    assert_eq!(
        error.to_string(),
        "remote error (code 0): protocol error: unknown rpc: \"/echo.Echo/Nope\""
    );
}

async fn metadata(client: Client) {
    let metadata = Metadata::from_iter([("k", "v"), ("tenant", "acme")]);
    let reply = client
        .call_with_metadata("/echo.Echo/Metadata", &metadata, "tenant")
        .await
        .unwrap();
    assert_eq!(reply, "acme");
    let error = client
        .call_with_metadata("/echo.Echo/Metadata", &metadata, "missing")
        .await
        .unwrap_err();
    assert_eq!(error.code(), Some(5));
}

async fn large_messages(client: Client) {
    // Larger than a frame (64 KiB), than a transmit batch (256 KiB) and a stream window.
    for len in [64 << 10, (64 << 10) + 1, 150_000, 1 << 20] {
        let message = pattern(len);
        assert_eq!(
            client
                .call("/echo.Echo/Unary", message.clone())
                .await
                .unwrap(),
            message
        );
    }
    let mut stream = client
        .open("/echo.Echo/Bidi", &Metadata::new())
        .await
        .unwrap();
    for len in [300_000, 70_000] {
        stream.send(pattern(len)).await.unwrap();
        assert_eq!(stream.recv().await.unwrap().unwrap(), pattern(len));
    }
    stream.close_send().await.unwrap();
    assert_eq!(stream.recv().await.unwrap(), None);
}

async fn cancel(client: Client) {
    let mut stream = client
        .open("/echo.Echo/Flood", &Metadata::new())
        .await
        .unwrap();
    let mut request = 1_000_000u32.to_le_bytes().to_vec();
    request.extend_from_slice(&1000u32.to_le_bytes());
    stream.send(request).await.unwrap();
    assert_eq!(stream.recv().await.unwrap().unwrap().len(), 1000);
    stream.cancel().await.unwrap();
    let error = stream.recv().await.unwrap_err();
    assert!(matches!(error, Error::Canceled), "{error}");
    assert_eq!(
        std::io::Error::from(error).kind(),
        std::io::ErrorKind::ConnectionAborted
    );
    // The connection goes on.
    assert_eq!(
        client.call("/echo.Echo/Unary", "after").await.unwrap(),
        "after"
    );
}

macro_rules! suite {
    ($name:ident, $transport:expr, $config:expr) => {
        mod $name {
            use super::*;

            async fn client() -> Client {
                connect($transport, $config, echo_router()).await
            }

            #[tokio::test]
            async fn unary() {
                super::unary(client().await).await
            }
            #[tokio::test]
            async fn server_stream() {
                super::server_stream(client().await).await
            }
            #[tokio::test]
            async fn client_stream() {
                super::client_stream(client().await).await
            }
            #[tokio::test]
            async fn bidi() {
                super::bidi(client().await).await
            }
            #[tokio::test]
            async fn errors() {
                super::errors(client().await).await
            }
            #[tokio::test]
            async fn unknown_rpc() {
                super::unknown_rpc(client().await).await
            }
            #[tokio::test]
            async fn metadata() {
                super::metadata(client().await).await
            }
            #[tokio::test]
            async fn large_messages() {
                super::large_messages(client().await).await
            }
            #[tokio::test]
            async fn cancel() {
                super::cancel(client().await).await
            }
        }
    };
}

suite!(compat_duplex, Transport::Duplex, Config::default());
suite!(compat_tcp, Transport::Tcp, Config::default());
suite!(mux_duplex, Transport::Duplex, Config::mux());
suite!(mux_tcp, Transport::Tcp, Config::mux());

/// 64 streams at once on one mux connection, each a bidi conversation, on a multi-threaded
/// runtime so that they really interleave.
async fn concurrent(transport: Transport) {
    let client = connect(transport, Config::mux(), echo_router()).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..64u32 {
        let client = client.clone();
        tasks.spawn(async move {
            let mut stream = client
                .open("/echo.Echo/Bidi", &Metadata::new())
                .await
                .unwrap();
            for round in 0..20u32 {
                let message = Bytes::from(format!("stream {i} round {round}"));
                stream.send(message.clone()).await.unwrap();
                assert_eq!(stream.recv().await.unwrap().unwrap(), message);
            }
            stream.close_send().await.unwrap();
            assert_eq!(stream.recv().await.unwrap(), None);
            stream.id()
        });
    }
    let mut ids: Vec<u64> = tasks.join_all().await;
    ids.sort();
    assert_eq!(ids, (1..=64).collect::<Vec<u64>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mux_64_concurrent_streams_duplex() {
    concurrent(Transport::Duplex).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mux_64_concurrent_streams_tcp() {
    concurrent(Transport::Tcp).await
}

/// A receiver that does not read makes the sender wait: what the server's handler has sent
/// stays bounded by the stream window and send queue, and everything arrives once the client
/// reads.
#[tokio::test]
async fn mux_slow_receiver_holds_the_sender_back() {
    const MESSAGE: usize = 64 << 10;
    const MESSAGES: usize = 256;
    let config = Config::mux();
    let window = usize::try_from(config.initial_stream_window).unwrap();
    let queue = config.send_buffer_per_stream;
    // The bounds below say something only if a message fits the queue and the handler has
    // more to send than the window and the queue hold together.
    assert!(MESSAGE <= queue && window + queue < MESSAGES * MESSAGE);
    let sent = Arc::new(AtomicUsize::new(0));
    let counter = sent.clone();
    let router = Router::new().streaming("/flood", move |mut stream| {
        let counter = counter.clone();
        async move {
            for _ in 0..MESSAGES {
                stream.send(vec![1u8; MESSAGE]).await?;
                counter.fetch_add(1, Ordering::SeqCst);
            }
            Ok(())
        }
    });
    let client = connect(Transport::Tcp, config, router).await;
    let mut stream = client.open("/flood", &Metadata::new()).await.unwrap();
    stream.close_send().await.unwrap();
    // Wait until the handler has sent something and then stalls: a count of 0 that holds
    // still only says the handler has not started.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut last = 0;
    let stalled = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = sent.load(Ordering::SeqCst);
        if now > 0 && now == last {
            break now * MESSAGE;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the handler never stalled: {now} messages sent"
        );
        last = now;
    };
    // The client never reads, so it never returns credit: exactly the stream's window leaves
    // the server, and the handler's `send` returns while the stream's queue has room. It
    // stalls once the queue holds more than `queue - MESSAGE`, so what it has sent is more
    // than `window + queue - MESSAGE` and at most `window + queue`.
    let (lower, upper) = (window + queue - MESSAGE, window + queue);
    assert!(
        lower < stalled && stalled <= upper,
        "{stalled} bytes sent past a reader that never read, expected more than {lower} \
         (window {window} + send queue {queue} - one message) and at most {upper}"
    );
    let mut received = 0;
    while let Some(message) = stream.recv().await.unwrap() {
        received += message.len();
    }
    assert_eq!(received, MESSAGES * MESSAGE);
}

/// A peer that goes away fails the waiting calls with a clear error.
#[tokio::test]
async fn peer_closing_fails_waiting_calls() {
    let (client_io, server_io) = tokio::io::duplex(1024);
    let client = Client::connect(client_io, Config::default());
    let mut stream = client
        .open("/echo.Echo/Bidi", &Metadata::new())
        .await
        .unwrap();
    drop(server_io);
    let error = stream.recv().await.unwrap_err();
    assert!(matches!(error, Error::PeerClosed | Error::Io(_)), "{error}");
    let kind = std::io::Error::from(error).kind();
    assert!(
        matches!(
            kind,
            std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::BrokenPipe
                | std::io::ErrorKind::ConnectionReset
        ),
        "{kind:?}"
    );
}

/// Garbage from the peer is a protocol error, `InvalidData` for io users.
#[tokio::test]
async fn garbage_is_a_protocol_error() {
    use tokio::io::AsyncWriteExt;
    let (client_io, mut server_io) = tokio::io::duplex(1024);
    let client = Client::connect(client_io, Config::default());
    let mut stream = client
        .open("/echo.Echo/Bidi", &Metadata::new())
        .await
        .unwrap();
    // A frame header whose stream id is a varint of eleven bytes.
    let mut garbage = vec![0x05];
    garbage.extend_from_slice(&[0xff; 10]);
    garbage.extend_from_slice(&[0x01, 0x01, 0x01, 0x00]);
    server_io.write_all(&garbage).await.unwrap();
    let error = stream.recv().await.unwrap_err();
    assert!(matches!(error, Error::Protocol(_)), "{error}");
    assert_eq!(
        std::io::Error::from(error).kind(),
        std::io::ErrorKind::InvalidData
    );
    let again = client.call("/echo.Echo/Unary", "x").await.unwrap_err();
    assert!(matches!(again, Error::Protocol(_)), "{again}");
}
