//! What the proxy itself reads from and says to a client: the first packet, and a last error.

use std::io;

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use weir::transfer::message::{BackendKey, StartupPacket};

/// What a new client connection is for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum First {
    /// A session: its StartupMessage, whole (length field included), for the machine.
    Startup(Bytes),
    /// A CancelRequest for the backend the client knows by this key.
    Cancel(BackendKey),
}

/// Encryption requests answered `N` before giving up (libpq sends at most one of each kind).
const MAX_ENCRYPTION_REQUESTS: usize = 2;

/// Read the client's first packet, answering SSLRequest and GSSENCRequest with `N` (the
/// proxy speaks plaintext).
pub(crate) async fn read_first<S>(client: &mut S, max_len: u32) -> io::Result<First>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    for _ in 0..=MAX_ENCRYPTION_REQUESTS {
        let len = client.read_u32().await?;
        // The length counts itself; every startup packet has at least a 4-byte code.
        if !(8..=max_len).contains(&len) {
            return Err(invalid(format!(
                "startup packet length {len} is outside 8..={max_len}"
            )));
        }
        let mut packet = BytesMut::with_capacity(len as usize);
        packet.put_u32(len);
        packet.resize(len as usize, 0);
        client.read_exact(&mut packet[4..]).await?;
        match StartupPacket::parse(&packet[4..]).map_err(|e| invalid(e.to_string()))? {
            StartupPacket::SslRequest | StartupPacket::GssEncRequest => {
                client.write_all(b"N").await?;
            }
            StartupPacket::CancelRequest(key) => return Ok(First::Cancel(key)),
            StartupPacket::Startup { .. } => return Ok(First::Startup(packet.freeze())),
            other => return Err(invalid(format!("unsupported startup packet {other:?}"))),
        }
    }
    Err(invalid("too many encryption requests".into()))
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// A FATAL ErrorResponse with SQLSTATE `code`, the last thing a client hears from the proxy.
pub(crate) fn fatal_error(code: &str, message: &str) -> Bytes {
    let mut body = BytesMut::new();
    for (field, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', code),
        (b'M', message),
    ] {
        body.put_u8(field);
        body.put_slice(value.replace('\0', " ").as_bytes());
        body.put_u8(0);
    }
    body.put_u8(0);
    let mut out = BytesMut::with_capacity(body.len() + 5);
    out.put_u8(b'E');
    out.put_u32(body.len() as u32 + 4);
    out.put_slice(&body);
    out.freeze()
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
