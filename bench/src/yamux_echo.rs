//! The yamux side of the unary comparison: one yamux stream per call, carrying a
//! length-prefixed request and the same reply, as weir carries one DRPC stream per call.

use std::future::poll_fn;
use std::task::Poll;
use std::time::{Duration, Instant};

use futures::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::compat::TokioAsyncReadCompatExt;
use yamux::{Config, Connection, Mode, Stream};

/// Answer every stream of the connection on `socket` with an echo.
pub async fn serve(socket: TcpStream) {
    let mut connection = Connection::new(socket.compat(), Config::default(), Mode::Server);
    while let Some(Ok(stream)) = poll_fn(|cx| connection.poll_next_inbound(cx)).await {
        tokio::spawn(echo(stream));
    }
}

async fn echo(mut stream: Stream) -> std::io::Result<()> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await?;
    let mut body = vec![0u8; u32::from_le_bytes(len) as usize];
    stream.read_exact(&mut body).await?;
    stream.write_all(&len).await?;
    stream.write_all(&body).await?;
    stream.close().await
}

type Opener = mpsc::Sender<oneshot::Sender<Stream>>;

/// Drive the client connection on `socket` in a task; streams are opened through the sender.
pub fn client(socket: TcpStream) -> Opener {
    let (tx, mut requests) = mpsc::channel::<oneshot::Sender<Stream>>(64);
    tokio::spawn(async move {
        let mut connection = Connection::new(socket.compat(), Config::default(), Mode::Client);
        let mut waiting: Option<oneshot::Sender<Stream>> = None;
        poll_fn(|cx| {
            loop {
                if waiting.is_none() {
                    match requests.poll_recv(cx) {
                        Poll::Ready(Some(reply)) => waiting = Some(reply),
                        Poll::Ready(None) => return Poll::Ready(()),
                        Poll::Pending => break,
                    }
                }
                match connection.poll_new_outbound(cx) {
                    Poll::Ready(Ok(stream)) => {
                        if let Some(reply) = waiting.take() {
                            let _ = reply.send(stream);
                        }
                    }
                    Poll::Ready(Err(_)) => return Poll::Ready(()),
                    Poll::Pending => break,
                }
            }
            // Polling for inbound streams is what drives the connection's IO.
            match connection.poll_next_inbound(cx) {
                Poll::Ready(None) | Poll::Ready(Some(Err(_))) => Poll::Ready(()),
                Poll::Ready(Some(Ok(_))) => {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    });
    tx
}

async fn call(opener: &Opener, request: &[u8]) -> std::io::Result<Vec<u8>> {
    let (reply, stream) = oneshot::channel();
    opener
        .send(reply)
        .await
        .map_err(|_| std::io::Error::other("connection gone"))?;
    let mut stream = stream
        .await
        .map_err(|_| std::io::Error::other("connection gone"))?;
    let mut frame = (request.len() as u32).to_le_bytes().to_vec();
    frame.extend_from_slice(request);
    stream.write_all(&frame).await?;
    stream.flush().await?;
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await?;
    let mut body = vec![0u8; u32::from_le_bytes(len) as usize];
    stream.read_exact(&mut body).await?;
    stream.close().await?;
    Ok(body)
}

/// Calls per second of 64 callers making 64-byte echo calls for `time` over yamux.
pub async fn unary(time: Duration, (client_io, server_io): (TcpStream, TcpStream)) -> f64 {
    tokio::spawn(serve(server_io));
    let opener = client(client_io);
    let started = Instant::now();
    let mut callers = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let opener = opener.clone();
        callers.spawn(async move {
            let request = vec![7u8; 64];
            let mut calls = 0u64;
            while started.elapsed() < time {
                let reply = call(&opener, &request).await.unwrap();
                assert_eq!(reply, request);
                calls += 1;
            }
            calls
        });
    }
    let calls: u64 = callers.join_all().await.into_iter().sum();
    calls as f64 / started.elapsed().as_secs_f64()
}
