//! One client's task: it owns the client socket, the server sockets and the migration machine.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant as TokioInstant;
use tracing::Instrument;
use weir::time::Instant;
use weir::transfer::frontend::build_error_response;
use weir::transfer::message::{build_cancel_request, BackendKey};
use weir::transfer::{
    CloseReason, Machine, Output, Peer, ServerId, TransferError as MachineError, TransferOutcome,
    TransferResult,
};

use super::frontend::{self, First};
use super::idle::{self, IdleServer};
use super::registry::{Command, Registration, Shared};
use super::{sleep_until, BackendId, MoveError};

/// Bytes read from a socket at a time at most.
const READ_CHUNK: usize = 64 << 10;
/// Move requests waiting for a session task at most.
const COMMAND_QUEUE: usize = 4;
/// Once a session is over, the longest its task tries to deliver the bytes it still holds
/// (a client's Terminate, a server's last ErrorResponse) before it closes the sockets.
const FLUSH_ON_CLOSE: Duration = Duration::from_secs(5);

type Dial = Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send>>;
type Reply = oneshot::Sender<Result<TransferOutcome, MoveError>>;

/// Serve one accepted client until it leaves.
pub(crate) async fn serve(shared: Arc<Shared>, mut client: TcpStream, peer: SocketAddr) {
    let _ = client.set_nodelay(true);
    let startup = match frontend::read_first(&mut client, shared.frontend_config()).await {
        Ok(First::Startup(startup)) => startup,
        Ok(First::Cancel(key)) => return forward_cancel(&shared, &key).await,
        Err(e) if e.kind() == io::ErrorKind::TimedOut => {
            shared.lock().counters.login_timeouts += 1;
            tracing::debug!(%peer, "client closed: {e}");
            return;
        }
        Err(e) => {
            tracing::debug!(%peer, "client left before starting a session: {e}");
            return;
        }
    };
    let Some((backend, server)) = connect_first(&shared).await else {
        shared.lock().counters.refused += 1;
        let reply = build_error_response("08006", "weir: no backend server is reachable");
        let _ = client.write_all(&reply).await;
        return;
    };
    let (commands_tx, commands) = mpsc::channel(COMMAND_QUEUE);
    let registration = shared.register(backend, commands_tx);
    let span = tracing::info_span!("weir.proxy.session", session = registration.id.0, %peer);
    let mut transfer = shared.config.transfer.clone();
    transfer.reuse_old_server = shared.reuses_servers();
    let session = Session {
        machine: Machine::new(transfer, ServerId(0)),
        shared,
        registration,
        epoch: TokioInstant::now(),
        client,
        server,
        server_id: ServerId(0),
        backend,
        new_server: None,
        new_server_id: ServerId(0),
        dial: DialState::Idle,
        moving: None,
        pending_client: None,
        to_client: Outbox::default(),
        to_server: Outbox::default(),
        commands,
        commands_open: true,
        keys: (None, None),
    };
    session.run(startup).instrument(span).await;
}

/// Connect to the least-loaded reachable backend, trying each at most once.
async fn connect_first(shared: &Shared) -> Option<(BackendId, TcpStream)> {
    let mut tried = Vec::new();
    while let Some((id, addr)) = shared.reserve(&tried) {
        match connect(addr, shared.config.connect_timeout).await {
            Ok(server) => return Some((id, server)),
            Err(e) => {
                tracing::warn!(backend = %addr, "backend unreachable: {e}");
                shared.unreserve(id);
                tried.push(id);
            }
        }
    }
    None
}

async fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Send a CancelRequest to the server the session with this client key is on now.
async fn forward_cancel(shared: &Shared, client_key: &BackendKey) {
    let Some((addr, server_key)) = shared.cancel_target(client_key) else {
        tracing::debug!(
            process_id = client_key.process_id,
            "cancel request for no known session"
        );
        return;
    };
    let sent = async {
        let mut server = connect(addr, shared.config.connect_timeout).await?;
        server.write_all(&build_cancel_request(&server_key)).await?;
        server.shutdown().await
    };
    match sent.await {
        Ok(()) => shared.lock().counters.cancels += 1,
        Err(e) => tracing::warn!(backend = %addr, "forwarding a cancel request failed: {e}"),
    }
}

