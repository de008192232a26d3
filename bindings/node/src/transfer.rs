//! `transfer`: the machine that moves a live PostgreSQL-wire session to another server.
//!
//! ```js
//! const { transfer } = require('weir')
//! const machine = new transfer.Machine(0n)                 // the session is on server 0
//! machine.handleClientInput(0n, Buffer.from('\0\0\0\x14\0\x03\0\0user\0alice\0\0', 'latin1')) // StartupMessage
//! console.log(machine.pollOutput())                        // { type: 'transmit', to: 0n, source: 'client', data }
//! ```

use std::time::Duration;

use napi::bindgen_prelude::{BigInt, Either};
use napi_derive::napi;
use weir::time::Instant;
use weir::transfer as core;

use crate::buffer::Buffer;
use crate::errors::{refused, to_u64, to_usize, usage, Result};

fn instant(now: &BigInt) -> Result<Instant> {
    to_u64("now", now).map(Instant::from_nanos)
}

fn server_id(server: &BigInt) -> Result<core::ServerId> {
    to_u64("server", server).map(core::ServerId)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A `Machine`'s settings; each field left out keeps its default.
#[napi(object, namespace = "transfer")]
pub struct Config {
    /// The SQL the transfer speaks: `'cockroachdb'` (the default) or `'postgres'` (stock
    /// PostgreSQL with the emulation of `postgres_emulation.sql` installed).
    #[napi(ts_type = "'cockroachdb' | 'postgres'")]
    pub dialect: Option<String>,
    /// The longest a transfer may take, nanoseconds (default 15 s).
    pub transfer_timeout_ns: Option<BigInt>,
    /// Client bytes held while a transfer runs (default 1 MiB).
    pub max_held_client_bytes: Option<f64>,
    /// Server bytes held while a transfer runs (default 64 KiB).
    pub max_held_server_bytes: Option<f64>,
    /// The largest state-query response accepted (default 16 MiB).
    pub max_transfer_response_len: Option<u32>,
    /// The largest message the machine parses whole (default 4 KiB).
    pub max_small_message_len: Option<u32>,
    /// Hand the old server back for reuse (`releaseOldServer`) instead of closing it.
    pub reuse_old_server: Option<bool>,
}

impl Config {
    fn to_core(&self) -> Result<core::Config> {
        let mut c = match self.dialect.as_deref() {
            None | Some("cockroachdb") => core::Config::default(),
            Some("postgres") => core::Config::with_dialect(core::Dialect::postgres()),
            Some(other) => {
                return Err(usage(format!(
                    "dialect must be 'cockroachdb' or 'postgres', not {other:?}"
                )))
            }
        };
        if let Some(n) = &self.transfer_timeout_ns {
            c.transfer_timeout = Duration::from_nanos(to_u64("transferTimeoutNs", n)?);
        }
        if let Some(n) = self.max_held_client_bytes {
            c.max_held_client_bytes = to_usize("maxHeldClientBytes", n)?;
        }
        if let Some(n) = self.max_held_server_bytes {
            c.max_held_server_bytes = to_usize("maxHeldServerBytes", n)?;
        }
        if let Some(n) = self.max_transfer_response_len {
            c.max_transfer_response_len = n;
        }
        if let Some(n) = self.max_small_message_len {
            c.max_small_message_len = n;
        }
        if let Some(reuse) = self.reuse_old_server {
            c.reuse_old_server = reuse;
        }
        Ok(c)
    }
}

/// A backend's cancel key: its process id and secret.
#[napi(object, namespace = "transfer")]
pub struct BackendKey {
    pub process_id: u32,
    pub secret: Buffer,
}

impl BackendKey {
    fn from_core(key: core::message::BackendKey) -> BackendKey {
        BackendKey {
            process_id: key.process_id,
            secret: key.secret.into(),
        }
    }

    fn to_core(&self) -> core::message::BackendKey {
        core::message::BackendKey {
            process_id: self.process_id,
            secret: self.secret.to_vec(),
        }
    }
}

/// How a transfer ended.
#[napi(
    object,
    namespace = "transfer",
    object_from_js = false,
    use_nullable = true
)]
pub struct Outcome {
    /// The key the transfer was requested with.
    pub key: String,
    /// `'success'`; `'recoverable'` (the session stays where it was); `'fatal'` (the session
    /// is closed).
    #[napi(ts_type = "'success' | 'recoverable' | 'fatal'")]
    pub result: String,
    /// Why it failed, for the other two results.
    pub failure: Option<String>,
    /// From the request to the end, nanoseconds.
    pub latency_ns: u64,
    /// How long the client's bytes were held, nanoseconds.
    pub suspended_ns: u64,
}

