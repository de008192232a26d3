//! What the proxy itself reads from and says to a client: the first packet, and a last error.
//! The pgwire side is [`weir::transfer::frontend`]; this drives it over a socket.

use std::io;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use weir::transfer::frontend::{build_error_response, Frontend, FrontendConfig, FrontendOutput};
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
/// proxy speaks plaintext).
pub(crate) async fn read_first<S>(client: &mut S, max_len: u32) -> io::Result<First>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut frontend = Frontend::new(FrontendConfig {
        max_startup_len: max_len,
        ..FrontendConfig::default()
    });
    let mut buf = BytesMut::new();
    loop {
        while let Some(output) = frontend.poll_output() {
            match output {
                FrontendOutput::Transmit(data) => client.write_all(&data).await?,
                FrontendOutput::Startup(startup) => return Ok(First::Startup(startup)),
                FrontendOutput::Cancel(key) => return Ok(First::Cancel(key)),
                FrontendOutput::Closed(reason) => {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, reason))
                }
            }
        }
        buf.reserve(READ_CHUNK);
        if client.read_buf(&mut buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        frontend
            .handle_input(buf.split().freeze())
            .map_err(io::Error::other)?;
    }
}

/// A FATAL ErrorResponse with SQLSTATE `code`, the last thing a client hears from the proxy.
pub(crate) fn fatal_error(code: &str, message: &str) -> Bytes {
    build_error_response(code, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir::transfer::message::{build_cancel_request, build_startup_message, ErrorFields};

    async fn first(input: &[u8]) -> (io::Result<First>, Vec<u8>) {
        let (mut client, mut proxy) = tokio::io::duplex(1 << 16);
        client.write_all(input).await.unwrap();
        client.shutdown().await.unwrap();
        let result = read_first(&mut proxy, 10_000).await;
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

    #[test]
    fn fatal_errors_parse_back() {
        let e = fatal_error("08006", "weir: no backend");
        assert_eq!(e[0], b'E');
        assert_eq!(
            u32::from_be_bytes(e[1..5].try_into().unwrap()) as usize,
            e.len() - 1
        );
        let fields = ErrorFields::parse(&e[5..]).unwrap();
        assert_eq!(fields.get(b'S'), Some("FATAL"));
        assert_eq!(fields.get(b'C'), Some("08006"));
        assert_eq!(fields.get(b'M'), Some("weir: no backend"));
    }
}