/// A move the caller asked for, across its attempts.
struct Moving {
    to: BackendId,
    attempts: u32,
    reply: Option<Reply>,
    /// When the next attempt starts, after a recoverable failure.
    retry_at: Option<TokioInstant>,
}

/// The connection to a move's target, from the start of an attempt until the machine takes it.
enum DialState {
    Idle,
    /// Connecting; `wanted` once the machine has asked for the new server.
    Dialing {
        connect: Dial,
        wanted: bool,
    },
    /// Connected before the machine asked.
    Ready(TcpStream),
    /// A kept server that is already started, taken when the attempt began.
    Started(IdleServer),
    /// Failed before the machine asked.
    Failed(String),
}

impl DialState {
    fn connecting(&mut self) -> Option<&mut Dial> {
        match self {
            DialState::Dialing { connect, .. } => Some(connect),
            _ => None,
        }
    }
}

/// Bytes waiting for one peer, in order: the first chunk maybe in part (it is advanced).
#[derive(Default)]
struct Outbox {
    chunks: VecDeque<Bytes>,
    len: usize,
    /// The most bytes that waited at once.
    peak: usize,
}

impl Outbox {
    /// Queue `data`; true if the outbox holds more than it ever did.
    fn push(&mut self, data: Bytes) -> bool {
        self.len += data.len();
        self.chunks.push_back(data);
        let grew = self.len > self.peak;
        self.peak = self.peak.max(self.len);
        grew
    }

    fn front(&self) -> &[u8] {
        self.chunks.front().map_or(&[], |c| c.as_ref())
    }

    /// `n` bytes of the first chunk were written.
    fn written(&mut self, n: usize) {
        self.len -= n;
        if let Some(chunk) = self.chunks.front_mut() {
            chunk.advance(n);
            if chunk.is_empty() {
                self.chunks.pop_front();
            }
        }
    }

    async fn flush(&mut self, stream: &mut TcpStream) -> io::Result<()> {
        while let Some(chunk) = self.chunks.pop_front() {
            self.len -= chunk.len();
            stream.write_all(&chunk).await?;
        }
        Ok(())
    }
}

/// What woke the task.
enum Wake {
    Client(io::Result<Bytes>),
    Server(io::Result<Bytes>),
    /// Bytes of the outbox to the client, or to the server, were written.
    WroteClient(io::Result<usize>),
    WroteServer(io::Result<usize>),
    NewServer(io::Result<Bytes>),
    Dialed(io::Result<TcpStream>),
    Deadline,
    Retry,
    Command(Option<Command>),
}

/// Why the session ended.
enum End {
    ClientLeft,
    ServerLeft,
    Io(Peer, io::Error),
    Closed(CloseReason),
}

struct Session {
    shared: Arc<Shared>,
    registration: Registration,
    machine: Machine,
    epoch: TokioInstant,
    client: TcpStream,
    server: TcpStream,
    /// The machine's name for `server`.
    server_id: ServerId,
    backend: BackendId,
    new_server: Option<TcpStream>,
    /// The machine's name for the current attempt's new server: a fresh id per attempt.
    new_server_id: ServerId,
    /// The connection to the move's target, dialled when the move starts so that the server's
    /// fork and the TCP handshake overlap the state query.
    dial: DialState,
    moving: Option<Moving>,
    /// Client bytes the machine could not hold yet (its held-bytes limit during a transfer);
    /// the client is not read until they are taken.
    pending_client: Option<Bytes>,
    /// What waits for the client to read it; the server is not read while it holds
    /// `max_buffered_per_direction`.
    to_client: Outbox,
    /// What waits for the server to read it; the client is not read while it holds
    /// `max_buffered_per_direction`.
    to_server: Outbox,
    commands: mpsc::Receiver<Command>,
    commands_open: bool,
    /// The cancel keys as last published to the registry.
    keys: (Option<BackendKey>, Option<BackendKey>),
}

