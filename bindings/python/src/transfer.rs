//! `weir.transfer`: moving a live PostgreSQL-wire session between servers, the pgwire frontend
//! that reads a new client's first packet, and the reset of a server connection a session left.

use std::time::Duration;

use pyo3::prelude::*;
use pyo3::types::PyBytes;
use weir::time::Instant;
use weir::transfer as core;
use weir::transfer::frontend as fe;
use weir::transfer::message::{self, BackendKey as CoreKey};
use weir::transfer::reset as rs;

use crate::convert::{bool_repr, bytes_in, bytes_repr, nanos, str_repr};
use crate::errors::{to_py, UsageError};
use crate::mux::Histogram;

/// The core's defaults, which the keyword arguments of the configurations start from.
fn defaults() -> core::Config {
    core::Config::default()
}

fn frontend_defaults() -> fe::FrontendConfig {
    fe::FrontendConfig::default()
}

fn reset_defaults() -> rs::ResetConfig {
    rs::ResetConfig::default()
}

/// What the servers are asked during a transfer. `Dialect.cockroachdb()` (the default) and
/// `Dialect.postgres()` (stock PostgreSQL with `POSTGRES_EMULATION_SQL` installed) are the two
/// presets; the keyword arguments start from CockroachDB's. Templates hold `{key}`, `{state}`
/// and `{token}` where those go.
#[pyclass(module = "weir._weir", frozen, eq, get_all)]
#[derive(Clone, PartialEq, Eq)]
pub struct Dialect {
    state_query_template: String,
    state_tag: String,
    token_param: String,
    deserialize_query_template: String,
    deserialize_column: String,
    deserialize_tag: String,
    started_server_query_template: Option<String>,
    replay_prepared_statements: bool,
}

#[pymethods]
impl Dialect {
    #[new]
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (
        *,
        state_query_template = core::Dialect::default().state_query_template,
        state_tag = core::Dialect::default().state_tag,
        token_param = core::Dialect::default().token_param,
        deserialize_query_template = core::Dialect::default().deserialize_query_template,
        deserialize_column = core::Dialect::default().deserialize_column,
        deserialize_tag = core::Dialect::default().deserialize_tag,
        started_server_query_template = core::Dialect::default().started_server_query_template,
        replay_prepared_statements = core::Dialect::default().replay_prepared_statements,
    ))]
    fn new(
        state_query_template: String,
        state_tag: String,
        token_param: String,
        deserialize_query_template: String,
        deserialize_column: String,
        deserialize_tag: String,
        started_server_query_template: Option<String>,
        replay_prepared_statements: bool,
    ) -> Dialect {
        Dialect {
            state_query_template,
            state_tag,
            token_param,
            deserialize_query_template,
            deserialize_column,
            deserialize_tag,
            started_server_query_template,
            replay_prepared_statements,
        }
    }

    /// CockroachDB's own statements (`SHOW TRANSFER STATE`, `crdb_internal.deserialize_session`).
    #[staticmethod]
    fn cockroachdb() -> Dialect {
        Dialect::from_core(core::Dialect::cockroachdb())
    }

    /// Stock PostgreSQL with `POSTGRES_EMULATION_SQL` installed.
    #[staticmethod]
    fn postgres() -> Dialect {
        Dialect::from_core(core::Dialect::postgres())
    }

    /// The state query for `key`.
    fn state_query(&self, key: &str) -> String {
        self.to_core().state_query(key)
    }

    /// The deserialize query for the base64 `state`.
    fn deserialize_query(&self, state: &str) -> String {
        self.to_core().deserialize_query(state)
    }

    /// The deserialize query for an already started server, or `None` when the dialect has none.
    fn started_server_query(&self, state: &str, token: &str) -> Option<String> {
        self.to_core().started_server_query(state, token)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "Dialect(state_query_template={}, ...)",
            str_repr(py, &self.state_query_template)?
        ))
    }
}

impl Dialect {
    fn from_core(d: core::Dialect) -> Dialect {
        Dialect {
            state_query_template: d.state_query_template,
            state_tag: d.state_tag,
            token_param: d.token_param,
            deserialize_query_template: d.deserialize_query_template,
            deserialize_column: d.deserialize_column,
            deserialize_tag: d.deserialize_tag,
            started_server_query_template: d.started_server_query_template,
            replay_prepared_statements: d.replay_prepared_statements,
        }
    }

    fn to_core(&self) -> core::Dialect {
        core::Dialect {
            state_query_template: self.state_query_template.clone(),
            state_tag: self.state_tag.clone(),
            token_param: self.token_param.clone(),
            deserialize_query_template: self.deserialize_query_template.clone(),
            deserialize_column: self.deserialize_column.clone(),
            deserialize_tag: self.deserialize_tag.clone(),
            started_server_query_template: self.started_server_query_template.clone(),
            replay_prepared_statements: self.replay_prepared_statements,
        }
    }
}

