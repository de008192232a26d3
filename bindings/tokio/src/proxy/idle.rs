//! Server connections that sessions left, reset and kept so that later moves skip the server's
//! startup.
//!
//! A move onto a freshly dialled server pays for a new backend process, its authentication and
//! its cold caches. When the machine releases the old server instead of closing it
//! ([`weir::transfer::Output::ReleaseOldServer`]), the session task resets that connection
//! with `DISCARD ALL` and keeps it here, under the startup parameters of the session that
//! left it; a later move to that backend by a session with the same startup parameters (so the
//! same user, database and startup settings) takes it, and the machine carries the revival
//! token in the deserialize query (`Dialect::started_server_query_template`).

use std::collections::VecDeque;
use std::io;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weir::transfer::message::{build_query, BackendKey};

/// The longest message a reset may bring (a notice, a parameter report).
const MAX_RESET_MESSAGE: usize = 64 << 10;

/// A started, reset server connection, idle at a message boundary.
pub(crate) struct IdleServer {
    pub stream: TcpStream,
    /// The BackendKeyData it sent when it started.
    pub key: Option<BackendKey>,
    /// The startup parameters it was started with, less the revival token: a session may take
    /// it only with exactly these.
    pub params: Vec<(String, String)>,
}

/// The idle connections of every backend, each list bounded.
pub(crate) struct IdlePool {
    per_backend: Vec<VecDeque<IdleServer>>,
    max_per_backend: usize,
}

impl IdlePool {
    pub fn new(backends: usize, max_per_backend: usize) -> IdlePool {
        IdlePool {
            per_backend: (0..backends).map(|_| VecDeque::new()).collect(),
            max_per_backend,
        }
    }

    /// The most recently kept live connection to `backend` started with `params`. Connections
    /// found closed (or, against the protocol, holding unread bytes) are dropped on the way.
    pub fn take(&mut self, backend: usize, params: &[(String, String)]) -> Option<IdleServer> {
        let list = self.per_backend.get_mut(backend)?;
        while let Some(i) = list.iter().rposition(|s| s.params == params) {
            let server = list.remove(i)?;
            if is_idle(&server.stream) {
                return Some(server);
            }
        }
        None
    }

    /// Keep `server` for `backend`; the oldest connection goes when the list is full.
    pub fn keep(&mut self, backend: usize, server: IdleServer) {
        let Some(list) = self.per_backend.get_mut(backend) else {
            return;
        };
        if self.max_per_backend == 0 {
            return;
        }
        if list.len() >= self.max_per_backend {
            list.pop_front();
        }
        list.push_back(server);
    }

    /// Close every connection kept for `backend`.
    pub fn clear(&mut self, backend: usize) {
        if let Some(list) = self.per_backend.get_mut(backend) {
            list.clear();
        }
    }

    pub fn counts(&self) -> Vec<usize> {
        self.per_backend.iter().map(VecDeque::len).collect()
    }
}

/// Whether an idle connection is still open and has sent nothing.
fn is_idle(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.try_read(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

/// Reset a server connection that is idle at a message boundary with `DISCARD ALL` (settings,
/// prepared statements, temporary tables, listens, advisory locks, plans), and wait for it to
/// be idle again.
pub(crate) async fn reset(stream: &mut TcpStream, timeout: Duration) -> io::Result<()> {
    tokio::time::timeout(timeout, discard_all(stream))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "DISCARD ALL timed out"))?
}