/// One thing the machine hands back, told apart by `type`. Servers are named by the `bigint`
/// ids the caller picked.
#[napi(
    namespace = "transfer",
    use_nullable = true,
    discriminant = "type",
    discriminant_case = "camelCase",
    object_from_js = false
)]
pub enum Output {
    /// Write `data` to `to`, the client or a server, in order. `source` says where the bytes
    /// came from.
    Transmit {
        #[napi(ts_type = "'client' | bigint")]
        to: Either<&'static str, u64>,
        #[napi(ts_type = "'client' | 'server' | 'machine'")]
        source: String,
        data: Buffer,
    },
    /// Connect to a new server and call `handleNewServerConnected` (or offer a started one).
    DialNewServer {
        server: u64,
        /// The startup parameters to send, as `[name, value]` pairs.
        #[napi(ts_type = "Array<[string, string]>")]
        params: Vec<Vec<String>>,
    },
    /// Close that server connection: the session is on the new one.
    CloseOldServer { server: u64 },
    /// Like `closeOldServer`, but the connection may be reset and kept for a later transfer.
    ReleaseOldServer {
        server: u64,
        key: Option<BackendKey>,
    },
    /// Close that connection: the session stays where it was.
    CloseNewServer { server: u64 },
    /// The session is over: close every connection. The last output.
    Closed { reason: String },
    /// A transfer ended.
    Outcome { outcome: Outcome },
    /// Send a CancelRequest with this key to the server the session is on.
    CancelRequest { key: BackendKey },
}

/// The transfer machine's counters, a snapshot.
#[napi(object, namespace = "transfer", object_from_js = false)]
pub struct Metrics {
    pub attempted: u64,
    pub success: u64,
    pub error_fatal: u64,
    pub error_recoverable: u64,
    pub client_bytes: u64,
    pub server_bytes: u64,
    pub discarded_old_server_bytes: u64,
}

/// The cancel keys of a session: the one the client knows and the one of the server it is on.
#[napi(
    object,
    namespace = "transfer",
    object_from_js = false,
    use_nullable = true
)]
pub struct CancelKeys {
    pub client: Option<BackendKey>,
    pub server: Option<BackendKey>,
}

/// One client session and the server it is on, relayed byte for byte, movable to another
/// server with `requestTransfer`. Sans-IO: feed each peer's bytes in, drain `pollOutput()`
/// after every call, and call `handleTimeout(now)` at `pollTimeout()`.
#[napi(namespace = "transfer")]
pub struct Machine(core::Machine);

#[napi(namespace = "transfer")]
impl Machine {
    /// A machine for a session on `server` (an id the caller picks), with `config`.
    #[napi(constructor)]
    pub fn new(server: BigInt, config: Option<Config>) -> Result<Machine> {
        let config = match config {
            Some(config) => config.to_core()?,
            None => core::Config::default(),
        };
        Ok(Machine(core::Machine::new(config, server_id(&server)?)))
    }

    /// Bytes from the client (copied once).
    #[napi]
    pub fn handle_client_input(&mut self, now: BigInt, data: &[u8]) -> Result<()> {
        self.0
            .handle_client_input(instant(&now)?, bytes::Bytes::copy_from_slice(data))
            .map_err(refused)
    }