/// How a transfer `Machine` behaves: every argument is keyword-only, sizes in bytes and times in
/// nanoseconds, defaults the core's. `max_message_len` and `max_startup_len` are the framing
/// limits of every stream; `reuse_old_server` hands the old server back (`ReleaseOldServer`)
/// instead of closing it.
#[pyclass(module = "weir._weir", frozen, eq, get_all)]
#[derive(Clone, PartialEq, Eq)]
pub struct TransferConfig {
    dialect: Dialect,
    transfer_timeout_ns: u64,
    max_held_client_bytes: usize,
    max_held_server_bytes: usize,
    max_transfer_response_len: u32,
    max_small_message_len: u32,
    max_message_len: u32,
    max_startup_len: u32,
    reuse_old_server: bool,
}

#[pymethods]
impl TransferConfig {
    #[new]
    #[pyo3(signature = (
        *,
        dialect = Dialect::from_core(defaults().dialect),
        transfer_timeout_ns = nanos(defaults().transfer_timeout),
        max_held_client_bytes = defaults().max_held_client_bytes,
        max_held_server_bytes = defaults().max_held_server_bytes,
        max_transfer_response_len = defaults().max_transfer_response_len,
        max_small_message_len = defaults().max_small_message_len,
        max_message_len = defaults().framer.max_message_len,
        max_startup_len = defaults().framer.max_startup_len,
        reuse_old_server = defaults().reuse_old_server,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        dialect: Dialect,
        transfer_timeout_ns: u64,
        max_held_client_bytes: usize,
        max_held_server_bytes: usize,
        max_transfer_response_len: u32,
        max_small_message_len: u32,
        max_message_len: u32,
        max_startup_len: u32,
        reuse_old_server: bool,
    ) -> TransferConfig {
        TransferConfig {
            dialect,
            transfer_timeout_ns,
            max_held_client_bytes,
            max_held_server_bytes,
            max_transfer_response_len,
            max_small_message_len,
            max_message_len,
            max_startup_len,
            reuse_old_server,
        }
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "Config(dialect={}, transfer_timeout_ns={}, reuse_old_server={}, ...)",
            self.dialect.__repr__(py)?,
            self.transfer_timeout_ns,
            bool_repr(self.reuse_old_server)
        ))
    }
}

impl TransferConfig {
    fn to_core(&self) -> core::Config {
        let mut c = core::Config::with_dialect(self.dialect.to_core());
        c.transfer_timeout = Duration::from_nanos(self.transfer_timeout_ns);
        c.max_held_client_bytes = self.max_held_client_bytes;
        c.max_held_server_bytes = self.max_held_server_bytes;
        c.max_transfer_response_len = self.max_transfer_response_len;
        c.max_small_message_len = self.max_small_message_len;
        c.framer.max_message_len = self.max_message_len;
        c.framer.max_startup_len = self.max_startup_len;
        c.reuse_old_server = self.reuse_old_server;
        c
    }
}

/// The key a client uses to cancel a running query on one server (BackendKeyData): the
/// backend's process id and its secret (4 bytes in protocol 3.0, up to 256 in 3.2). Hashable.
#[pyclass(module = "weir._weir", frozen, eq, hash)]
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct BackendKey(CoreKey);

#[pymethods]
impl BackendKey {
    #[new]
    fn new(process_id: u32, secret: Vec<u8>) -> BackendKey {
        BackendKey(CoreKey { process_id, secret })
    }

    /// The backend's process id.
    #[getter]
    fn process_id(&self) -> u32 {
        self.0.process_id
    }

    /// The secret.
    #[getter]
    fn secret<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0.secret)
    }

    #[classattr]
    fn __match_args__() -> (&'static str, &'static str) {
        ("process_id", "secret")
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "BackendKey({}, {})",
            self.0.process_id,
            bytes_repr(py, &self.0.secret)?
        ))
    }
}

fn key(key: Option<CoreKey>) -> Option<BackendKey> {
    key.map(BackendKey)
}

fn key_repr(py: Python<'_>, key: &Option<BackendKey>) -> PyResult<String> {
    match key {
        Some(key) => key.__repr__(py),
        None => Ok("None".to_owned()),
    }
}

/// The cancel keys of a session: `client`, the one the client received at startup, and
/// `server`, the one of the server the session is on now (either `None` before it is known).
#[pyclass(module = "weir._weir", frozen, eq, get_all)]
#[derive(Clone, PartialEq, Eq)]
pub struct CancelKeys {
    client: Option<BackendKey>,
    server: Option<BackendKey>,
}

#[pymethods]
impl CancelKeys {
    #[new]
    fn new(client: Option<BackendKey>, server: Option<BackendKey>) -> CancelKeys {
        CancelKeys { client, server }
    }

    #[classattr]
    fn __match_args__() -> (&'static str, &'static str) {
        ("client", "server")
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "CancelKeys({}, {})",
            key_repr(py, &self.client)?,
            key_repr(py, &self.server)?
        ))
    }
}

/// Where a `Transmit` goes: the client, or a server connection by the id the caller gave it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum To {
    Client,
    Server(u64),
}

/// Output: write `data` to `to` (`"client"` or a server id), in order. `source` is where the
/// bytes come from: `"client"` or `"server"` (relayed unchanged) or `"machine"` (written by the
/// machine). `data` is a copy of the machine's buffer.
#[pyclass(module = "weir._weir", frozen)]
pub struct TransferTransmit {
    to: To,
    source: &'static str,
    data: Py<PyBytes>,
}

