//! How a [`super::Proxy`] behaves.

use std::net::SocketAddr;
use std::time::Duration;

/// The proxy's backends, limits and policies.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// The servers sessions are placed on, in order; a [`super::BackendId`] is an index here.
    pub backends: Vec<SocketAddr>,
    /// The migration machine's configuration (dialect, transfer timeout, buffer limits).
    pub transfer: weir::transfer::Config,
    /// Attempts per requested move: a recoverable failure is retried until this many attempts
    /// were made. Default 3.
    pub max_transfer_attempts: u32,
    /// Wait before the next attempt, times the number of attempts made. Default 20 ms.
    pub retry_backoff: Duration,
    /// Connecting to a backend (a new client's first server, or a transfer's new one) fails
    /// after this. Default 5 s.
    pub connect_timeout: Duration,
    /// The longest startup packet a client may send (PostgreSQL allows 10,000 bytes).
    pub max_startup_len: u32,
    /// A client that has not sent its StartupMessage (or CancelRequest) this long after it
    /// connected is closed, as with PgBouncer's `client_login_timeout`. Default 60 s.
    pub login_timeout: Duration,
    /// Client connections open at once at most, counting those still starting and those
    /// carrying a CancelRequest. A client past it hears a FATAL ErrorResponse with SQLSTATE
    /// 53300 (`too_many_connections`) and is closed. A session also holds a server
    /// connection, so a proxy at this limit has about twice as many sockets open: keep
    /// `RLIMIT_NOFILE` above that. Default 1,000.
    pub max_client_connections: usize,
    /// Bytes a session holds for one peer at most before it stops reading the other: what the
    /// server sent and the client has not read yet, or what the client sent and the server
    /// has not read. Past it the proxy reads no more from the fast side until the slow side
    /// takes some, so a client that pipelines queries and never reads their results (or a
    /// server that stops reading) costs this much per direction, not the size of the
    /// results. One read (64 KiB) or the client bytes a transfer held may come on top. Each
    /// direction is written while the other is read, so a client that writes a long
    /// pipeline while it reads the results never waits on the proxy. Default 1 MiB.
    pub max_buffered_per_direction: usize,
    /// When set, the rebalancer runs with this policy.
    pub rebalance: Option<RebalanceConfig>,
    /// Server connections kept per backend after the sessions on them moved away, reset with
    /// `DISCARD ALL` (and the revival-token setting emptied), for later moves onto that
    /// backend by sessions with the same startup parameters: such a move skips the server's
    /// startup (a new process and cold caches). Only with a dialect that can carry the token
    /// to a started server ([`weir::transfer::Dialect::started_server_query_template`], as
    /// [`weir::transfer::Dialect::postgres`] can, with the two-argument
    /// `weir.deserialize_session` of [`weir::transfer::POSTGRES_EMULATION_SQL`]: install the
    /// SQL of this version before turning it on). 0 turns it off. Default 16.
    ///
    /// As with any pool of server connections (PgBouncer's too), a CancelRequest still on its
    /// way when its session moves may reach the next session of the same user on that server.
    pub max_idle_per_backend: usize,
}

impl ProxyConfig {
    /// The defaults for these backends, with the machine's default (CockroachDB) dialect.
    pub fn new(backends: Vec<SocketAddr>) -> ProxyConfig {
        ProxyConfig {
            backends,
            transfer: weir::transfer::Config::default(),
            max_transfer_attempts: 3,
            retry_backoff: Duration::from_millis(20),
            connect_timeout: Duration::from_secs(5),
            max_startup_len: 10_000,
            login_timeout: Duration::from_secs(60),
            max_client_connections: 1_000,
            max_buffered_per_direction: 1 << 20,
            rebalance: None,
            max_idle_per_backend: 16,
        }
    }
}

/// The rebalancer: every `interval` it moves every session off draining backends, then moves
/// sessions from the fullest backend to the emptiest until their counts differ by at most one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RebalanceConfig {
    /// Time between passes.
    pub interval: Duration,
    /// Moves started per pass at most, so a pass never floods the backends with new
    /// connections.
    pub max_moves_per_pass: usize,
}

impl Default for RebalanceConfig {
    fn default() -> Self {
        RebalanceConfig {
            interval: Duration::from_secs(1),
            max_moves_per_pass: 64,
        }
    }
}
