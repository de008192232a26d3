//! The state the proxy's tasks share: backends, live sessions and counters, behind one mutex
//! that is never held across an await.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};
use weir::transfer::frontend::FrontendConfig;
use weir::transfer::message::BackendKey;
use weir::transfer::{Metrics, TransferOutcome};

use super::balance::{self, Load};
use super::config::ProxyConfig;
use super::idle::{IdlePool, IdleServer};
use super::metrics::{self, ProxyMetrics};
use super::{BackendId, MoveError, SessionId, SessionInfo};

/// A request to a session task.
pub(crate) enum Command {
    /// Move the session (to the least-loaded other backend when `to` is `None`), and report
    /// the last attempt's outcome on `reply` if there is one.
    Move {
        to: Option<BackendId>,
        reply: Option<oneshot::Sender<Result<TransferOutcome, MoveError>>>,
    },
}

pub(crate) struct Backend {
    pub addr: SocketAddr,
    pub draining: bool,
    pub sessions: usize,
}

pub(crate) struct Entry {
    pub backend: BackendId,
    pub moving: bool,
    pub commands: mpsc::Sender<Command>,
    /// The key the client knows, and the key of the server the session is on now.
    pub client_key: Option<BackendKey>,
    pub server_key: Option<BackendKey>,
    /// The machine's counters as of its last transfer.
    pub metrics: Metrics,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub accepted: u64,
    pub refused: u64,
    pub retries: u64,
    pub cancels: u64,
    pub idle_taken: u64,
    pub idle_kept: u64,
    pub login_timeouts: u64,
    pub over_limit: u64,
    pub peak_to_client: u64,
    pub peak_to_server: u64,
}

pub(crate) struct State {
    pub backends: Vec<Backend>,
    pub sessions: HashMap<SessionId, Entry>,
    next_session: u64,
    /// The counters of sessions that ended.
    ended: Metrics,
    pub counters: Counters,
}

impl State {
    pub fn loads(&self) -> Vec<Load> {
        self.backends
            .iter()
            .map(|b| Load {
                draining: b.draining,
                sessions: b.sessions,
            })
            .collect()
    }
}

pub(crate) struct Shared {
    pub config: ProxyConfig,
    state: Mutex<State>,
    /// Its own lock: taking and keeping connections never waits on the session registry.
    idle: Mutex<IdlePool>,
    keys: std::collections::hash_map::RandomState,
    key_counter: AtomicU64,
}