#[pymethods]
impl TransferTransmit {
    #[new]
    fn new(to: &Bound<'_, PyAny>, source: &str, data: Py<PyBytes>) -> PyResult<TransferTransmit> {
        let to = if let Ok(server) = to.extract::<u64>() {
            To::Server(server)
        } else if to.extract::<&str>().is_ok_and(|to| to == "client") {
            To::Client
        } else {
            return Err(UsageError::new_err("to must be \"client\" or a server id"));
        };
        let source = match source {
            "client" => "client",
            "server" => "server",
            "machine" => "machine",
            _ => {
                return Err(UsageError::new_err(
                    "source must be \"client\", \"server\" or \"machine\"",
                ))
            }
        };
        Ok(TransferTransmit { to, source, data })
    }

    /// `"client"`, or the id of the server to write to.
    #[getter]
    fn to(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        Ok(match self.to {
            To::Client => "client".into_pyobject(py)?.into_any().unbind(),
            To::Server(id) => id.into_pyobject(py)?.into_any().unbind(),
        })
    }

    /// `"client"`, `"server"` or `"machine"`.
    #[getter]
    fn source(&self) -> &'static str {
        self.source
    }

    /// The bytes.
    #[getter]
    fn data(&self, py: Python<'_>) -> Py<PyBytes> {
        self.data.clone_ref(py)
    }

    #[classattr]
    fn __match_args__() -> (&'static str, &'static str, &'static str) {
        ("to", "source", "data")
    }

    fn __eq__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<TransferTransmit>().is_ok_and(|other| {
            let other = other.get();
            self.to == other.to
                && self.source == other.source
                && self.data.as_bytes(py) == other.data.as_bytes(py)
        })
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let to = match self.to {
            To::Client => "'client'".to_owned(),
            To::Server(id) => id.to_string(),
        };
        Ok(format!(
            "Transmit({to}, '{}', {})",
            self.source,
            self.data.bind(py).repr()?
        ))
    }
}

/// Output: connect to the transfer's new server `server`, then call
/// `Machine.handle_new_server_connected` (or `handle_new_server_failed`); the machine writes a
/// StartupMessage with exactly `params` (the client's, plus the revival token).
#[pyclass(module = "weir._weir", frozen, eq, get_all)]
#[derive(Clone, PartialEq, Eq)]
pub struct DialNewServer {
    server: u64,
    params: Vec<(String, String)>,
}

#[pymethods]
impl DialNewServer {
    #[new]
    fn new(server: u64, params: Vec<(String, String)>) -> DialNewServer {
        DialNewServer { server, params }
    }

    #[classattr]
    fn __match_args__() -> (&'static str, &'static str) {
        ("server", "params")
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let params = self.params.clone().into_pyobject(py)?;
        Ok(format!(
            "DialNewServer({}, {})",
            self.server,
            params.repr()?
        ))
    }
}

/// Outputs that name only a server connection.
macro_rules! server_output {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {$(
        $(#[$doc])*
        #[pyclass(module = "weir._weir", frozen, eq, hash, get_all)]
        #[derive(Clone, PartialEq, Eq, Hash)]
        pub struct $name {
            server: u64,
        }

        #[pymethods]
        impl $name {
            #[new]
            fn new(server: u64) -> $name {
                $name { server }
            }

            #[classattr]
            fn __match_args__() -> (&'static str,) {
                ("server",)
            }

            fn __repr__(&self) -> String {
                format!("{}({})", stringify!($name), self.server)
            }
        }
    )*};
}

server_output!(
    /// Output: close the connection to the server the session just left (a Terminate was
    /// written to it); the session is on the transfer's new server now.
    CloseOldServer,
    /// Output: close the connection to the transfer's new server; the transfer failed and the
    /// session stays where it was.
    CloseNewServer,
);

/// Output (with `Config(reuse_old_server=True)`): the session left `server`, which is idle at a
/// message boundary and got no Terminate; reset it with a `Reset` and offer it to a later
/// transfer, or close it. `key` is its BackendKeyData.
#[pyclass(module = "weir._weir", frozen, eq, get_all)]
#[derive(Clone, PartialEq, Eq)]
pub struct ReleaseOldServer {
    server: u64,
    key: Option<BackendKey>,
}

#[pymethods]
impl ReleaseOldServer {
    #[new]
    fn new(server: u64, key: Option<BackendKey>) -> ReleaseOldServer {
        ReleaseOldServer { server, key }
    }

    #[classattr]
    fn __match_args__() -> (&'static str, &'static str) {
        ("server", "key")
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "ReleaseOldServer({}, {})",
            self.server,
            key_repr(py, &self.key)?
        ))
    }
}

/// Output, the last one: the session is over (`reason` says why); close the client and every
/// server connection. Every later call raises `ClosedError`.
#[pyclass(module = "weir._weir", frozen, eq, hash, get_all)]
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TransferClosed {
    reason: String,
}

#[pymethods]
impl TransferClosed {
    #[new]
    fn new(reason: String) -> TransferClosed {
        TransferClosed { reason }
    }

    #[classattr]
    fn __match_args__() -> (&'static str,) {
        ("reason",)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!("Closed({})", str_repr(py, &self.reason)?))
    }
}

