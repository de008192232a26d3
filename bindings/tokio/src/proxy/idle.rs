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
use weir::transfer::message::{build_query, build_terminate, BackendKey};

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
            if let Some(oldest) = list.pop_front() {
                terminate(oldest);
            }
        }
        list.push_back(server);
    }

    /// Close every connection kept for `backend`.
    pub fn clear(&mut self, backend: usize) {
        if let Some(list) = self.per_backend.get_mut(backend) {
            list.drain(..).for_each(terminate);
        }
    }

    pub fn counts(&self) -> Vec<usize> {
        self.per_backend.iter().map(VecDeque::len).collect()
    }
}

/// Close a kept connection with a Terminate, so the server logs a goodbye, not a lost client.
/// An idle socket takes 5 bytes at once; if it does not, closing it is enough.
fn terminate(server: IdleServer) {
    let _ = server.stream.try_write(&build_terminate());
}

/// Whether an idle connection is still open and has sent nothing.
fn is_idle(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.try_read(&mut byte), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}

/// Reset a server connection that is idle at a message boundary with `DISCARD ALL` (settings,
/// prepared statements, temporary tables, listens, advisory locks, plans), then empty the
/// dialect's revival-token setting `token_param`: `DISCARD ALL` puts startup settings back, and
/// a server dialled for a transfer got an earlier session's token at startup. Waits for the
/// server to be idle again with nothing more to read.
pub(crate) async fn reset(
    stream: &mut TcpStream,
    timeout: Duration,
    token_param: &str,
) -> io::Result<()> {
    tokio::time::timeout(timeout, reset_queries(stream, token_param))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "resetting a server timed out"))?
}