    /// Bytes from `server` (copied once).
    #[napi]
    pub fn handle_server_input(&mut self, now: BigInt, server: BigInt, data: &[u8]) -> Result<()> {
        self.0
            .handle_server_input(
                instant(&now)?,
                server_id(&server)?,
                bytes::Bytes::copy_from_slice(data),
            )
            .map_err(refused)
    }

    /// Moves the session to server `to` (an id the caller picks for the new connection), with
    /// the transfer `key`.
    #[napi]
    pub fn request_transfer(&mut self, now: BigInt, key: String, to: BigInt) -> Result<()> {
        self.0
            .request_transfer(instant(&now)?, &key, server_id(&to)?)
            .map_err(refused)
    }

    /// The connection to the new server is open.
    #[napi]
    pub fn handle_new_server_connected(&mut self, now: BigInt, server: BigInt) -> Result<()> {
        self.0
            .handle_new_server_connected(instant(&now)?, server_id(&server)?)
            .map_err(refused)
    }

    /// Offers a connection that is already started, idle and reset, with its cancel key.
    #[napi]
    pub fn handle_new_server_started(
        &mut self,
        now: BigInt,
        server: BigInt,
        key: Option<BackendKey>,
    ) -> Result<()> {
        self.0
            .handle_new_server_started(
                instant(&now)?,
                server_id(&server)?,
                key.as_ref().map(BackendKey::to_core),
            )
            .map_err(refused)
    }

    /// The new server could not be reached: the transfer fails, recoverably.
    #[napi]
    pub fn handle_new_server_failed(
        &mut self,
        now: BigInt,
        server: BigInt,
        reason: String,
    ) -> Result<()> {
        self.0
            .handle_new_server_failed(instant(&now)?, server_id(&server)?, &reason)
            .map_err(refused)
    }

    /// The deadline from `pollTimeout()` has passed.
    #[napi]
    pub fn handle_timeout(&mut self, now: BigInt) -> Result<()> {
        self.0.handle_timeout(instant(&now)?);
        Ok(())
    }

    /// The next output, or `null`.
    #[napi]
    pub fn poll_output(&mut self) -> Option<Output> {
        Some(match self.0.poll_output()? {
            core::Output::Transmit(t) => Output::Transmit {
                to: match t.to {
                    core::Peer::Client => Either::A("client"),
                    core::Peer::Server(id) => Either::B(id.0),
                },
                source: match t.source {
                    core::Source::Client => "client",
                    core::Source::Server => "server",
                    core::Source::Machine => "machine",
                }
                .to_owned(),
                data: t.data.into(),
            },
            core::Output::DialNewServer { server, params } => Output::DialNewServer {
                server: server.0,
                params: params.into_iter().map(|(k, v)| vec![k, v]).collect(),
            },
            core::Output::CloseOldServer(server) => Output::CloseOldServer { server: server.0 },
            core::Output::ReleaseOldServer { server, key } => Output::ReleaseOldServer {
                server: server.0,
                key: key.map(BackendKey::from_core),
            },
            core::Output::CloseNewServer(server) => Output::CloseNewServer { server: server.0 },
            core::Output::Closed(reason) => Output::Closed {
                reason: reason.to_string(),
            },
            core::Output::Outcome(outcome) => {
                let (result, failure) = match outcome.result {
                    core::TransferResult::Success => ("success", None),
                    core::TransferResult::Recoverable(f) => ("recoverable", Some(f.to_string())),
                    core::TransferResult::Fatal(f) => ("fatal", Some(f.to_string())),
                };
                Output::Outcome {
                    outcome: Outcome {
                        key: outcome.key,
                        result: result.to_owned(),
                        failure,
                        latency_ns: nanos(outcome.latency),
                        suspended_ns: nanos(outcome.suspended),
                    },
                }
            }
            core::Output::CancelRequest(key) => Output::CancelRequest {
                key: BackendKey::from_core(key),
            },
        })
    }

    /// When to call `handleTimeout`, in nanoseconds, or `null` for no timer.
    #[napi]
    pub fn poll_timeout(&self) -> Option<u64> {
        self.0.poll_timeout().map(Instant::as_nanos)
    }