/// Output: a transfer ended. `result` is `"success"` (the session is on the new server),
/// `"recoverable"` (it stays on the old one) or `"fatal"` (the client was closed); `failure`
/// is why it failed, `None` on success. `latency_ns` runs from the request, `suspended_ns` from
/// the safe point (zero when none came).
#[pyclass(module = "weir._weir", frozen, eq, get_all)]
#[derive(Clone, PartialEq, Eq)]
pub struct Outcome {
    key: String,
    result: String,
    failure: Option<String>,
    latency_ns: u64,
    suspended_ns: u64,
}

#[pymethods]
impl Outcome {
    #[new]
    fn new(
        key: String,
        result: String,
        failure: Option<String>,
        latency_ns: u64,
        suspended_ns: u64,
    ) -> Outcome {
        Outcome {
            key,
            result,
            failure,
            latency_ns,
            suspended_ns,
        }
    }

    #[classattr]
    fn __match_args__() -> (
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
    ) {
        ("key", "result", "failure", "latency_ns", "suspended_ns")
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let failure = match &self.failure {
            Some(failure) => str_repr(py, failure)?,
            None => "None".to_owned(),
        };
        Ok(format!(
            "Outcome({}, {}, {failure}, {}, {})",
            str_repr(py, &self.key)?,
            str_repr(py, &self.result)?,
            self.latency_ns,
            self.suspended_ns
        ))
    }
}

impl From<core::TransferOutcome> for Outcome {
    fn from(o: core::TransferOutcome) -> Outcome {
        let (result, failure) = match o.result {
            core::TransferResult::Success => ("success", None),
            core::TransferResult::Recoverable(f) => ("recoverable", Some(f.to_string())),
            core::TransferResult::Fatal(f) => ("fatal", Some(f.to_string())),
        };
        Outcome {
            key: o.key,
            result: result.to_owned(),
            failure,
            latency_ns: nanos(o.latency),
            suspended_ns: nanos(o.suspended),
        }
    }
}

/// Output: the client connection carried a CancelRequest for `key`, which the machine does not
/// forward: route it to the server that owns the key (see `Machine.cancel_keys()`).
#[pyclass(module = "weir._weir", frozen, eq, hash, get_all)]
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CancelRequest {
    key: BackendKey,
}

#[pymethods]
impl CancelRequest {
    #[new]
    fn new(key: BackendKey) -> CancelRequest {
        CancelRequest { key }
    }

    #[classattr]
    fn __match_args__() -> (&'static str,) {
        ("key",)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!("CancelRequest({})", self.key.__repr__(py)?))
    }
}

/// What a transfer `Machine` has done so far, a snapshot: transfers ended by how, their latency
/// and state-query response sizes, and the bytes relayed each way. `TransferMetrics()` is all
/// zero, and `merge` adds two snapshots up, as a proxy sums its sessions' machines.
#[pyclass(module = "weir._weir", frozen, eq)]
#[derive(Clone, PartialEq, Eq)]
pub struct TransferMetrics(core::Metrics);

#[pymethods]
impl TransferMetrics {
    /// No transfers and no bytes.
    #[new]
    fn new() -> TransferMetrics {
        TransferMetrics(core::Metrics::default())
    }

    /// These counters plus `other`'s, as if one machine had done the work of both: counts and
    /// bytes added, histograms merged bucket by bucket. Neither operand changes.
    fn merge(&self, other: &TransferMetrics) -> TransferMetrics {
        let mut sum = self.0.clone();
        sum.merge(&other.0);
        TransferMetrics(sum)
    }

    /// Transfers that ended (requests refused as misuse are not counted).
    #[getter]
    fn attempted(&self) -> u64 {
        self.0.attempted
    }

    /// Transfers that moved the session.
    #[getter]
    fn success(&self) -> u64 {
        self.0.success
    }

    /// Transfers that failed and closed the client.
    #[getter]
    fn error_fatal(&self) -> u64 {
        self.0.error_fatal
    }

    /// Transfers that failed and left the session on the old server.
    #[getter]
    fn error_recoverable(&self) -> u64 {
        self.0.error_recoverable
    }

    /// Transfer latency from request to outcome, in nanoseconds.
    #[getter]
    fn latency_ns(&self) -> Histogram {
        self.0.latency_ns.clone().into()
    }

    /// Length of the state query's DataRow, in bytes.
    #[getter]
    fn response_bytes(&self) -> Histogram {
        self.0.response_bytes.clone().into()
    }

    /// Client bytes forwarded to a server.
    #[getter]
    fn client_bytes(&self) -> u64 {
        self.0.client_bytes
    }

    /// Server bytes forwarded to the client.
    #[getter]
    fn server_bytes(&self) -> u64 {
        self.0.server_bytes
    }

    /// Bytes of late old-server messages discarded when a transfer succeeded.
    #[getter]
    fn discarded_old_server_bytes(&self) -> u64 {
        self.0.discarded_old_server_bytes
    }

    fn __repr__(&self) -> String {
        format!(
            "TransferMetrics(attempted={}, success={}, error_fatal={}, error_recoverable={}, ...)",
            self.0.attempted, self.0.success, self.0.error_fatal, self.0.error_recoverable
        )
    }
}

/// Sits between one client and its server, relays both directions, and moves the session to a
/// new server on request. Server connections are named by `int` ids the caller picks. Drain
/// `poll_output()` after every call and call `handle_timeout(now)` at `poll_timeout()`.
#[pyclass(module = "weir._weir")]
pub struct Machine(core::Machine);

