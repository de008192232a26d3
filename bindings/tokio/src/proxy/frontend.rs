//! What the proxy itself reads from and says to a client: the first packet, and a last error.
//! The pgwire side is [`weir::transfer::frontend`]; this drives it over a socket.

use std::io;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant as TokioInstant;
use weir::time::Instant;
use weir::transfer::frontend::{Frontend, FrontendCloseReason, FrontendConfig, FrontendOutput};
use weir::transfer::message::BackendKey;

/// What a new client connection is for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum First {
    /// A session: its StartupMessage, whole (length field included), and whatever the client
    /// sent after it, for the machine.
    Startup(Bytes),
    /// A CancelRequest for the backend the client knows by this key.
    Cancel(BackendKey),
}

/// Bytes read from the client at a time at most while waiting for its first packet.
const READ_CHUNK: usize = 16 << 10;

/// Read the client's first packet, answering SSLRequest and GSSENCRequest with `N` (the
/// proxy speaks plaintext). A client that has not sent it within `config.login_timeout` gets
/// an error of kind `TimedOut`.
pub(crate) async fn read_first<S>(client: &mut S, config: FrontendConfig) -> io::Result<First>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let epoch = TokioInstant::now();
    let now = || Instant::from_nanos(epoch.elapsed().as_nanos() as u64);
    let mut frontend = Frontend::new(now(), config);
    let mut buf = BytesMut::new();
    loop {
        while let Some(output) = frontend.poll_output() {
            match output {
                FrontendOutput::Transmit(data) => client.write_all(&data).await?,
                FrontendOutput::Startup(startup) => return Ok(First::Startup(startup)),
                FrontendOutput::Cancel(key) => return Ok(First::Cancel(key)),
                FrontendOutput::Closed(reason @ FrontendCloseReason::LoginTimeout) => {
                    return Err(io::Error::new(io::ErrorKind::TimedOut, reason))
                }
                FrontendOutput::Closed(reason) => {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, reason))
                }
            }
        }
        let deadline = frontend
            .poll_timeout()
            .map(|at| epoch + std::time::Duration::from_nanos(at.as_nanos()));
        buf.reserve(READ_CHUNK);
        tokio::select! {
            read = client.read_buf(&mut buf) => {
                if read? == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                frontend
                    .handle_input(now(), buf.split().freeze())
                    .map_err(io::Error::other)?;
            }
            () = super::sleep_until(deadline) => frontend.handle_timeout(now()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir::transfer::message::{build_cancel_request, build_startup_message};

    async fn first(input: &[u8]) -> (io::Result<First>, Vec<u8>) {
        let (mut client, mut proxy) = tokio::io::duplex(1 << 16);
        client.write_all(input).await.unwrap();
        client.shutdown().await.unwrap();
        let result = read_first(&mut proxy, FrontendConfig::default()).await;
        drop(proxy);
        let mut answered = Vec::new();
        client.read_to_end(&mut answered).await.unwrap();
        (result, answered)
    }

    const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

    #[tokio::test]
    async fn ssl_is_refused_then_the_startup_is_read_whole() {
        let startup = build_startup_message([("user", "alice")], 10_000).unwrap();
        let mut input = SSL_REQUEST.to_vec();
        input.extend_from_slice(&startup);
        let (result, answered) = first(&input).await;
        assert_eq!(result.unwrap(), First::Startup(startup));
        assert_eq!(answered, b"N");
    }

    #[tokio::test]
    async fn cancel_requests_carry_their_key() {
        let key = BackendKey {
            process_id: 42,
            secret: vec![1, 2, 3, 4],
        };
        let (result, answered) = first(&build_cancel_request(&key)).await;
        assert_eq!(result.unwrap(), First::Cancel(key));
        assert!(answered.is_empty());
    }

    #[tokio::test]
    async fn bad_lengths_and_endless_encryption_requests_are_refused() {
        let (result, _) = first(&[0, 0, 0, 4]).await;
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::InvalidData);
        let (result, _) = first(&[0, 1, 0, 0]).await;
        assert!(result
            .unwrap_err()
            .to_string()
            .contains("outside 8..=10000"));
        let (result, answered) = first(&SSL_REQUEST.repeat(3)).await;
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::InvalidData);
        assert_eq!(answered, b"NNN");
        let (result, _) = first(&[0, 0, 0, 8, 0, 0]).await;
        assert_eq!(result.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_that_does_not_finish_in_time_is_let_go() {
        let (mut client, mut proxy) = tokio::io::duplex(1 << 16);
        // An SSLRequest and half a startup packet, then nothing.
        client.write_all(&SSL_REQUEST).await.unwrap();
        client.write_all(&[0, 0, 0, 40, 0]).await.unwrap();
        let config = FrontendConfig {
            login_timeout: std::time::Duration::from_secs(60),
            ..FrontendConfig::default()
        };
        let start = TokioInstant::now();
        let limit = std::time::Duration::from_secs(120);
        let result = tokio::time::timeout(limit, read_first(&mut proxy, config)).await;
        assert_eq!(
            result.expect("let go").unwrap_err().kind(),
            io::ErrorKind::TimedOut
        );
        assert_eq!(start.elapsed(), std::time::Duration::from_secs(60));
        drop(proxy);
        let mut answered = Vec::new();
        client.read_to_end(&mut answered).await.unwrap();
        assert_eq!(answered, b"N");
    }
}
