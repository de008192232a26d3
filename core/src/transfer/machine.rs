//! The migration machine: relaying one client session and moving it between servers. The
//! [`Machine`] owns all of the session's state; a running transfer's own state is a
//! [`Transfer`], which it asks what to do.

use alloc::collections::VecDeque;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use bytes::Bytes;

use super::config::Config;
use super::error::{CloseReason, Failure, TransferError};
use super::frame::{Frame, Framer, Side};
use super::message::{
    build_terminate, parse_ready_for_query, BackendKey, StartupPacket, TransactionStatus,
};
use super::metrics::Metrics;
use super::migration::{Context, Failed, OldServerBytes, Progress, Transfer};
use super::new_server::{NewServer, Read};
use super::output::{CancelKeys, Output, Outputs, Peer, ServerId, Source};
use super::prepared::{Prepared, MAX_CLOSE_LEN, MAX_DEALLOCATE_QUERY_LEN, MAX_TAG_LEN};
use super::safepoint::SafePoint;
use crate::time::{Instant, Monotonic};

/// The longest transfer key accepted.
pub const MAX_TRANSFER_KEY_LEN: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before the first ReadyForQuery.
    Startup,
    /// Relaying a started session.
    Ready,
    /// The client was closed.
    Closed,
}

/// Sits between one client and its server, relays both directions and moves the session to a
/// new server on request. See the [module docs](super) for the protocol and an example.
///
/// Inputs are the `handle_*` methods and [`Machine::request_transfer`]; outputs are drained with
/// [`Machine::poll_output`] until `None`, in the order they were produced, and the next
/// deadline is [`Machine::poll_timeout`].
#[derive(Debug)]
pub struct Machine {
    config: Config,
    phase: Phase,
    /// The server the session is on.
    server_id: ServerId,
    client: Framer,
    server: Framer,
    session: SafePoint,
    startup_params: Vec<(String, String)>,
    client_key: Option<BackendKey>,
    server_key: Option<BackendKey>,
    /// The client's named prepared statements, for the new server of a move.
    prepared: Prepared,
    transfer: Option<Transfer>,
    /// Held bytes released by the end of a transfer, relayed before the current call returns.
    replay_client: VecDeque<Bytes>,
    replay_server: VecDeque<Bytes>,
    outputs: Outputs,
    clock: Monotonic,
}

impl Machine {
    /// A machine for a client that has just connected to its first server, which the caller
    /// names `server`: the next client bytes are its startup packets.
    pub fn new(config: Config, server: ServerId) -> Machine {
        let prepared = Prepared::new(
            config.dialect.replay_prepared_statements,
            config.max_prepared_statement_bytes,
        );
        Machine {
            server_id: server,
            client: Framer::new(Side::Frontend, config.framer),
            server: Framer::new(Side::Backend, config.framer),
            config,
            phase: Phase::Startup,
            session: SafePoint::default(),
            startup_params: Vec::new(),
            client_key: None,
            server_key: None,
            prepared,
            transfer: None,
            replay_client: VecDeque::new(),
            replay_server: VecDeque::new(),
            outputs: Outputs::default(),
            clock: Monotonic::default(),
        }
    }

    /// Bytes the client sent. While a transfer runs they are held (up to
    /// `Config::max_held_client_bytes`, else [`TransferError::HeldClientBytesFull`] and nothing is
    /// taken) and later relayed, once, to whichever server the session ends on.
    pub fn handle_client_input(&mut self, now: Instant, data: Bytes) -> Result<(), TransferError> {
        self.ensure_open()?;
        if let Some(t) = self.transfer.as_mut() {
            if !t.waits_for_safe_point() {
                t.hold_client(data, self.config.max_held_client_bytes)?;
                self.clock.observe(now);
                return Ok(());
            }
        }
        let now = self.clock.observe(now);
        self.client_bytes(now, data);
        self.drain(now);
        Ok(())
    }