impl Session {
    async fn run(mut self, startup: Bytes) {
        let end = match self.machine.handle_client_input(self.now(), startup) {
            Ok(()) => self.serve().await,
            Err(e) => End::Io(Peer::Client, io::Error::other(e)),
        };
        // Best effort, bounded: the peers that are still there get what was meant for them.
        let Session {
            client,
            server,
            to_client,
            to_server,
            ..
        } = &mut self;
        let flush = async { tokio::join!(to_server.flush(server), to_client.flush(client)) };
        let _ = tokio::time::timeout(FLUSH_ON_CLOSE, flush).await;
        match &end {
            End::ClientLeft => tracing::debug!("client left"),
            End::ServerLeft => tracing::info!("server closed the connection"),
            End::Io(peer, e) => tracing::info!(?peer, "connection failed: {e}"),
            End::Closed(reason) => tracing::info!("session closed: {reason}"),
        }
        if let End::Closed(CloseReason::TransferFatal(failure)) = &end {
            let message = format!("weir: the session could not be moved and was closed: {failure}");
            let _ = self
                .client
                .write_all(&build_error_response("08006", &message))
                .await;
        }
        if let Some(m) = self.moving.take() {
            if let Some(reply) = m.reply {
                let _ = reply.send(Err(MoveError::SessionClosed));
            }
        }
        let metrics = self.machine.metrics();
        self.registration.update(|e| e.metrics = metrics);
    }

    fn now(&self) -> Instant {
        Instant::from_nanos(self.epoch.elapsed().as_nanos() as u64)
    }

    fn tokio_instant(&self, at: Instant) -> TokioInstant {
        self.epoch + Duration::from_nanos(at.as_nanos())
    }

    async fn serve(&mut self) -> End {
        let mut client_buf = BytesMut::new();
        let mut server_buf = BytesMut::new();
        let mut new_server_buf = BytesMut::new();
        loop {
            if let Err(end) = self.apply_outputs().await {
                return end;
            }
            let deadline = self.machine.poll_timeout().map(|t| self.tokio_instant(t));
            let retry_at = self.moving.as_ref().and_then(|m| m.retry_at);
            let bound = self.shared.config.max_buffered_per_direction;
            let wake = {
                let Session {
                    client,
                    server,
                    new_server,
                    dial,
                    commands,
                    commands_open,
                    pending_client,
                    to_client,
                    to_server,
                    ..
                } = self;
                // A side is read only while what waits for the other side is under the bound.
                let reading_client = pending_client.is_none() && to_server.len < bound;
                let reading_server = to_client.len < bound;
                let (client_out, server_out) = (to_client.front(), to_server.front());
                let (mut client_rx, mut client_tx) = client.split();
                let (mut server_rx, mut server_tx) = server.split();
                tokio::select! {
                    r = read(&mut client_rx, &mut client_buf), if reading_client => Wake::Client(r),
                    r = read(&mut server_rx, &mut server_buf), if reading_server => Wake::Server(r),
                    r = client_tx.write(client_out), if !client_out.is_empty() => Wake::WroteClient(r),
                    r = server_tx.write(server_out), if !server_out.is_empty() => Wake::WroteServer(r),
                    r = async { read(new_server.as_mut().expect("guarded"), &mut new_server_buf).await },
                        if new_server.is_some() => Wake::NewServer(r),
                    r = async { dial.connecting().expect("guarded").await },
                        if matches!(dial, DialState::Dialing { .. }) => Wake::Dialed(r),
                    _ = sleep_until(deadline), if deadline.is_some() => Wake::Deadline,
                    _ = sleep_until(retry_at), if retry_at.is_some() => Wake::Retry,
                    c = commands.recv(), if *commands_open => Wake::Command(c),
                }
            };
            let now = self.now();
            let result = match wake {
                Wake::Client(Ok(data)) if data.is_empty() => return End::ClientLeft,
                Wake::Client(Ok(data)) => self.client_input(now, data),
                Wake::Client(Err(e)) => return End::Io(Peer::Client, e),
                Wake::Server(Ok(data)) if data.is_empty() => return End::ServerLeft,
                Wake::Server(Ok(data)) => {
                    self.machine.handle_server_input(now, self.server_id, data)
                }
                Wake::Server(Err(e)) => return End::Io(Peer::Server(self.server_id), e),
                Wake::WroteClient(Ok(0)) => return End::Io(Peer::Client, write_zero()),
                Wake::WroteClient(Ok(n)) => {
                    self.to_client.written(n);
                    Ok(())
                }
                Wake::WroteClient(Err(e)) => return End::Io(Peer::Client, e),
                Wake::WroteServer(Ok(0)) => {
                    return End::Io(Peer::Server(self.server_id), write_zero())
                }
                Wake::WroteServer(Ok(n)) => {
                    self.to_server.written(n);
                    Ok(())
                }
                Wake::WroteServer(Err(e)) => return End::Io(Peer::Server(self.server_id), e),
                Wake::NewServer(Ok(data)) if data.is_empty() => {
                    self.new_server = None;
                    self.machine.handle_new_server_failed(
                        now,
                        self.new_server_id,
                        "the new server closed the connection",
                    )
                }
                Wake::NewServer(Ok(data)) => {
                    self.machine
                        .handle_server_input(now, self.new_server_id, data)
                }
                Wake::NewServer(Err(e)) => {
                    self.new_server = None;
                    self.machine
                        .handle_new_server_failed(now, self.new_server_id, &e.to_string())
                }
                Wake::Dialed(r) => {
                    let wanted = matches!(self.dial, DialState::Dialing { wanted: true, .. });
                    self.dial = match r {
                        Ok(stream) => DialState::Ready(stream),
                        Err(e) => DialState::Failed(e.to_string()),
                    };
                    if wanted {
                        self.hand_over_dial(now)
                    } else {
                        Ok(())
                    }
                }
                Wake::Deadline => {
                    self.machine.handle_timeout(now);
                    Ok(())
                }
                Wake::Retry => {
                    self.attempt(now);
                    Ok(())
                }
                Wake::Command(Some(Command::Move { to, reply })) => {
                    self.request_move(now, to, reply);
                    Ok(())
                }
                // The registry holds the sender while this task runs; should it ever close,
                // the session goes on without taking commands.
                Wake::Command(None) => {
                    self.commands_open = false;
                    Ok(())
                }
            };
            if let Err(e) = result {
                // Every input is checked before it is given; a refusal here is a bug in this
                // task, so the session ends rather than run on with a confused machine.
                tracing::error!("the migration machine refused an input: {e}");
                return End::Io(Peer::Client, io::Error::other(e));
            }
        }
    }