    /// The session's cancel keys.
    #[napi]
    pub fn cancel_keys(&self) -> CancelKeys {
        let keys = self.0.cancel_keys();
        CancelKeys {
            client: keys.client.map(BackendKey::from_core),
            server: keys.server.map(BackendKey::from_core),
        }
    }

    /// The client's startup parameters, as `[name, value]` pairs.
    #[napi(ts_return_type = "Array<[string, string]>")]
    pub fn startup_params(&self) -> Vec<Vec<String>> {
        self.0
            .startup_params()
            .into_iter()
            .map(|(k, v)| vec![k, v])
            .collect()
    }

    /// Bytes the machine holds (client bytes held during a transfer, parts of messages).
    #[napi]
    pub fn buffered_len(&self) -> u32 {
        u32::try_from(self.0.buffered_len()).unwrap_or(u32::MAX)
    }

    /// The server the session is on.
    #[napi]
    pub fn server(&self) -> u64 {
        self.0.server().0
    }

    /// Whether both streams are at a message boundary with nothing outstanding and idle.
    #[napi]
    pub fn at_safe_point(&self) -> bool {
        self.0.at_safe_point()
    }

    /// Whether a transfer is running.
    #[napi]
    pub fn is_transferring(&self) -> bool {
        self.0.is_transferring()
    }

    /// Whether the session is over.
    #[napi]
    pub fn is_closed(&self) -> bool {
        self.0.is_closed()
    }

    /// The counters, a snapshot.
    #[napi]
    pub fn metrics(&self) -> Metrics {
        let m = self.0.metrics();
        Metrics {
            attempted: m.attempted,
            success: m.success,
            error_fatal: m.error_fatal,
            error_recoverable: m.error_recoverable,
            client_bytes: m.client_bytes,
            server_bytes: m.server_bytes,
            discarded_old_server_bytes: m.discarded_old_server_bytes,
        }
    }
}

/// How a `Frontend` reads the first packet; each field left out keeps its default.
#[napi(object, namespace = "transfer")]
pub struct FrontendConfig {
    /// The longest startup packet accepted, length field included (default 10000).
    pub max_startup_len: Option<u32>,
    /// Encryption requests answered `N` before the client is refused (default 2).
    pub max_encryption_requests: Option<u32>,
    /// How long the client has to send its StartupMessage or CancelRequest, nanoseconds
    /// (default 60 s).
    pub login_timeout_ns: Option<BigInt>,
}

impl FrontendConfig {
    fn to_core(&self) -> Result<core::frontend::FrontendConfig> {
        let mut c = core::frontend::FrontendConfig::default();
        if let Some(n) = self.max_startup_len {
            c.max_startup_len = n;
        }
        if let Some(n) = self.max_encryption_requests {
            c.max_encryption_requests = n as usize;
        }
        if let Some(n) = &self.login_timeout_ns {
            c.login_timeout = Duration::from_nanos(to_u64("loginTimeoutNs", n)?);
        }
        Ok(c)
    }
}

/// What a `Frontend` asks of its caller, told apart by `type`.
#[napi(
    namespace = "transfer",
    discriminant = "type",
    discriminant_case = "camelCase",
    object_from_js = false
)]
pub enum FrontendOutput {
    /// Write these bytes to the client (`N`, the answer to an encryption request).
    Transmit { data: Buffer },
    /// Final: the client's StartupMessage, whole, and any bytes after it: give them to
    /// `Machine.handleClientInput`.
    Startup { data: Buffer },
    /// Final: the connection carried a CancelRequest for the backend with this key.
    Cancel { key: BackendKey },
    /// Final: the client broke the startup protocol; close the connection.
    Closed { reason: String },
}

/// Reads a new client's first packet, answering encryption requests with `N`, and hands on its
/// StartupMessage or CancelRequest. Sans-IO, like `Machine`.
#[napi(namespace = "transfer")]
pub struct Frontend(core::frontend::Frontend);