    /// Bytes that `server` sent: the server the session is on, or the new server of a running
    /// transfer once it was reported connected (or started). Any other id is
    /// [`TransferError::UnknownServer`].
    pub fn handle_server_input(
        &mut self,
        now: Instant,
        server: ServerId,
        data: Bytes,
    ) -> Result<(), TransferError> {
        self.ensure_open()?;
        if server != self.server_id {
            return self.handle_new_server_input(now, server, data);
        }
        let now = self.clock.observe(now);
        self.server_bytes(now, data);
        self.drain(now);
        Ok(())
    }

    /// Move the session to a new server, which the caller names `to` (an id other than the
    /// current server's), identified in the state query by `key` (which the caller makes
    /// unpredictable). The transfer starts at the next safe point, which may be now, and ends
    /// in an [`Output::Outcome`] within `Config::transfer_timeout`.
    pub fn request_transfer(
        &mut self,
        now: Instant,
        key: &str,
        to: ServerId,
    ) -> Result<(), TransferError> {
        self.ensure_open()?;
        if self.transfer.is_some() {
            return Err(TransferError::TransferInProgress);
        }
        if to == self.server_id {
            return Err(TransferError::UnknownServer(to));
        }
        let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
        if key.is_empty() || key.len() > MAX_TRANSFER_KEY_LEN || !key.chars().all(valid) {
            return Err(TransferError::InvalidTransferKey {
                max: MAX_TRANSFER_KEY_LEN,
            });
        }
        let now = self.clock.observe(now);
        self.outputs.metrics_mut().attempted += 1;
        self.transfer = Some(Transfer::new(
            key.into(),
            to,
            now,
            now + self.config.transfer_timeout,
        ));
        if self.at_safe_point() {
            self.begin_transfer(now);
        }
        self.drain(now);
        Ok(())
    }

    /// The adapter connected to `server`, the new server asked for by
    /// [`Output::DialNewServer`]. The machine writes the StartupMessage.
    pub fn handle_new_server_connected(
        &mut self,
        now: Instant,
        server: ServerId,
    ) -> Result<(), TransferError> {
        self.ensure_open()?;
        let new_server = new_server_named(&mut self.transfer, server)?;
        let startup = new_server.connect(&self.startup_params, &self.config)?;
        let now = self.clock.observe(now);
        self.send_to_new_server(now, server, startup);
        self.drain(now);
        Ok(())
    }

    /// Instead of dialling, the adapter offers as `server` a connection that is already started, idle and
    /// reset (a server another session left, see [`Output::ReleaseOldServer`]), for the same
    /// user, database and startup parameters as this session, with `key` the BackendKeyData it
    /// sent when it started. The machine skips the startup and writes
    /// [`super::Dialect::started_server_query`], which carries the token. The connection must
    /// be at a message boundary: every byte the server sent so far was read and discarded.
    pub fn handle_new_server_started(
        &mut self,
        now: Instant,
        server: ServerId,
        key: Option<BackendKey>,
    ) -> Result<(), TransferError> {
        self.ensure_open()?;
        let new_server = new_server_named(&mut self.transfer, server)?;
        let query = new_server.start(key, &self.config.dialect)?;
        let now = self.clock.observe(now);
        self.send_to_new_server(now, server, query);
        self.drain(now);
        Ok(())
    }

    /// The new server `server` could not be reached, or its connection broke: the session
    /// stays on the old server.
    pub fn handle_new_server_failed(
        &mut self,
        now: Instant,
        server: ServerId,
        reason: &str,
    ) -> Result<(), TransferError> {
        self.ensure_open()?;
        new_server_named(&mut self.transfer, server)?;
        let now = self.clock.observe(now);
        self.fail_recoverable(now, Failure::DialFailed(reason.to_string()));
        self.drain(now);
        Ok(())
    }