    fn client_input(&mut self, now: Instant, data: Bytes) -> Result<(), MachineError> {
        match self.machine.handle_client_input(now, data.clone()) {
            Err(MachineError::HeldClientBytesFull { .. }) => {
                self.pending_client = Some(data);
                Ok(())
            }
            other => other,
        }
    }

    /// Carry out what the machine asked for, until it has nothing more.
    async fn apply_outputs(&mut self) -> Result<(), End> {
        loop {
            while let Some(output) = self.machine.poll_output() {
                self.apply(output).await?;
            }
            // A transfer that ended frees room for client bytes the machine refused.
            let Some(data) = self.pending_client.take() else {
                break;
            };
            if let Err(e) = self.client_input(self.now(), data) {
                return Err(End::Io(Peer::Client, io::Error::other(e)));
            }
            if self.pending_client.is_some() {
                break;
            }
        }
        self.publish_keys();
        Ok(())
    }

    async fn apply(&mut self, output: Output) -> Result<(), End> {
        match output {
            Output::Transmit(t) => match t.to {
                Peer::Client => {
                    if self.to_client.push(t.data) {
                        let peak = self.to_client.peak as u64;
                        let mut state = self.shared.lock();
                        state.counters.peak_to_client = state.counters.peak_to_client.max(peak);
                    }
                }
                Peer::Server(id) if id == self.server_id => {
                    if self.to_server.push(t.data) {
                        let peak = self.to_server.peak as u64;
                        let mut state = self.shared.lock();
                        state.counters.peak_to_server = state.counters.peak_to_server.max(peak);
                    }
                }
                Peer::Server(id) => {
                    let written = match self.new_server.as_mut() {
                        Some(s) if id == self.new_server_id => s.write_all(&t.data).await,
                        _ => Err(io::ErrorKind::NotConnected.into()),
                    };
                    if let Err(e) = written {
                        self.new_server = None;
                        let now = self.now();
                        let _ = self
                            .machine
                            .handle_new_server_failed(now, id, &e.to_string());
                    }
                }
            },
            Output::DialNewServer { .. } => {
                let now = self.now();
                match &mut self.dial {
                    DialState::Dialing { wanted, .. } => *wanted = true,
                    DialState::Idle => {
                        self.dial = DialState::Failed("no move was requested".into());
                        let _ = self.hand_over_dial(now);
                    }
                    DialState::Ready(_) | DialState::Started(_) | DialState::Failed(_) => {
                        let _ = self.hand_over_dial(now);
                    }
                }
            }
            Output::CloseOldServer(_) => drop(self.switch_server().await?),
            Output::ReleaseOldServer { key, .. } => {
                let from = self.backend;
                let mut old = self.switch_server().await?;
                let shared = self.shared.clone();
                let params = self.machine.startup_params();
                let timeout = shared.config.connect_timeout;
                let token_param = shared.config.transfer.dialect.token_param.clone();
                tokio::spawn(
                    async move {
                        match idle::reset(&mut old, timeout, &token_param).await {
                            Ok(()) => shared.keep_idle(
                                from,
                                IdleServer {
                                    stream: old,
                                    key,
                                    params,
                                },
                            ),
                            Err(e) => tracing::debug!("a released server was not kept: {e}"),
                        }
                    }
                    .in_current_span(),
                );
            }
            Output::CloseNewServer(_) => {
                self.new_server = None;
                self.dial = DialState::Idle;
            }
            Output::Closed(reason) => return Err(End::Closed(reason)),
            Output::Outcome(outcome) => self.outcome(outcome),
            Output::CancelRequest(key) => {
                let shared = self.shared.clone();
                tokio::spawn(async move { forward_cancel(&shared, &key).await }.in_current_span());
            }
        }
        Ok(())
    }