#[pymethods]
impl Machine {
    /// A machine for a client that has just connected to its first server, named `server`;
    /// `config` defaults to `Config()`.
    #[new]
    #[pyo3(signature = (server, config = None))]
    fn new(server: u64, config: Option<TransferConfig>) -> Machine {
        let config = config.map_or_else(core::Config::default, |c| c.to_core());
        Machine(core::Machine::new(config, core::ServerId(server)))
    }

    /// Bytes the client sent (`bytes` shared without a copy, `bytearray` and `memoryview`
    /// copied once). During a transfer they are held; raises `LimitError` past
    /// `max_held_client_bytes` (nothing taken: offer them again once the transfer ends).
    fn handle_client_input(&mut self, now: u64, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let data = bytes_in(data)?;
        self.0
            .handle_client_input(Instant::from_nanos(now), data)
            .map_err(to_py)
    }

    /// Bytes that `server` sent: the session's server or a transfer's new one.
    fn handle_server_input(
        &mut self,
        now: u64,
        server: u64,
        data: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let data = bytes_in(data)?;
        self.0
            .handle_server_input(Instant::from_nanos(now), core::ServerId(server), data)
            .map_err(to_py)
    }

    /// Moves the session to a new server the caller names `to`, identified in the state query
    /// by `key` (1 to 128 characters of `[A-Za-z0-9_.-]`, unpredictable). It starts at the next
    /// safe point and ends in an `Outcome` within the transfer timeout.
    fn request_transfer(&mut self, now: u64, key: &str, to: u64) -> PyResult<()> {
        self.0
            .request_transfer(Instant::from_nanos(now), key, core::ServerId(to))
            .map_err(to_py)
    }

    /// The connection asked for by `DialNewServer` is up; the machine writes the StartupMessage.
    fn handle_new_server_connected(&mut self, now: u64, server: u64) -> PyResult<()> {
        self.0
            .handle_new_server_connected(Instant::from_nanos(now), core::ServerId(server))
            .map_err(to_py)
    }

    /// Instead of dialling, offers as `server` a connection that is already started, idle and
    /// reset, for the same startup parameters; `key` is its BackendKeyData.
    #[pyo3(signature = (now, server, key = None))]
    fn handle_new_server_started(
        &mut self,
        now: u64,
        server: u64,
        key: Option<BackendKey>,
    ) -> PyResult<()> {
        self.0
            .handle_new_server_started(
                Instant::from_nanos(now),
                core::ServerId(server),
                key.map(|k| k.0),
            )
            .map_err(to_py)
    }

    /// The new server could not be reached or its connection broke; the session stays put.
    fn handle_new_server_failed(&mut self, now: u64, server: u64, reason: &str) -> PyResult<()> {
        self.0
            .handle_new_server_failed(Instant::from_nanos(now), core::ServerId(server), reason)
            .map_err(to_py)
    }

    /// The deadline from `poll_timeout()` has passed.
    fn handle_timeout(&mut self, now: u64) {
        self.0.handle_timeout(Instant::from_nanos(now));
    }

    /// The next output, or `None` when there is nothing to do.
    fn poll_output(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let Some(output) = self.0.poll_output() else {
            return Ok(None);
        };
        let object = match output {
            core::Output::Transmit(t) => Py::new(
                py,
                TransferTransmit {
                    to: match t.to {
                        core::Peer::Client => To::Client,
                        core::Peer::Server(id) => To::Server(id.0),
                    },
                    source: match t.source {
                        core::Source::Client => "client",
                        core::Source::Server => "server",
                        core::Source::Machine => "machine",
                    },
                    data: PyBytes::new(py, &t.data).unbind(),
                },
            )?
            .into_any(),
            core::Output::DialNewServer { server, params } => Py::new(
                py,
                DialNewServer {
                    server: server.0,
                    params,
                },
            )?
            .into_any(),
            core::Output::CloseOldServer(id) => {
                Py::new(py, CloseOldServer { server: id.0 })?.into_any()
            }
            core::Output::ReleaseOldServer { server, key: k } => Py::new(
                py,
                ReleaseOldServer {
                    server: server.0,
                    key: key(k),
                },
            )?
            .into_any(),
            core::Output::CloseNewServer(id) => {
                Py::new(py, CloseNewServer { server: id.0 })?.into_any()
            }
            core::Output::Closed(reason) => Py::new(
                py,
                TransferClosed {
                    reason: reason.to_string(),
                },
            )?
            .into_any(),
            core::Output::Outcome(outcome) => Py::new(py, Outcome::from(outcome))?.into_any(),
            core::Output::CancelRequest(k) => {
                Py::new(py, CancelRequest { key: BackendKey(k) })?.into_any()
            }
        };
        Ok(Some(object))
    }

    /// When to call `handle_timeout`, in nanoseconds: the deadline of a running transfer, or
    /// `None` while none runs.
    fn poll_timeout(&self) -> Option<u64> {
        self.0.poll_timeout().map(Instant::as_nanos)
    }

    /// The counters and histograms, a snapshot.
    #[getter]
    fn metrics(&self) -> TransferMetrics {
        TransferMetrics(self.0.metrics())
    }