async fn reset_queries(stream: &mut TcpStream, token_param: &str) -> io::Result<()> {
    // Two Query messages: DISCARD ALL refuses to run inside the implicit transaction of a
    // multi-statement one.
    let clear = format!(
        "SELECT pg_catalog.set_config('{}', '', false)",
        token_param.replace('\'', "''")
    );
    let mut queries = Vec::new();
    for sql in ["DISCARD ALL", clear.as_str()] {
        queries.extend_from_slice(&build_query(sql).map_err(io::Error::other)?);
    }
    stream.write_all(&queries).await?;
    let mut buf = BytesMut::with_capacity(1024);
    let mut discarded = false;
    // ReadyForQuery messages seen: one per query.
    let mut ready = 0;
    loop {
        while let Some((tag, body)) = next_message(&mut buf)? {
            match tag {
                b'C' if ready == 0 && &body[..] == b"DISCARD ALL\0" => discarded = true,
                b'T' | b'D' | b'C' if ready == 1 => {}
                b'Z' if discarded && &body[..] == b"I" => {
                    ready += 1;
                    if ready == 2 {
                        // Anything more would leave the connection mid-message.
                        return match buf.is_empty() {
                            true => Ok(()),
                            false => Err(unexpected(buf[0])),
                        };
                    }
                }
                b'N' | b'S' => {}
                b'E' => return Err(io::Error::other("resetting a server failed")),
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

    fn kept(stream: TcpStream, user: &str) -> IdleServer {
        IdleServer {
            stream,
            key: None,
            params: params(user),
        }
    }

    fn port(server: &IdleServer) -> u16 {
        server.stream.local_addr().unwrap().port()
    }

    #[tokio::test]
    async fn takes_by_params_newest_first_and_drops_closed_ones() {
        let mut pool = IdlePool::new(2, 3);
        let (a, a_peer) = pair().await;
        let (b, _b_peer) = pair().await;
        let (c, _c_peer) = pair().await;
        let (a_port, b_port) = (
            a.local_addr().unwrap().port(),
            b.local_addr().unwrap().port(),
        );
        pool.keep(0, kept(a, "alice"));
        pool.keep(0, kept(b, "alice"));
        pool.keep(0, kept(c, "bob"));
        assert_eq!(pool.counts(), vec![3, 0]);
        assert!(pool.take(1, &params("alice")).is_none());
        assert!(pool.take(0, &params("carol")).is_none());
        // The newest of alice's two.
        let newest = pool.take(0, &params("alice")).unwrap();
        assert_eq!(port(&newest), b_port);
        pool.keep(0, newest);

        // a's server side closes: the pool finds it closed when asked and drops it.
        drop(a_peer);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let alice = pool.take(0, &params("alice")).unwrap();
        assert_eq!(port(&alice), b_port);
        assert!(pool.take(0, &params("alice")).is_none());
        assert_eq!(pool.counts(), vec![1, 0]);
        assert_ne!(a_port, b_port);
    }

    #[tokio::test]
    async fn keeps_at_most_the_limit_and_closes_the_oldest_with_a_terminate() {
        let mut pool = IdlePool::new(1, 2);
        let (a, mut a_peer) = pair().await;
        let (b, _b_peer) = pair().await;
        let (c, _c_peer) = pair().await;
        let c_port = c.local_addr().unwrap().port();
        pool.keep(0, kept(a, "alice"));
        pool.keep(0, kept(b, "alice"));
        pool.keep(0, kept(c, "alice"));
        assert_eq!(pool.counts(), vec![2]);
        let mut goodbye = Vec::new();
        a_peer.read_to_end(&mut goodbye).await.unwrap();
        assert_eq!(goodbye, build_terminate().to_vec());
        assert_eq!(port(&pool.take(0, &params("alice")).unwrap()), c_port);

        pool.clear(0);
        assert_eq!(pool.counts(), vec![0]);
        // Nothing is kept where nothing may be.
        let mut none = IdlePool::new(1, 0);
        let (d, _d_peer) = pair().await;
        none.keep(0, kept(d, "alice"));
        assert_eq!(none.counts(), vec![0]);
    }

    /// A server that reads `expect` bytes, answers `reply` in two writes, and hands back what
    /// it read.
    async fn scripted(
        mut server_side: TcpStream,
        expect: usize,
        reply: Vec<u8>,
    ) -> (Vec<u8>, TcpStream) {
        let mut query = vec![0u8; expect];
        server_side.read_exact(&mut query).await.unwrap();
        let half = reply.len() / 2;
        server_side.write_all(&reply[..half]).await.unwrap();
        server_side.write_all(&reply[half..]).await.unwrap();
        (query, server_side)
    }

    /// The two queries of a reset that empties `weir.token's`, whose name needs quoting.
    fn reset_queries_sent() -> Vec<u8> {
        let clear = "SELECT pg_catalog.set_config('weir.token''s', '', false)";
        [
            build_query("DISCARD ALL").unwrap(),
            build_query(clear).unwrap(),
        ]
        .concat()
    }

    /// What a server answers to them.
    fn reset_reply() -> Vec<u8> {
        [
            message(b'N', b"Mhi\0\0"),
            message(b'S', b"application_name\0\0"),
            message(b'C', b"DISCARD ALL\0"),
            message(b'Z', b"I"),
            message(b'T', b"\0\x01set_config\0"),
            message(b'D', b"\0\x01\0\0\0\0"),
            message(b'C', b"SELECT 1\0"),
            message(b'Z', b"I"),
        ]
        .concat()
    }

    #[tokio::test]
    async fn reset_discards_then_empties_the_token_setting() {
        let (mut proxy_side, server_side) = pair().await;
        let expected = reset_queries_sent();
        let server = tokio::spawn(scripted(server_side, expected.len(), reset_reply()));
        reset(&mut proxy_side, Duration::from_secs(5), "weir.token's")
            .await
            .unwrap();
        let (query, _server_side) = server.await.unwrap();
        assert_eq!(query, expected);
    }

    #[tokio::test]
    async fn reset_fails_on_an_error_a_transaction_left_open_or_bytes_after_the_end() {
        for reply in [
            message(b'E', b"SERROR\0\0"),
            [message(b'C', b"DISCARD ALL\0"), message(b'Z', b"T")].concat(),
            [reset_reply(), vec![b'N', 0, 0]].concat(),
        ] {
            let (mut proxy_side, server_side) = pair().await;
            let expected = reset_queries_sent().len();
            let server = tokio::spawn(scripted(server_side, expected, reply));
            assert!(
                reset(&mut proxy_side, Duration::from_secs(5), "weir.token's")
                    .await
                    .is_err()
            );
            drop(server.await.unwrap());
        }
    }
}