    /// The new server becomes the session's server, once the old one was given what waited
    /// for it; the old one is returned.
    async fn switch_server(&mut self) -> Result<TcpStream, End> {
        let Some(new) = self.new_server.take() else {
            let peer = Peer::Server(self.new_server_id);
            return Err(End::Io(peer, io::ErrorKind::NotConnected.into()));
        };
        // The old server goes away: a failure to reach it now ends nothing.
        let _ = self.to_server.flush(&mut self.server).await;
        self.to_server = Outbox {
            peak: self.to_server.peak,
            ..Outbox::default()
        };
        let old = std::mem::replace(&mut self.server, new);
        self.server_id = self.new_server_id;
        if let Some(m) = self.moving.as_ref() {
            self.backend = m.to;
            self.registration.moved(m.to);
        }
        Ok(old)
    }

    fn request_move(&mut self, now: Instant, to: Option<BackendId>, reply: Option<Reply>) {
        let refuse = |reply: Option<Reply>, e: MoveError| {
            if let Some(reply) = reply {
                let _ = reply.send(Err(e));
            }
        };
        if self.moving.is_some() || self.machine.is_transferring() {
            return refuse(reply, MoveError::InProgress);
        }
        let to = match to {
            Some(to) if to.0 >= self.shared.config.backends.len() => {
                return refuse(reply, MoveError::UnknownBackend(to));
            }
            Some(to) if to == self.backend => return refuse(reply, MoveError::AlreadyThere(to)),
            Some(to) => to,
            None => {
                let loads = self.shared.lock().loads();
                match super::balance::least_loaded(&loads, &[self.backend]) {
                    Some(to) => to,
                    None => return refuse(reply, MoveError::NoTarget),
                }
            }
        };
        self.moving = Some(Moving {
            to,
            attempts: 0,
            reply,
            retry_at: None,
        });
        self.registration.update(|e| e.moving = true);
        self.attempt(now);
    }

