//! The echo service of the Go transcripts, and connected client/server pairs to test on.

#![allow(dead_code)] // Each test file uses a different part of this module.

use bytes::{Bytes, BytesMut};
use tokio::net::{TcpListener, TcpStream};
use weir::mux::session::Config;
use weir_tokio::{Client, Router, Server, Status};

/// The service the Go transcripts were recorded against, plus a few extras for the tests.
pub fn echo_router() -> Router {
    Router::new()
        .unary(
            "/echo.Echo/Unary",
            |request| async move { Ok(request.message) },
        )
        .unary("/echo.Echo/Fail", |_| async {
            Err::<Bytes, _>(Status::new(7, "boom"))
        })
        .streaming("/echo.Echo/ServerStream", |mut stream| async move {
            let input = stream.recv().await?.unwrap_or_default();
            for _ in 0..input.first().copied().unwrap_or(0) {
                stream.send(input.clone()).await?;
            }
            Ok(())
        })
        .streaming("/echo.Echo/ClientStream", |mut stream| async move {
            let mut all = BytesMut::new();
            while let Some(message) = stream.recv().await? {
                all.extend_from_slice(&message);
            }
            stream.send(all.freeze()).await?;
            Ok(())
        })
        .streaming("/echo.Echo/Bidi", |mut stream| async move {
            while let Some(message) = stream.recv().await? {
                // As Go's handler: a send after the client closed the stream just ends it.
                if stream.send(message).await.is_err() {
                    break;
                }
            }
            Ok(())
        })
        .unary("/echo.Echo/Metadata", |request| async move {
            let key = request.message;
            match request.metadata.get(&key) {
                Some(value) => Ok(value.clone()),
                None => Err(Status::new(5, "no such key")),
            }
        })
        // Sends `n` messages of `size` bytes (both u32 little-endian in the request).
        .streaming("/echo.Echo/Flood", |mut stream| async move {
            let input = stream.recv().await?.unwrap_or_default();
            let word = |i: usize| {
                input
                    .get(i..i + 4)
                    .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            };
            let (n, size) = (word(0), word(4) as usize);
            let message = Bytes::from(vec![7u8; size]);
            for _ in 0..n {
                stream.send(message.clone()).await?;
            }
            Ok(())
        })
}

/// How the client and server are connected.
#[derive(Clone, Copy, Debug)]
pub enum Transport {
    Duplex,
    Tcp,
}

/// A client connected to a server that answers with `router`.
pub async fn connect(transport: Transport, config: Config, router: Router) -> Client {
    match transport {
        Transport::Duplex => {
            let (client, server) = tokio::io::duplex(64 << 10);
            tokio::spawn(async move { router.serve(Server::new(server, config)).await });
            Client::connect(client, config)
        }
        Transport::Tcp => {
            let (client, server) = tcp_pair().await;
            tokio::spawn(async move { router.serve(Server::new(server, config)).await });
            Client::connect(client, config)
        }
    }
}

/// Two ends of a loopback TCP connection.
pub async fn tcp_pair() -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (client, server) = tokio::join!(TcpStream::connect(address), listener.accept());
    let (client, server) = (client.unwrap(), server.unwrap().0);
    client.set_nodelay(true).unwrap();
    server.set_nodelay(true).unwrap();
    (client, server)
}