#[napi(namespace = "transfer")]
impl Frontend {
    /// A frontend started at `now`, with `config`.
    #[napi(constructor)]
    pub fn new(now: BigInt, config: Option<FrontendConfig>) -> Result<Frontend> {
        let config = match config {
            Some(config) => config.to_core()?,
            None => core::frontend::FrontendConfig::default(),
        };
        Ok(Frontend(core::frontend::Frontend::new(
            instant(&now)?,
            config,
        )))
    }

    /// Bytes from the client (copied once).
    #[napi]
    pub fn handle_input(&mut self, now: BigInt, data: &[u8]) -> Result<()> {
        self.0
            .handle_input(instant(&now)?, bytes::Bytes::copy_from_slice(data))
            .map_err(refused)
    }

    /// The deadline from `pollTimeout()` has passed.
    #[napi]
    pub fn handle_timeout(&mut self, now: BigInt) -> Result<()> {
        self.0.handle_timeout(instant(&now)?);
        Ok(())
    }

    /// The next output, or `null`.
    #[napi]
    pub fn poll_output(&mut self) -> Option<FrontendOutput> {
        Some(match self.0.poll_output()? {
            core::frontend::FrontendOutput::Transmit(data) => {
                FrontendOutput::Transmit { data: data.into() }
            }
            core::frontend::FrontendOutput::Startup(data) => {
                FrontendOutput::Startup { data: data.into() }
            }
            core::frontend::FrontendOutput::Cancel(key) => FrontendOutput::Cancel {
                key: BackendKey::from_core(key),
            },
            core::frontend::FrontendOutput::Closed(reason) => FrontendOutput::Closed {
                reason: reason.to_string(),
            },
        })
    }

    /// When to call `handleTimeout`, in nanoseconds, or `null` for no timer.
    #[napi]
    pub fn poll_timeout(&self) -> Option<u64> {
        self.0.poll_timeout().map(Instant::as_nanos)
    }

    /// Whether the final output has been produced.
    #[napi]
    pub fn is_finished(&self) -> bool {
        self.0.is_finished()
    }

    /// Bytes held until the startup packet is whole.
    #[napi]
    pub fn buffered_len(&self) -> u32 {
        u32::try_from(self.0.buffered_len()).unwrap_or(u32::MAX)
    }
}

/// How a `Reset` runs; each field left out keeps its default.
#[napi(object, namespace = "transfer")]
pub struct ResetConfig {
    /// The revival-token setting to empty (default the CockroachDB dialect's).
    pub token_param: Option<String>,
    /// The longest message the server may send during the reset (default 64 KiB).
    pub max_message_len: Option<f64>,
    /// The reset fails if it has not finished this long after it started, nanoseconds
    /// (default 5 s).
    pub timeout_ns: Option<BigInt>,
}

impl ResetConfig {
    fn to_core(&self) -> Result<core::reset::ResetConfig> {
        let mut c = core::reset::ResetConfig::default();
        if let Some(param) = &self.token_param {
            c.token_param.clone_from(param);
        }
        if let Some(n) = self.max_message_len {
            c.max_message_len = to_usize("maxMessageLen", n)?;
        }
        if let Some(n) = &self.timeout_ns {
            c.timeout = Duration::from_nanos(to_u64("timeoutNs", n)?);
        }
        Ok(c)
    }
}

/// What a `Reset` asks of its caller, told apart by `type`.
#[napi(
    namespace = "transfer",
    discriminant = "type",
    discriminant_case = "camelCase",
    object_from_js = false
)]
pub enum ResetOutput {
    /// Write these bytes to the server.
    Transmit { data: Buffer },
    /// Final: the connection is reset, idle and at a message boundary; it may be kept.
    Done,
    /// Final: the reset failed; close the connection.
    Failed { reason: String },
}

/// Resets a server connection a session left, so that a later transfer can reuse it. Sans-IO,
/// like `Machine`.
#[napi(namespace = "transfer")]
pub struct Reset(core::reset::Reset);