    /// The cancel key the client knows and the one the current server expects.
    fn cancel_keys(&self) -> CancelKeys {
        let keys = self.0.cancel_keys();
        CancelKeys {
            client: key(keys.client),
            server: key(keys.server),
        }
    }

    /// The parameters of the client's StartupMessage, in wire order.
    fn startup_params(&self) -> Vec<(String, String)> {
        self.0.startup_params()
    }

    /// The id of the server the session is on now.
    fn server(&self) -> u64 {
        self.0.server().0
    }

    /// Whether the session could move right now.
    fn at_safe_point(&self) -> bool {
        self.0.at_safe_point()
    }

    /// Whether a transfer was requested and has not ended.
    fn is_transferring(&self) -> bool {
        self.0.is_transferring()
    }

    /// Whether the session is over.
    fn is_closed(&self) -> bool {
        self.0.is_closed()
    }

    /// Bytes the machine holds (held during a transfer, and what the framers buffer).
    fn buffered_len(&self) -> usize {
        self.0.buffered_len()
    }
}

/// How a `Frontend` reads the first packet: every argument is keyword-only, defaults the
/// core's. `max_startup_len` is the longest startup packet (length field included),
/// `max_encryption_requests` the SSL/GSS requests answered `N` before the client is refused,
/// `login_timeout_ns` how long the client has to finish its startup.
#[pyclass(module = "weir._weir", frozen, eq, get_all)]
#[derive(Clone, PartialEq, Eq)]
pub struct FrontendConfig {
    max_startup_len: u32,
    max_encryption_requests: usize,
    login_timeout_ns: u64,
}

#[pymethods]
impl FrontendConfig {
    #[new]
    #[pyo3(signature = (
        *,
        max_startup_len = frontend_defaults().max_startup_len,
        max_encryption_requests = frontend_defaults().max_encryption_requests,
        login_timeout_ns = nanos(frontend_defaults().login_timeout),
    ))]
    fn new(
        max_startup_len: u32,
        max_encryption_requests: usize,
        login_timeout_ns: u64,
    ) -> FrontendConfig {
        FrontendConfig {
            max_startup_len,
            max_encryption_requests,
            login_timeout_ns,
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "FrontendConfig(max_startup_len={}, max_encryption_requests={}, login_timeout_ns={})",
            self.max_startup_len, self.max_encryption_requests, self.login_timeout_ns
        )
    }
}

/// Outputs that carry only bytes.
macro_rules! bytes_output {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {$(
        $(#[$doc])*
        #[pyclass(module = "weir._weir", frozen, eq, hash)]
        #[derive(Clone, PartialEq, Eq, Hash)]
        pub struct $name {
            data: Vec<u8>,
        }

        #[pymethods]
        impl $name {
            #[new]
            fn new(data: Vec<u8>) -> $name {
                $name { data }
            }

            /// The bytes (a new `bytes` object on every read).
            #[getter]
            fn data<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
                PyBytes::new(py, &self.data)
            }

            #[classattr]
            fn __match_args__() -> (&'static str,) {
                ("data",)
            }

            fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
                Ok(format!("{}({})", stringify!($name), bytes_repr(py, &self.data)?))
            }
        }
    )*};
}

bytes_output!(
    /// Frontend output: write `data` to the client (`N`, the answer to an encryption request).
    FrontendTransmit,
    /// Frontend output, final: the client's StartupMessage, whole, followed by any bytes the
    /// client sent after it; give `data` to `Machine.handle_client_input`.
    Startup,
    /// Reset output: write `data` to the server.
    ResetTransmit,
);

/// Frontend output, final: the connection carried a CancelRequest for the backend with `key`.
#[pyclass(module = "weir._weir", frozen, eq, hash, get_all)]
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Cancel {
    key: BackendKey,
}

#[pymethods]
impl Cancel {
    #[new]
    fn new(key: BackendKey) -> Cancel {
        Cancel { key }
    }

    #[classattr]
    fn __match_args__() -> (&'static str,) {
        ("key",)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!("Cancel({})", self.key.__repr__(py)?))
    }
}

/// Outputs that carry only a reason.
macro_rules! reason_output {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {$(
        $(#[$doc])*
        #[pyclass(module = "weir._weir", frozen, eq, hash, get_all)]
        #[derive(Clone, PartialEq, Eq, Hash)]
        pub struct $name {
            reason: String,
        }

        #[pymethods]
        impl $name {
            #[new]
            fn new(reason: String) -> $name {
                $name { reason }
            }

            #[classattr]
            fn __match_args__() -> (&'static str,) {
                ("reason",)
            }

            fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
                Ok(format!("{}({})", stringify!($name), str_repr(py, &self.reason)?))
            }
        }
    )*};
}

reason_output!(
    /// Frontend output, final: the client broke the startup protocol or was too slow; close
    /// the connection (`build_error_response` makes the last words to send first).
    FrontendClosed,
    /// Reset output, final: the reset failed; close the connection.
    ResetFailed,
);

/// Reads a new client's first packet, answering SSL and GSS encryption requests `N`. It ends
/// in one final output: `Startup`, `Cancel` or `FrontendClosed`.
#[pyclass(module = "weir._weir")]
pub struct Frontend(fe::Frontend);