    /// Advance time: a transfer past its deadline fails (fatally if the state query is
    /// outstanding, recoverably otherwise).
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.clock.observe(now);
        let Some(t) = self.transfer.as_ref() else {
            return;
        };
        if now < t.deadline() {
            return;
        }
        let failed = t.expired();
        self.fail_transfer(now, failed);
        self.drain(now);
    }

    /// The next output, in the order produced; `None` when there is nothing to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop()
    }

    /// When [`Machine::handle_timeout`] must be called next: the deadline of a running transfer.
    /// `None` while no transfer runs (an idle session costs no wake-ups).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.transfer.as_ref().map(Transfer::deadline)
    }

    /// Counters and histograms, as of now.
    pub fn metrics(&self) -> Metrics {
        self.outputs.metrics().clone()
    }

    /// The cancel key the client knows and the one the current server expects. An adapter that
    /// receives a CancelRequest carrying `client` sends [`super::message::build_cancel_request`]
    /// of `server` to the current server.
    pub fn cancel_keys(&self) -> CancelKeys {
        CancelKeys {
            client: self.client_key.clone(),
            server: self.server_key.clone(),
        }
    }

    /// The parameters of the client's StartupMessage, in wire order.
    pub fn startup_params(&self) -> Vec<(String, String)> {
        self.startup_params.clone()
    }

    /// The server the session is on now.
    pub fn server(&self) -> ServerId {
        self.server_id
    }

    /// Whether the session could move right now.
    pub fn at_safe_point(&self) -> bool {
        self.at_safe_point_with(&self.server)
    }

    /// Whether a transfer was requested and has not ended.
    pub fn is_transferring(&self) -> bool {
        self.transfer.is_some()
    }

    /// Whether the session is over.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Bytes the machine holds: client and server bytes held during a transfer, what the
    /// framers buffer, and the prepared statements kept for a move (counted as
    /// `Config::max_prepared_statement_bytes` counts them). Bounded by the [`Config`] limits
    /// plus one input.
    pub fn buffered_len(&self) -> usize {
        let held = self.transfer.as_ref().map_or(0, Transfer::held_len);
        held + self.client.buffered_len() + self.server.buffered_len() + self.prepared.len()
    }

    /// Every input is refused once the session is over.
    fn ensure_open(&self) -> Result<(), TransferError> {
        if self.phase == Phase::Closed {
            return Err(TransferError::Closed);
        }
        Ok(())
    }

    /// Relay the bytes that ended transfers released, until none are left.
    fn drain(&mut self, now: Instant) {
        while self.phase != Phase::Closed {
            if let Some(data) = self.replay_server.pop_front() {
                self.server_bytes(now, data);
            } else if let Some(data) = self.replay_client.pop_front() {
                self.client_bytes(now, data);
            } else {
                break;
            }
        }
        self.replay_client.clear();
        self.replay_server.clear();
    }

    /// Relay client bytes to the current server, tracking the conversation.
    fn client_bytes(&mut self, now: Instant, data: Bytes) {
        let typed = Framer::frontend_typed(self.config.framer);
        let mut framer = core::mem::replace(&mut self.client, typed);
        let mut pos = 0;
        let mut run = framer.is_typed().then_some(0);
        // The messages the prepared statements depend on are read whole when they fit.
        let tracking = self.prepared.is_enabled();
        let max_parse = self.prepared.max_parse_len();
        let capture = |tag| match tag {
            b'P' if tracking => max_parse,
            b'C' if tracking => MAX_CLOSE_LEN,
            b'Q' if tracking => MAX_DEALLOCATE_QUERY_LEN,
            _ => 0,
        };
        loop {
            let before = pos;
            let body = match framer.next(&data, &mut pos, capture) {
                Ok(None) => break,
                Ok(Some(Frame::Message { tag, body, .. })) => {
                    self.client_message(tag, Some(body));
                    continue;
                }
                Ok(Some(Frame::Begin { tag, .. })) => {
                    self.client_message(tag, None);
                    continue;
                }
                Ok(Some(Frame::Part { range, .. })) => {
                    self.prepared
                        .client_part(data.get(range).unwrap_or_default());
                    continue;
                }
                Ok(Some(Frame::EncryptionAnswer(_))) => continue,
                Ok(Some(Frame::Startup { body })) => body,
                Err(e) => {
                    self.relay_run(Peer::Server(self.server_id), &data, run, before);
                    self.close(now, CloseReason::ClientProtocol(e));
                    return;
                }
            };
            let raw = startup_packet(body);
            match StartupPacket::parse(body) {
                Err(e) => {
                    self.close(now, CloseReason::ClientMessage(e));
                    return;
                }
                Ok(StartupPacket::SslRequest | StartupPacket::GssEncRequest) => {
                    self.outputs
                        .transmit(Peer::Server(self.server_id), Source::Client, raw);
                    self.server.expect_encryption_answer();
                }
                Ok(StartupPacket::CancelRequest(key)) => {
                    self.outputs.push(Output::CancelRequest(key));
                    self.close(now, CloseReason::CancelRequest);
                    return;
                }
                Ok(StartupPacket::Startup { params, .. }) => {
                    if params
                        .iter()
                        .any(|(n, _)| *n == self.config.dialect.token_param)
                    {
                        self.close(now, CloseReason::ClientSentRevivalToken);
                        return;
                    }
                    self.startup_params = params;
                    self.outputs
                        .transmit(Peer::Server(self.server_id), Source::Client, raw);
                }
            }
            if framer.is_typed() {
                run = Some(pos);
            }
        }
        self.relay_run(Peer::Server(self.server_id), &data, run, pos);
        self.client = framer;
    }

    /// Track one client message (its body, if it was read whole) while relaying it.
    fn client_message(&mut self, tag: u8, body: Option<&[u8]>) {
        // Password and SASL responses belong to authentication, not to the conversation.
        if tag == b'p' {
            return;
        }
        self.prepared
            .client_message(tag, body, self.session.outstanding);
        self.session.client_message(tag);
    }

    fn relay_run(&mut self, to: Peer, data: &Bytes, run: Option<usize>, end: usize) {
        if let Some(start) = run {
            if start < end {
                let source = if to == Peer::Client {
                    Source::Server
                } else {
                    Source::Client
                };
                self.outputs.transmit(to, source, data.slice(start..end));
            }
        }
    }

    /// Process bytes from the current server in whatever mode the transfer calls for.
    fn server_bytes(&mut self, now: Instant, data: Bytes) {
        let placeholder = Framer::new(Side::Backend, self.config.framer);
        let mut framer = core::mem::replace(&mut self.server, placeholder);
        let mut pos = 0;
        loop {
            if self.phase == Phase::Closed {
                return;
            }
            let bytes_for = self
                .transfer
                .as_ref()
                .map_or(OldServerBytes::Relay, Transfer::old_server_bytes);
            let progress = match bytes_for {
                OldServerBytes::Relay => self.server_relay(now, &mut framer, &data, &mut pos),
                OldServerBytes::StateResponse => {
                    self.state_response(now, &mut framer, &data, &mut pos)
                }
                OldServerBytes::Hold => {
                    self.hold_server(now, data.slice(pos..));
                    Progress::Exhausted
                }
            };
            if let Progress::Exhausted = progress {
                break;
            }
        }
        self.server = framer;
    }

    /// Relay server bytes to the client unchanged, watching for the safe point a waiting
    /// transfer needs.
    fn server_relay(
        &mut self,
        now: Instant,
        framer: &mut Framer,
        data: &Bytes,
        pos: &mut usize,
    ) -> Progress {
        let start = *pos;
        loop {
            let before = *pos;
            let frame = framer.next(data, pos, |tag| match tag {
                b'Z' => 1,
                b'K' => 260,
                b'C' => MAX_TAG_LEN,
                _ => 0,
            });
            let result = match frame {
                Ok(None) => break,
                Ok(Some(Frame::Message { tag, body, .. })) => self.observe_server(tag, body),
                Ok(Some(Frame::Begin { tag, .. })) => self.observe_server(tag, &[]),
                Ok(Some(Frame::Part { .. } | Frame::Startup { .. })) => Ok(()),
                Ok(Some(Frame::EncryptionAnswer(b'N'))) => Ok(()),
                Ok(Some(Frame::EncryptionAnswer(_))) => Err(CloseReason::EncryptionAccepted),
                Err(e) => Err(CloseReason::ServerProtocol(e)),
            };
            if let Err(reason) = result {
                self.relay_run(Peer::Client, data, Some(start), before);
                self.close(now, reason);
                return Progress::Again;
            }
            let waiting = self
                .transfer
                .as_ref()
                .is_some_and(Transfer::waits_for_safe_point);
            if waiting && framer.at_boundary() && self.at_safe_point_with(framer) {
                self.relay_run(Peer::Client, data, Some(start), *pos);
                self.begin_transfer(now);
                return Progress::Again;
            }
        }
        self.relay_run(Peer::Client, data, Some(start), *pos);
        Progress::Exhausted
    }

    /// Whether the session could move, with `server` the old server's framer (which
    /// `server_bytes` takes out of the machine while it reads).
    fn at_safe_point_with(&self, server: &Framer) -> bool {
        self.phase == Phase::Ready
            && self.session.is_safe()
            && self.client.at_boundary()
            && server.at_boundary()
    }

    /// Track one server message while relaying it.
    fn observe_server(&mut self, tag: u8, body: &[u8]) -> Result<(), CloseReason> {
        match tag {
            b'Z' => {
                let status = parse_ready_for_query(body).map_err(CloseReason::ServerMessage)?;
                self.session.server_message(tag, Some(status));
                if self.phase == Phase::Startup {
                    self.phase = Phase::Ready;
                }
            }
            b'K' => {
                let key = BackendKey::parse(body).map_err(CloseReason::ServerMessage)?;
                if self.phase == Phase::Startup {
                    self.client_key = Some(key.clone());
                }
                self.server_key = Some(key);
            }
            _ => self.session.server_message(tag, None),
        }
        self.prepared.server_message(tag, body);
        Ok(())
    }

    /// The session is at a safe point with a transfer waiting: send the state query.
    fn begin_transfer(&mut self, now: Instant) {
        let Some(t) = self.transfer.as_mut() else {
            return;
        };
        // Statements the new server could not be given keep the session where it is, before
        // any server is asked anything.
        let replay = match self.prepared.replay() {
            Ok(replay) => replay,
            Err(failure) => return self.fail_recoverable(now, failure),
        };
        match t.begin(now, &self.config.dialect, replay) {
            Ok(query) => {
                self.outputs
                    .transmit(Peer::Server(self.server_id), Source::Machine, query)
            }
            Err(failure) => self.fail_recoverable(now, failure),
        }
    }

    /// Read the old server's answer to the state query.
    fn state_response(
        &mut self,
        now: Instant,
        framer: &mut Framer,
        data: &Bytes,
        pos: &mut usize,
    ) -> Progress {
        let Some(t) = self.transfer.as_mut() else {
            return Progress::Again;
        };
        let mut cx = Context {
            config: &self.config,
            startup_params: &self.startup_params,
            session: &mut self.session,
            out: &mut self.outputs,
        };
        match t.read_state_response(&mut cx, framer, data, pos) {
            Ok(progress) => progress,
            Err(failed) => {
                self.fail_transfer(now, failed);
                Progress::Again
            }
        }
    }

    /// Old-server bytes while the new server is set up: kept for the client in case the
    /// transfer fails.
    fn hold_server(&mut self, now: Instant, data: Bytes) {
        let Some(t) = self.transfer.as_mut() else {
            return;
        };
        if let Err(failure) = t.hold_server(data, self.config.max_held_server_bytes) {
            self.fail_recoverable(now, failure);
        }
    }

    /// Bytes the new server `server` sent (see [`Machine::handle_server_input`]).
    fn handle_new_server_input(
        &mut self,
        now: Instant,
        server: ServerId,
        data: Bytes,
    ) -> Result<(), TransferError> {
        let new_server = match new_server_named(&mut self.transfer, server) {
            Err(TransferError::NoNewServer) => return Err(TransferError::UnknownServer(server)),
            other => other?,
        };
        if !new_server.is_connected() {
            return Err(TransferError::NewServerNotConnected);
        }
        let now = self.clock.observe(now);
        let mut pos = 0;
        loop {
            match new_server.read(&self.config, &data, &mut pos) {
                Read::NeedInput => break,
                Read::Send(query) => {
                    self.outputs
                        .transmit(Peer::Server(server), Source::Machine, query);
                }
                Read::Failed(failure) => {
                    self.fail_recoverable(now, failure);
                    break;
                }
                Read::Ready => {
                    self.succeed(now);
                    // Whatever follows is the session's own traffic on its new server.
                    self.server_bytes(now, data.slice(pos..));
                    break;
                }
            }
        }
        self.drain(now);
        Ok(())
    }

    /// Write a StartupMessage or query of the machine's own to the new server, or fail the
    /// transfer when it could not be built.
    fn send_to_new_server(&mut self, now: Instant, server: ServerId, data: Result<Bytes, Failure>) {
        match data {
            Ok(data) => self
                .outputs
                .transmit(Peer::Server(server), Source::Machine, data),
            Err(failure) => self.fail_recoverable(now, failure),
        }
    }

    /// The new server is ready: the session is on it now.
    fn succeed(&mut self, now: Instant) {
        let Some(moved) = self.transfer.take().and_then(|t| t.succeed(now)) else {
            return;
        };
        // Reusable only if the old server is exactly where the state query's ReadyForQuery
        // left it: nothing held, no partial message.
        let idle = moved.discarded == 0 && self.server.at_boundary();
        let old = self.server_id;
        if self.config.reuse_old_server && idle {
            let key = self.server_key.clone();
            self.outputs
                .push(Output::ReleaseOldServer { server: old, key });
        } else {
            self.outputs
                .transmit(Peer::Server(old), Source::Machine, build_terminate());
            self.outputs.push(Output::CloseOldServer(old));
        }
        self.server_id = moved.server;
        self.server = moved.framer;
        if let Some(key) = moved.key {
            self.server_key = Some(key);
        }
        self.session = SafePoint {
            ready: Some(TransactionStatus::Idle),
            ..SafePoint::default()
        };
        let metrics = self.outputs.metrics_mut();
        metrics.discarded_old_server_bytes += moved.discarded as u64;
        metrics.prepared_statements_replayed += moved.replayed as u64;
        self.outputs.report(moved.outcome);
        self.replay_client.extend(moved.held_client);
    }

    /// End the running transfer the way `failed` says.
    fn fail_transfer(&mut self, now: Instant, failed: Failed) {
        match failed {
            Failed::Recoverable(failure) => self.fail_recoverable(now, failure),
            Failed::Fatal(failure) => self.close(now, CloseReason::TransferFatal(failure)),
        }
    }

    /// End the transfer and resume on the old server, relaying what it held back after all.
    fn fail_recoverable(&mut self, now: Instant, failure: Failure) {
        let Some(t) = self.transfer.take() else {
            return;
        };
        let held = t.fail(now, Failed::Recoverable(failure), &mut self.outputs);
        self.replay_server.extend(held.server);
        self.replay_client.extend(held.client);
    }

    /// End the session: close the client, and fail a running transfer fatally.
    fn close(&mut self, now: Instant, reason: CloseReason) {
        if self.phase == Phase::Closed {
            return;
        }
        if let Some(t) = self.transfer.take() {
            let failure = match &reason {
                CloseReason::TransferFatal(f) => f.clone(),
                _ => Failure::SessionClosed,
            };
            // What the transfer held back goes nowhere: the client is gone.
            t.fail(now, Failed::Fatal(failure), &mut self.outputs);
        }
        self.outputs.push(Output::Closed(reason));
        self.phase = Phase::Closed;
    }
}

/// The running transfer's new server, if `server` names it. It borrows only the transfer, so
/// the machine's other fields stay usable beside it.
fn new_server_named(
    transfer: &mut Option<Transfer>,
    server: ServerId,
) -> Result<&mut NewServer, TransferError> {
    transfer
        .as_mut()
        .ok_or(TransferError::NoNewServer)?
        .new_server(server)
}

/// A startup packet's bytes from its body (the length field is not part of the body).
fn startup_packet(body: &[u8]) -> Bytes {
    let mut raw = Vec::with_capacity(body.len() + 4);
    raw.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    raw.extend_from_slice(body);
    Bytes::from(raw)
}