impl Shared {
    pub fn new(config: ProxyConfig) -> Shared {
        let backends = config
            .backends
            .iter()
            .map(|&addr| Backend {
                addr,
                draining: false,
                sessions: 0,
            })
            .collect();
        let idle = IdlePool::new(config.backends.len(), config.max_idle_per_backend);
        Shared {
            config,
            idle: Mutex::new(idle),
            state: Mutex::new(State {
                backends,
                sessions: HashMap::new(),
                next_session: 0,
                ended: Metrics::default(),
                counters: Counters::default(),
            }),
            keys: Default::default(),
            key_counter: AtomicU64::new(0),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state consistent, so a panic elsewhere does not
        // make it unusable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn idle(&self) -> MutexGuard<'_, IdlePool> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How a new client's first packet is read.
    pub fn frontend_config(&self) -> FrontendConfig {
        FrontendConfig {
            max_startup_len: self.config.max_startup_len,
            login_timeout: self.config.login_timeout,
            ..FrontendConfig::default()
        }
    }

    /// Whether sessions leave their old servers for reuse: the dialect can carry the token to
    /// a started server, and connections may be kept.
    pub fn reuses_servers(&self) -> bool {
        self.config.max_idle_per_backend > 0
            && self
                .config
                .transfer
                .dialect
                .started_server_query_template
                .is_some()
    }

    /// A kept connection to `backend` for a session with these startup parameters.
    pub fn take_idle(&self, backend: BackendId, params: &[(String, String)]) -> Option<IdleServer> {
        let server = self.idle().take(backend.0, params)?;
        self.lock().counters.idle_taken += 1;
        Some(server)
    }

    /// Keep a reset connection to `backend`, unless the backend is draining.
    pub fn keep_idle(&self, backend: BackendId, server: IdleServer) {
        // The registry's lock is held across the pool's (always in this order), so that a
        // concurrent `set_draining` cannot clear the pool between the check and the keep.
        let mut state = self.lock();
        if state.backends.get(backend.0).is_none_or(|b| b.draining) {
            return;
        }
        state.counters.idle_kept += 1;
        self.idle().keep(backend.0, server);
    }

    /// Mark a backend as draining or live; draining closes its kept connections.
    pub fn set_draining(&self, backend: BackendId, draining: bool) -> Result<(), MoveError> {
        let mut state = self.lock();
        let b = state
            .backends
            .get_mut(backend.0)
            .ok_or(MoveError::UnknownBackend(backend))?;
        b.draining = draining;
        if draining {
            self.idle().clear(backend.0);
        }
        Ok(())
    }

    /// A transfer key no one can guess: a per-proxy random SipHash of a counter and the clock.
    pub fn transfer_key(&self) -> String {
        let mut h = self.keys.build_hasher();
        h.write_u64(self.key_counter.fetch_add(1, Ordering::Relaxed));
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        h.write_u128(nanos);
        format!("weir-{:016x}", h.finish())
    }

    /// Count a new session on the least-loaded backend not in `tried`.
    pub fn reserve(&self, tried: &[BackendId]) -> Option<(BackendId, SocketAddr)> {
        let mut state = self.lock();
        let id = balance::least_loaded(&state.loads(), tried)?;
        let backend = &mut state.backends[id.0];
        backend.sessions += 1;
        Some((id, backend.addr))
    }

    /// Undo a [`Shared::reserve`] whose connection failed.
    pub fn unreserve(&self, id: BackendId) {
        let mut state = self.lock();
        state.backends[id.0].sessions -= 1;
    }

    pub fn addr(&self, id: BackendId) -> SocketAddr {
        self.config.backends[id.0]
    }

    /// Register a session whose backend was reserved; dropping the [`Registration`] ends it.
    pub fn register(
        self: &Arc<Self>,
        backend: BackendId,
        commands: mpsc::Sender<Command>,
    ) -> Registration {
        let mut state = self.lock();
        let id = SessionId(state.next_session);
        state.next_session += 1;
        state.counters.accepted += 1;
        state.sessions.insert(
            id,
            Entry {
                backend,
                moving: false,
                commands,
                client_key: None,
                server_key: None,
                metrics: Metrics::default(),
            },
        );
        Registration {
            shared: self.clone(),
            id,
        }
    }

    pub fn sessions(&self) -> Vec<SessionInfo> {
        let state = self.lock();
        let mut list: Vec<SessionInfo> = state
            .sessions
            .iter()
            .map(|(&id, e)| SessionInfo {
                id,
                backend: e.backend,
                moving: e.moving,
            })
            .collect();
        list.sort_by_key(|s| s.id);
        list
    }

    pub fn metrics(&self) -> ProxyMetrics {
        let state = self.lock();
        let mut transfers = state.ended.clone();
        for entry in state.sessions.values() {
            metrics::add(&mut transfers, &entry.metrics);
        }
        ProxyMetrics {
            sessions_per_backend: state.backends.iter().map(|b| b.sessions).collect(),
            sessions_accepted: state.counters.accepted,
            sessions_refused: state.counters.refused,
            transfer_retries: state.counters.retries,
            cancels_forwarded: state.counters.cancels,
            idle_servers_taken: state.counters.idle_taken,
            idle_servers_kept: state.counters.idle_kept,
            login_timeouts: state.counters.login_timeouts,
            connections_over_limit: state.counters.over_limit,
            peak_buffered_to_client: state.counters.peak_to_client,
            peak_buffered_to_server: state.counters.peak_to_server,
            idle_per_backend: self.idle().counts(),
            transfers,
        }
    }

    /// Where a CancelRequest carrying `client_key` must go: the session's current backend
    /// and the key that server issued.
    pub fn cancel_target(&self, client_key: &BackendKey) -> Option<(SocketAddr, BackendKey)> {
        let state = self.lock();
        state
            .sessions
            .values()
            .find(|e| e.client_key.as_ref() == Some(client_key))
            .and_then(|e| Some((state.backends[e.backend.0].addr, e.server_key.clone()?)))
    }
}

/// A live session's place in the registry, removed (with its backend's count) on drop.
pub(crate) struct Registration {
    shared: Arc<Shared>,
    pub id: SessionId,
}

impl Registration {
    pub fn update(&self, f: impl FnOnce(&mut Entry)) {
        if let Some(entry) = self.shared.lock().sessions.get_mut(&self.id) {
            f(entry);
        }
    }

    /// The session now lives on `to`.
    pub fn moved(&self, to: BackendId) {
        let mut state = self.shared.lock();
        let Some(entry) = state.sessions.get_mut(&self.id) else {
            return;
        };
        let from = std::mem::replace(&mut entry.backend, to);
        state.backends[from.0].sessions -= 1;
        state.backends[to.0].sessions += 1;
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        if let Some(entry) = state.sessions.remove(&self.id) {
            state.backends[entry.backend.0].sessions -= 1;
            metrics::add(&mut state.ended, &entry.metrics);
        }
    }
}