    /// Start the next attempt of the requested move.
    fn attempt(&mut self, now: Instant) {
        let key = self.shared.transfer_key();
        let Some(m) = self.moving.as_mut() else {
            return;
        };
        m.retry_at = None;
        m.attempts += 1;
        let to = m.to;
        let new_server_id = ServerId(self.new_server_id.0.max(self.server_id.0) + 1);
        match self.machine.request_transfer(now, &key, new_server_id) {
            Ok(()) => {
                self.new_server_id = new_server_id;
                let started = self.shared.take_idle(to, &self.machine.startup_params());
                self.dial = match started {
                    Some(server) => DialState::Started(server),
                    None => DialState::Dialing {
                        connect: Box::pin(connect(
                            self.shared.addr(to),
                            self.shared.config.connect_timeout,
                        )),
                        wanted: false,
                    },
                };
            }
            Err(e) => self.finish_move(Err(MoveError::Refused(e))),
        }
    }

    /// Give the machine the connection it asked for, or the reason there is none.
    fn hand_over_dial(&mut self, now: Instant) -> Result<(), MachineError> {
        match std::mem::replace(&mut self.dial, DialState::Idle) {
            DialState::Ready(stream) => {
                self.new_server = Some(stream);
                self.machine
                    .handle_new_server_connected(now, self.new_server_id)
            }
            DialState::Started(server) => {
                self.new_server = Some(server.stream);
                self.machine
                    .handle_new_server_started(now, self.new_server_id, server.key)
            }
            DialState::Failed(reason) => {
                self.machine
                    .handle_new_server_failed(now, self.new_server_id, &reason)
            }
            other => {
                self.dial = other;
                Ok(())
            }
        }
    }

    fn outcome(&mut self, outcome: TransferOutcome) {
        // A connection dialled for this attempt and not taken is not needed any more; a kept
        // one the machine never used is still clean, so it goes back.
        if let DialState::Started(server) = std::mem::replace(&mut self.dial, DialState::Idle) {
            if let Some(m) = self.moving.as_ref() {
                self.shared.keep_idle(m.to, server);
            }
        }
        let from = self.shared.addr(self.backend);
        let to = self.moving.as_ref().map(|m| self.shared.addr(m.to));
        let attempt = self.moving.as_ref().map_or(0, |m| m.attempts);
        let latency_ms = outcome.latency.as_secs_f64() * 1e3;
        let held_ms = outcome.suspended.as_secs_f64() * 1e3;
        match &outcome.result {
            TransferResult::Success => {
                tracing::info!(key = %outcome.key, attempt, latency_ms, held_ms, ?to, "session moved")
            }
            TransferResult::Recoverable(f) => tracing::warn!(
                key = %outcome.key, attempt, latency_ms, %from, ?to,
                "transfer failed, the session stays: {f}"
            ),
            TransferResult::Fatal(f) => tracing::error!(
                key = %outcome.key, attempt, latency_ms, %from, ?to,
                "transfer failed, the session is closed: {f}"
            ),
        }
        let metrics = self.machine.metrics();
        self.registration.update(|e| e.metrics = metrics);
        let retry = matches!(outcome.result, TransferResult::Recoverable(_))
            && attempt < self.shared.config.max_transfer_attempts;
        match self.moving.as_mut() {
            Some(m) if retry => {
                let backoff = self.shared.config.retry_backoff * attempt;
                m.retry_at = Some(TokioInstant::now() + backoff);
                self.shared.lock().counters.retries += 1;
            }
            _ => self.finish_move(Ok(outcome)),
        }
    }

    fn finish_move(&mut self, result: Result<TransferOutcome, MoveError>) {
        if let Some(m) = self.moving.take() {
            if let Some(reply) = m.reply {
                let _ = reply.send(result);
            }
        }
        self.registration.update(|e| e.moving = false);
    }

    /// Tell the registry about new cancel keys, so CancelRequests find this session.
    fn publish_keys(&mut self) {
        let keys = self.machine.cancel_keys();
        if keys.client == self.keys.0 && keys.server == self.keys.1 {
            return;
        }
        self.keys = (keys.client, keys.server);
        let (client_key, server_key) = self.keys.clone();
        self.registration.update(|e| {
            e.client_key = client_key;
            e.server_key = server_key;
        });
    }
}

fn write_zero() -> io::Error {
    io::ErrorKind::WriteZero.into()
}

async fn read(stream: &mut (impl AsyncRead + Unpin), buf: &mut BytesMut) -> io::Result<Bytes> {
    buf.reserve(READ_CHUNK);
    let n = stream.read_buf(buf).await?;
    Ok(buf.split_to(n).freeze())
}