#[pymethods]
impl Frontend {
    /// A frontend for a client that connected at `now`; `config` defaults to
    /// `FrontendConfig()`.
    #[new]
    #[pyo3(signature = (now, config = None))]
    fn new(now: u64, config: Option<FrontendConfig>) -> Frontend {
        let config = config.map_or_else(fe::FrontendConfig::default, |c| fe::FrontendConfig {
            max_startup_len: c.max_startup_len,
            max_encryption_requests: c.max_encryption_requests,
            login_timeout: Duration::from_nanos(c.login_timeout_ns),
        });
        Frontend(fe::Frontend::new(Instant::from_nanos(now), config))
    }

    /// Bytes the client sent. Raises `ClosedError` once the final output was produced.
    fn handle_input(&mut self, now: u64, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let data = bytes_in(data)?;
        self.0
            .handle_input(Instant::from_nanos(now), data)
            .map_err(to_py)
    }

    /// The deadline from `poll_timeout()` has passed.
    fn handle_timeout(&mut self, now: u64) {
        self.0.handle_timeout(Instant::from_nanos(now));
    }

    /// The next output (`FrontendTransmit`, `Startup`, `Cancel` or `FrontendClosed`), or `None`.
    fn poll_output(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let Some(output) = self.0.poll_output() else {
            return Ok(None);
        };
        let object = match output {
            fe::FrontendOutput::Transmit(data) => Py::new(
                py,
                FrontendTransmit {
                    data: data.to_vec(),
                },
            )?
            .into_any(),
            fe::FrontendOutput::Startup(data) => Py::new(
                py,
                Startup {
                    data: data.to_vec(),
                },
            )?
            .into_any(),
            fe::FrontendOutput::Cancel(k) => Py::new(py, Cancel { key: BackendKey(k) })?.into_any(),
            fe::FrontendOutput::Closed(reason) => Py::new(
                py,
                FrontendClosed {
                    reason: reason.to_string(),
                },
            )?
            .into_any(),
        };
        Ok(Some(object))
    }

    /// When to call `handle_timeout` (the end of the login timeout), or `None` once finished.
    fn poll_timeout(&self) -> Option<u64> {
        self.0.poll_timeout().map(Instant::as_nanos)
    }

    /// Whether the final output was produced.
    fn is_finished(&self) -> bool {
        self.0.is_finished()
    }

    /// Bytes held: at most `max_startup_len`.
    fn buffered_len(&self) -> usize {
        self.0.buffered_len()
    }
}

/// How a `Reset` runs: every argument is keyword-only, defaults the core's. `token_param` is
/// the revival-token setting to empty (the dialect's `token_param`), `max_message_len` the
/// longest message the server may send meanwhile, `timeout_ns` how long the reset may take.
#[pyclass(module = "weir._weir", frozen, eq, get_all)]
#[derive(Clone, PartialEq, Eq)]
pub struct ResetConfig {
    token_param: String,
    max_message_len: usize,
    timeout_ns: u64,
}

#[pymethods]
impl ResetConfig {
    #[new]
    #[pyo3(signature = (
        *,
        token_param = reset_defaults().token_param,
        max_message_len = reset_defaults().max_message_len,
        timeout_ns = nanos(reset_defaults().timeout),
    ))]
    fn new(token_param: String, max_message_len: usize, timeout_ns: u64) -> ResetConfig {
        ResetConfig {
            token_param,
            max_message_len,
            timeout_ns,
        }
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "ResetConfig(token_param={}, max_message_len={}, timeout_ns={})",
            str_repr(py, &self.token_param)?,
            self.max_message_len,
            self.timeout_ns
        ))
    }
}

/// Reset output, final: the connection is reset, idle and at a message boundary; keep it.
#[pyclass(module = "weir._weir", frozen, eq, hash)]
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ResetDone;

#[pymethods]
impl ResetDone {
    #[new]
    fn new() -> ResetDone {
        ResetDone
    }

    fn __repr__(&self) -> &'static str {
        "ResetDone()"
    }
}

/// Resets a server connection a session left (`ReleaseOldServer`) so that another session can
/// be moved onto it: `DISCARD ALL`, then the revival-token setting emptied. The queries are the
/// first output; it ends in `ResetDone` or `ResetFailed`.
#[pyclass(module = "weir._weir")]
pub struct Reset(rs::Reset);

#[pymethods]
impl Reset {
    /// Starts resetting a connection at `now`; `config` defaults to `ResetConfig()`.
    #[new]
    #[pyo3(signature = (now, config = None))]
    fn new(now: u64, config: Option<ResetConfig>) -> Reset {
        let config = config.map_or_else(rs::ResetConfig::default, |c| rs::ResetConfig {
            token_param: c.token_param,
            max_message_len: c.max_message_len,
            timeout: Duration::from_nanos(c.timeout_ns),
        });
        Reset(rs::Reset::new(Instant::from_nanos(now), config))
    }

    /// Bytes the server sent. Raises `ClosedError` once the final output was produced.
    fn handle_input(&mut self, now: u64, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let data = bytes_in(data)?;
        self.0
            .handle_input(Instant::from_nanos(now), data)
            .map_err(to_py)
    }

    /// The server closed the connection.
    fn handle_eof(&mut self, now: u64) -> PyResult<()> {
        self.0.handle_eof(Instant::from_nanos(now)).map_err(to_py)
    }

