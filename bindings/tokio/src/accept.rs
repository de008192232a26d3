//! Accepting connections without giving up: the one accept loop step every listener here uses.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

/// The pause after an accept error that is not one connection's own, such as running out of
/// file descriptors (EMFILE, ENFILE) or memory: retrying at once would spin, and a little later
/// a closed connection may have freed what was missing.
pub(crate) const BACKOFF: Duration = Duration::from_millis(100);

/// The next connection `listener` accepts. Errors are logged and never returned: a connection
/// that failed before it was accepted (aborted, reset) is skipped at once, any other error waits
/// [`BACKOFF`] before the next try, as hyper and PgBouncer do.
pub(crate) async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(e) if is_connection_error(&e) => {
                tracing::debug!("a connection failed before it was accepted: {e}");
            }
            Err(e) => {
                tracing::warn!("accept failed, retrying in {BACKOFF:?}: {e}");
                tokio::time::sleep(BACKOFF).await;
            }
        }
    }
}

/// Errors that concern only the connection being accepted, not the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_connection_s_own_failures_skip_the_backoff() {
        let of = |kind| is_connection_error(&io::Error::from(kind));
        assert!(of(io::ErrorKind::ConnectionAborted));
        assert!(of(io::ErrorKind::ConnectionReset));
        assert!(!of(io::ErrorKind::OutOfMemory));
        // EMFILE: the process is out of file descriptors.
        assert!(!is_connection_error(&io::Error::from_raw_os_error(24)));
    }
}