#[napi(namespace = "transfer")]
impl Reset {
    /// A reset started at `now` (its query is the first output), with `config`.
    #[napi(constructor)]
    pub fn new(now: BigInt, config: Option<ResetConfig>) -> Result<Reset> {
        let config = match config {
            Some(config) => config.to_core()?,
            None => core::reset::ResetConfig::default(),
        };
        Ok(Reset(core::reset::Reset::new(instant(&now)?, config)))
    }

    /// Bytes from the server (copied once).
    #[napi]
    pub fn handle_input(&mut self, now: BigInt, data: &[u8]) -> Result<()> {
        self.0
            .handle_input(instant(&now)?, bytes::Bytes::copy_from_slice(data))
            .map_err(refused)
    }

    /// The server closed the connection.
    #[napi]
    pub fn handle_eof(&mut self, now: BigInt) -> Result<()> {
        self.0.handle_eof(instant(&now)?).map_err(refused)
    }

    /// The deadline from `pollTimeout()` has passed.
    #[napi]
    pub fn handle_timeout(&mut self, now: BigInt) -> Result<()> {
        self.0.handle_timeout(instant(&now)?);
        Ok(())
    }

    /// The next output, or `null`.
    #[napi]
    pub fn poll_output(&mut self) -> Option<ResetOutput> {
        Some(match self.0.poll_output()? {
            core::reset::ResetOutput::Transmit(data) => ResetOutput::Transmit { data: data.into() },
            core::reset::ResetOutput::Done => ResetOutput::Done,
            core::reset::ResetOutput::Failed(reason) => ResetOutput::Failed {
                reason: reason.to_string(),
            },
        })
    }

    /// When to call `handleTimeout`, in nanoseconds, or `null` for no timer.
    #[napi]
    pub fn poll_timeout(&self) -> Option<u64> {
        self.0.poll_timeout().map(Instant::as_nanos)
    }

    /// Whether the final output has been produced.
    #[napi]
    pub fn is_finished(&self) -> bool {
        self.0.is_finished()
    }

    /// Bytes held until a server message is whole.
    #[napi]
    pub fn buffered_len(&self) -> u32 {
        u32::try_from(self.0.buffered_len()).unwrap_or(u32::MAX)
    }
}

/// A StartupMessage (protocol 3.0) with `params` as `[name, value]` pairs; `WEIR_USAGE` when it
/// would pass `maxLen` bytes (default 10000) or a name or value holds a NUL.
#[napi(
    namespace = "transfer",
    ts_args_type = "params: Array<[string, string]>, maxLen?: number"
)]
pub fn build_startup_message(params: Vec<Vec<String>>, max_len: Option<f64>) -> Result<Buffer> {
    let mut pairs = Vec::with_capacity(params.len());
    for pair in &params {
        match pair.as_slice() {
            [name, value] => pairs.push((name.as_str(), value.as_str())),
            _ => return Err(usage("each parameter is a [name, value] pair")),
        }
    }
    let max_len = match max_len {
        Some(n) => to_usize("maxLen", n)?,
        None => 10_000,
    };
    core::message::build_startup_message(pairs, max_len)
        .map(Buffer::from)
        .map_err(|e| usage(e.to_string()))
}

/// A simple-protocol Query message; `WEIR_USAGE` for SQL holding a NUL.
#[napi(namespace = "transfer")]
pub fn build_query(sql: String) -> Result<Buffer> {
    core::message::build_query(&sql)
        .map(Buffer::from)
        .map_err(|e| usage(e.to_string()))
}

/// A CancelRequest for the backend with `key`.
#[napi(namespace = "transfer")]
pub fn build_cancel_request(key: BackendKey) -> Buffer {
    core::message::build_cancel_request(&key.to_core()).into()
}

/// An ErrorResponse with SQLSTATE `code` and `message`, as a server sends it.
#[napi(namespace = "transfer")]
pub fn build_error_response(code: String, message: String) -> Buffer {
    core::frontend::build_error_response(&code, &message).into()
}