    /// The deadline from `poll_timeout()` has passed.
    fn handle_timeout(&mut self, now: u64) {
        self.0.handle_timeout(Instant::from_nanos(now));
    }

    /// The next output (`ResetTransmit`, `ResetDone` or `ResetFailed`), or `None`.
    fn poll_output(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let Some(output) = self.0.poll_output() else {
            return Ok(None);
        };
        let object = match output {
            rs::ResetOutput::Transmit(data) => Py::new(
                py,
                ResetTransmit {
                    data: data.to_vec(),
                },
            )?
            .into_any(),
            rs::ResetOutput::Done => Py::new(py, ResetDone)?.into_any(),
            rs::ResetOutput::Failed(reason) => Py::new(
                py,
                ResetFailed {
                    reason: reason.to_string(),
                },
            )?
            .into_any(),
        };
        Ok(Some(object))
    }

    /// When to call `handle_timeout`, or `None` once finished.
    fn poll_timeout(&self) -> Option<u64> {
        self.0.poll_timeout().map(Instant::as_nanos)
    }

    /// Whether the final output was produced.
    fn is_finished(&self) -> bool {
        self.0.is_finished()
    }

    /// Bytes held: at most `max_message_len` plus one.
    fn buffered_len(&self) -> usize {
        self.0.buffered_len()
    }
}

/// A protocol 3.0 StartupMessage with `params`, at most `max_len` bytes long. Raises
/// `UsageError` for a NUL byte in a name or value, or a message past `max_len`.
#[pyfunction]
#[pyo3(signature = (params, max_len = frontend_defaults().max_startup_len as usize))]
fn build_startup_message<'py>(
    py: Python<'py>,
    params: Vec<(String, String)>,
    max_len: usize,
) -> PyResult<Bound<'py, PyBytes>> {
    let pairs = params.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    let packet = message::build_startup_message(pairs, max_len)
        .map_err(|e| UsageError::new_err(e.to_string()))?;
    Ok(PyBytes::new(py, &packet))
}

/// A simple Query message for `sql`. Raises `UsageError` for a NUL byte in it.
#[pyfunction]
fn build_query<'py>(py: Python<'py>, sql: &str) -> PyResult<Bound<'py, PyBytes>> {
    let query = message::build_query(sql).map_err(|e| UsageError::new_err(e.to_string()))?;
    Ok(PyBytes::new(py, &query))
}

/// A Terminate message: what a client sends to end its session, and what a proxy sends to a
/// server connection it closes.
#[pyfunction]
fn build_terminate<'py>(py: Python<'py>) -> Bound<'py, PyBytes> {
    PyBytes::new(py, &message::build_terminate())
}

/// A CancelRequest for `key`, to send on a fresh connection to the server that issued it.
#[pyfunction]
fn build_cancel_request<'py>(py: Python<'py>, key: &BackendKey) -> Bound<'py, PyBytes> {
    PyBytes::new(py, &message::build_cancel_request(&key.0))
}

/// A FATAL ErrorResponse with SQLSTATE `code` and `message`: the last thing a proxy says to a
/// client it cannot serve.
#[pyfunction]
fn build_error_response<'py>(py: Python<'py>, code: &str, message: &str) -> Bound<'py, PyBytes> {
    PyBytes::new(py, &fe::build_error_response(code, message))
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Dialect>()?;
    m.add_class::<TransferConfig>()?;
    m.add_class::<BackendKey>()?;
    m.add_class::<CancelKeys>()?;
    m.add_class::<TransferTransmit>()?;
    m.add_class::<DialNewServer>()?;
    m.add_class::<CloseOldServer>()?;
    m.add_class::<ReleaseOldServer>()?;
    m.add_class::<CloseNewServer>()?;
    m.add_class::<TransferClosed>()?;
    m.add_class::<Outcome>()?;
    m.add_class::<CancelRequest>()?;
    m.add_class::<TransferMetrics>()?;
    m.add_class::<Machine>()?;
    m.add_class::<FrontendConfig>()?;
    m.add_class::<FrontendTransmit>()?;
    m.add_class::<Startup>()?;
    m.add_class::<Cancel>()?;
    m.add_class::<FrontendClosed>()?;
    m.add_class::<Frontend>()?;
    m.add_class::<ResetConfig>()?;
    m.add_class::<ResetTransmit>()?;
    m.add_class::<ResetDone>()?;
    m.add_class::<ResetFailed>()?;
    m.add_class::<Reset>()?;
    m.add_function(wrap_pyfunction!(build_startup_message, m)?)?;
    m.add_function(wrap_pyfunction!(build_query, m)?)?;
    m.add_function(wrap_pyfunction!(build_cancel_request, m)?)?;
    m.add_function(wrap_pyfunction!(build_terminate, m)?)?;
    m.add_function(wrap_pyfunction!(build_error_response, m)?)?;
    m.add("POSTGRES_EMULATION_SQL", core::POSTGRES_EMULATION_SQL)?;
    let [error, state, token, key] = core::STATE_COLUMNS;
    m.add("STATE_COLUMNS", (error, state, token, key))?;
    m.add("MAX_TRANSFER_KEY_LEN", core::MAX_TRANSFER_KEY_LEN)?;
    Ok(())
}