async fn discard_all(stream: &mut TcpStream) -> io::Result<()> {
    let query = build_query("DISCARD ALL").map_err(io::Error::other)?;
    stream.write_all(&query).await?;
    let mut buf = BytesMut::with_capacity(1024);
    let mut discarded = false;
    loop {
        while let Some((tag, body)) = next_message(&mut buf)? {
            match tag {
                b'C' if &body[..] == b"DISCARD ALL\0" => discarded = true,
                b'Z' if discarded && &body[..] == b"I" => return Ok(()),
                b'N' | b'S' => {}
                b'E' => return Err(io::Error::other("DISCARD ALL failed")),
                _ => return Err(unexpected(tag)),
            }
        }
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// One whole message off the front of `buf`, if it holds one.
fn next_message(buf: &mut BytesMut) -> io::Result<Option<(u8, BytesMut)>> {
    let Some(header) = buf.get(..5) else {
        return Ok(None);
    };
    let tag = header[0];
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if !(4..=MAX_RESET_MESSAGE).contains(&len) {
        return Err(unexpected(tag));
    }
    if buf.len() < 1 + len {
        buf.reserve(1 + len - buf.len());
        return Ok(None);
    }
    buf.advance(5);
    Ok(Some((tag, buf.split_to(len - 4))))
}

fn unexpected(tag: u8) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "unexpected message {:?} while resetting a server",
            tag as char
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![tag];
        m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn splits_whole_messages_only() {
        let wire = [message(b'C', b"DISCARD ALL\0"), message(b'Z', b"I")].concat();
        let mut buf = BytesMut::from(&wire[..20]);
        let (tag, body) = next_message(&mut buf).unwrap().unwrap();
        assert_eq!((tag, &body[..]), (b'C', &b"DISCARD ALL\0"[..]));
        // Three bytes of the ReadyForQuery: not a message yet, and nothing consumed.
        assert!(next_message(&mut buf).unwrap().is_none());
        assert_eq!(buf.len(), 3);
        buf.extend_from_slice(&wire[20..]);
        let (tag, body) = next_message(&mut buf).unwrap().unwrap();
        assert_eq!((tag, &body[..]), (b'Z', &b"I"[..]));
        assert!(buf.is_empty());
    }

    #[test]
    fn refuses_lengths_out_of_bounds() {
        let mut short = BytesMut::from(&[b'Z', 0, 0, 0, 3][..]);
        assert!(next_message(&mut short).is_err());
        let mut long = BytesMut::from(&[b'D', 0, 1, 0, 5][..]);
        assert!(next_message(&mut long).is_err());
        let mut partial = BytesMut::from(&message(b'Z', b"I")[..5]);
        assert!(next_message(&mut partial).unwrap().is_none());
    }

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (a, b) = tokio::join!(TcpStream::connect(addr), listener.accept());
        (a.unwrap(), b.unwrap().0)
    }

    fn params(user: &str) -> Vec<(String, String)> {
        vec![("user".into(), user.into())]
    }

    #[tokio::test]
    async fn takes_by_params_newest_first_and_drops_closed_ones() {
        let mut pool = IdlePool::new(2, 2);
        let (a, _a_peer) = pair().await;
        let (b, b_peer) = pair().await;
        let (c, _c_peer) = pair().await;
        let a_port = a.local_addr().unwrap().port();
        let c_port = c.local_addr().unwrap().port();
        for stream in [a, b] {
            pool.keep(
                0,
                IdleServer {
                    stream,
                    key: None,
                    params: params("alice"),
                },
            );
        }
        pool.keep(
            0,
            IdleServer {
                stream: c,
                key: None,
                params: params("bob"),
            },
        );
        // Bounded: the oldest (a) went when c came.
        assert_eq!(pool.counts(), vec![2, 0]);
        assert!(pool.take(1, &params("alice")).is_none());
        assert!(pool.take(0, &params("carol")).is_none());
        let bob = pool.take(0, &params("bob")).unwrap();
        assert_eq!(bob.stream.local_addr().unwrap().port(), c_port);
        assert_ne!(bob.stream.local_addr().unwrap().port(), a_port);

        // b's server side closes: the pool notices when asked and drops it.
        drop(b_peer);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(pool.take(0, &params("alice")).is_none());
        assert_eq!(pool.counts(), vec![0, 0]);
    }

    #[tokio::test]
    async fn reset_reads_up_to_ready_for_query() {
        let (mut proxy_side, mut server_side) = pair().await;
        let server = tokio::spawn(async move {
            let mut query = vec![0u8; 17];
            server_side.read_exact(&mut query).await.unwrap();
            let reply = [
                message(b'N', b"Mhi\0\0"),
                message(b'C', b"DISCARD ALL\0"),
                message(b'Z', b"I"),
            ]
            .concat();
            // Split in two writes to make the reader join them.
            server_side.write_all(&reply[..8]).await.unwrap();
            server_side.write_all(&reply[8..]).await.unwrap();
            (query, server_side)
        });
        reset(&mut proxy_side, Duration::from_secs(5))
            .await
            .unwrap();
        let (query, _server_side) = server.await.unwrap();
        assert_eq!(query, build_query("DISCARD ALL").unwrap().to_vec());
    }

    #[tokio::test]
    async fn reset_fails_on_an_error_or_a_transaction_left_open() {
        for reply in [
            message(b'E', b"SERROR\0\0"),
            [message(b'C', b"DISCARD ALL\0"), message(b'Z', b"T")].concat(),
        ] {
            let (mut proxy_side, mut server_side) = pair().await;
            let server = tokio::spawn(async move {
                let mut query = vec![0u8; 17];
                server_side.read_exact(&mut query).await.unwrap();
                server_side.write_all(&reply).await.unwrap();
                server_side
            });
            assert!(reset(&mut proxy_side, Duration::from_secs(5))
                .await
                .is_err());
            drop(server.await.unwrap());
        }
    }
}
