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

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant as TokioInstant;
use weir::time::Instant;
use weir::transfer::message::build_terminate;
use weir::transfer::message::BackendKey;
use weir::transfer::reset::{Reset, ResetConfig, ResetFailure, ResetOutput};

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

/// Reset a server connection that is idle at a message boundary with
/// [`weir::transfer::reset`]: `DISCARD ALL`, then empty the dialect's revival-token setting
/// `token_param`. Waits for the server to be idle again with nothing more to read.
pub(crate) async fn reset(
    stream: &mut TcpStream,
    timeout: Duration,
    token_param: &str,
) -> io::Result<()> {
    let epoch = TokioInstant::now();
    let now = || Instant::from_nanos(epoch.elapsed().as_nanos() as u64);
    let config = ResetConfig {
        token_param: token_param.into(),
        timeout,
        ..ResetConfig::default()
    };
    let mut reset = Reset::new(now(), config);
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        while let Some(output) = reset.poll_output() {
            match output {
                ResetOutput::Transmit(data) => stream.write_all(&data).await?,
                ResetOutput::Done => return Ok(()),
                ResetOutput::Failed(failure) => return Err(failed(failure)),
            }
        }
        let deadline = reset
            .poll_timeout()
            .map(|at| epoch + Duration::from_nanos(at.as_nanos()));
        tokio::select! {
            read = stream.read_buf(&mut buf) => {
                let taken = match read? {
                    0 => reset.handle_eof(now()),
                    _ => reset.handle_input(now(), buf.split().freeze()),
                };
                taken.map_err(io::Error::other)?;
            }
            _ = super::sleep_until(deadline) => reset.handle_timeout(now()),
        }
    }
}

/// The I/O error a failed reset reports.
fn failed(failure: ResetFailure) -> io::Error {
    let kind = match failure {
        ResetFailure::ServerClosed => io::ErrorKind::UnexpectedEof,
        ResetFailure::Timeout => io::ErrorKind::TimedOut,
        ResetFailure::Unexpected { .. } => io::ErrorKind::InvalidData,
        _ => io::ErrorKind::Other,
    };
    io::Error::new(kind, failure)
}

#[cfg(test)]
mod tests {
    use super::*;

    use weir::transfer::message::build_query;

    fn message(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![tag];
        m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        m.extend_from_slice(body);
        m
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
