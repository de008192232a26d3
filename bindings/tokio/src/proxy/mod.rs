//! A PostgreSQL proxy that moves live sessions between servers.
//!
//! ```
//! use std::net::SocketAddr;
//! use weir_tokio::proxy::{BackendId, Proxy, ProxyConfig};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let backends: Vec<SocketAddr> = vec!["127.0.0.1:5432".parse().unwrap(), "127.0.0.1:5433".parse().unwrap()];
//! let mut config = ProxyConfig::new(backends);
//! config.transfer = weir::transfer::Config::with_dialect(weir::transfer::Dialect::postgres());
//! let proxy = Proxy::bind("127.0.0.1:0", config).await?;
//! println!("clients connect to {}", proxy.local_addr());
//!
//! // Move every session off the first server; new sessions go to the second.
//! proxy.set_draining(BackendId(0), true).unwrap();
//! for session in proxy.sessions() {
//!     let outcome = proxy.move_session(session.id, Some(BackendId(1))).await;
//!     println!("{:?}: {outcome:?}", session.id);
//! }
//! assert_eq!(proxy.metrics().sessions_per_backend, vec![0, 0]);
//! # Ok(())
//! # }
//! ```
//!
//! For each client, the proxy answers SSLRequest with `N` (it speaks plaintext), gives it
//! [`ProxyConfig::login_timeout`] to send its StartupMessage, places the
//! session on the backend with the fewest sessions (skipping draining and unreachable ones),
//! and relays both directions through a [`weir::transfer::Machine`], in one task per client.
//! [`Proxy::move_session`] moves one session at its next safe point; recoverable failures are
//! retried up to [`ProxyConfig::max_transfer_attempts`] times, and a fatal one closes only
//! that client, with a FATAL ErrorResponse that says why. The rebalancer
//! ([`ProxyConfig::rebalance`]) empties draining backends and evens out the rest.
//!
//! At most [`ProxyConfig::max_client_connections`] clients are served at once; one more hears
//! FATAL `too many connections` (SQLSTATE 53300) and is closed. An accept error (out of file
//! descriptors, say) is logged and the proxy tries again a moment later.
//!
//! A CancelRequest reaches the server the session is on now, with that server's key, however
//! many times the session has moved. Every transfer is logged (`tracing`, span
//! `weir.proxy.session`) with its outcome and latency; [`Proxy::metrics`] sums the machines'
//! counters and counts sessions per backend.
//!
//! A session that moves leaves its old server for reuse when the dialect allows it (it does
//! with [`weir::transfer::Dialect::postgres`]): the proxy resets that connection with
//! `DISCARD ALL` and keeps it, up to [`ProxyConfig::max_idle_per_backend`] per backend, and a
//! later move onto that backend by a session with the same startup parameters takes it instead
//! of starting a new server process.
//!
//! With [`weir::transfer::Dialect::postgres`], each backend needs
//! [`weir::transfer::POSTGRES_EMULATION_SQL`] installed and must let the session's user in
//! without a password (`trust`): the proxy does not hold credentials. A session's named
//! prepared statements move with it, whatever they hold (pgbench `-M prepared`'s `BEGIN;`
//! included): the machine keeps the client's Parse messages, up to
//! [`weir::transfer::Config::max_prepared_statement_bytes`] per session, and creates them again
//! on each new server.

mod balance;
mod config;
mod frontend;
mod idle;
mod metrics;
mod registry;
mod session;

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, ToSocketAddrs};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};
use tracing::Instrument;
use weir::transfer::frontend::build_error_response;
use weir::transfer::TransferOutcome;

pub use config::{ProxyConfig, RebalanceConfig};
pub use metrics::ProxyMetrics;

use registry::{Command, Shared};

/// A backend, by its index in [`ProxyConfig::backends`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BackendId(pub usize);

/// A client session, numbered from 0 in the order clients arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId(pub u64);

/// A live session, from [`Proxy::sessions`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionInfo {
    /// Which session.
    pub id: SessionId,
    /// The backend it is on.
    pub backend: BackendId,
    /// Whether a move is under way.
    pub moving: bool,
}

/// Why a move was not attempted, or gave no outcome. A move that ran reports how it ended
/// in its [`TransferOutcome`] instead.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MoveError {
    /// No live session has this id.
    UnknownSession(SessionId),
    /// No backend has this id.
    UnknownBackend(BackendId),
    /// The session is already on that backend.
    AlreadyThere(BackendId),
    /// Every other backend is draining.
    NoTarget,
    /// The session is already moving.
    InProgress,
    /// The session ended before the move did.
    SessionClosed,
    /// The migration machine refused the request.
    Refused(weir::transfer::TransferError),
}

impl fmt::Display for MoveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MoveError::UnknownSession(id) => write!(f, "no live session {}", id.0),
            MoveError::UnknownBackend(id) => write!(f, "no backend {}", id.0),
            MoveError::AlreadyThere(id) => write!(f, "the session is already on backend {}", id.0),
            MoveError::NoTarget => f.write_str("every other backend is draining"),
            MoveError::InProgress => f.write_str("the session is already moving"),
            MoveError::SessionClosed => f.write_str("the session ended before the move did"),
            MoveError::Refused(e) => write!(f, "the move was refused: {e}"),
        }
    }
}

impl std::error::Error for MoveError {}

/// A running proxy. Dropping it stops accepting clients and closes every session.
pub struct Proxy {
    shared: Arc<Shared>,
    local_addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Proxy {
    /// Listen on `addr` and serve clients in tasks on the current tokio runtime.
    pub async fn bind(addr: impl ToSocketAddrs, config: ProxyConfig) -> io::Result<Proxy> {
        if config.backends.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a proxy needs at least one backend",
            ));
        }
        let listener = TcpListener::bind(addr).await?;
        let local_addr = listener.local_addr()?;
        let rebalance = config.rebalance;
        let shared = Arc::new(Shared::new(config));
        let span = tracing::info_span!("weir.proxy", listen = %local_addr);
        let mut tasks = vec![tokio::spawn(
            accept(shared.clone(), listener).instrument(span.clone()),
        )];
        if let Some(policy) = rebalance {
            tasks.push(tokio::spawn(
                rebalance_loop(shared.clone(), policy).instrument(span),
            ));
        }
        Ok(Proxy {
            shared,
            local_addr,
            tasks,
        })
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The live sessions, by id.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        self.shared.sessions()
    }

    /// Move a session to `to` (or, with `None`, to the least-loaded other backend that is not
    /// draining) at its next safe point, and wait for the last attempt's outcome.
    pub async fn move_session(
        &self,
        id: SessionId,
        to: Option<BackendId>,
    ) -> Result<TransferOutcome, MoveError> {
        if let Some(to) = to {
            if to.0 >= self.shared.config.backends.len() {
                return Err(MoveError::UnknownBackend(to));
            }
        }
        let commands = {
            let state = self.shared.lock();
            let entry = state
                .sessions
                .get(&id)
                .ok_or(MoveError::UnknownSession(id))?;
            entry.commands.clone()
        };
        let (reply, outcome) = oneshot::channel();
        let reply = Some(reply);
        commands
            .send(Command::Move { to, reply })
            .await
            .map_err(|_| MoveError::SessionClosed)?;
        outcome.await.map_err(|_| MoveError::SessionClosed)?
    }

    /// Mark a backend as draining (no new sessions; the rebalancer moves its sessions away;
    /// its kept idle connections are closed) or live again.
    pub fn set_draining(&self, backend: BackendId, draining: bool) -> Result<(), MoveError> {
        self.shared.set_draining(backend, draining)
    }

    /// Sessions per backend and the summed transfer counters.
    pub fn metrics(&self) -> ProxyMetrics {
        self.shared.metrics()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        // The accept task owns the session tasks; aborting it aborts them.
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn accept(shared: Arc<Shared>, listener: TcpListener) {
    let max = shared.config.max_client_connections;
    let mut sessions = JoinSet::new();
    loop {
        let (client, peer) = tokio::select! {
            accepted = crate::accept::accept(&listener) => accepted,
            Some(_) = sessions.join_next() => continue,
        };
        if sessions.len() >= max {
            shared.lock().counters.over_limit += 1;
            tracing::debug!(%peer, "client refused: {max} connections are open");
            // A fresh socket's send buffer is empty: the reply goes out without waiting.
            let _ = client.try_write(&build_error_response("53300", "weir: too many connections"));
            continue;
        }
        sessions.spawn(session::serve(shared.clone(), client, peer).in_current_span());
    }
}

async fn rebalance_loop(shared: Arc<Shared>, policy: RebalanceConfig) {
    let mut ticks = tokio::time::interval(policy.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let moves = {
            let state = shared.lock();
            let movable: Vec<(SessionId, BackendId)> = state
                .sessions
                .iter()
                .filter(|(_, e)| !e.moving)
                .map(|(&id, e)| (id, e.backend))
                .collect();
            balance::plan(&state.loads(), &movable, policy.max_moves_per_pass)
                .into_iter()
                .filter_map(|(id, to)| Some((state.sessions.get(&id)?.commands.clone(), to)))
                .collect::<Vec<_>>()
        };
        for (commands, to) in moves {
            // A full queue means the session has requests waiting; the next pass retries.
            let _ = commands.try_send(Command::Move {
                to: Some(to),
                reply: None,
            });
        }
    }
}

/// Sleep until `at`, or forever without a timer.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
