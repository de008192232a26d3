//! The migration machine: relaying one client session and moving it between servers.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;

use bytes::Bytes;

use super::config::Config;
use super::error::{CloseReason, Failure, TransferError};
use super::frame::{Frame, Framer, Side};
use super::message::{parse_ready_for_query, BackendKey, StartupPacket};
use super::metrics::Metrics;
use super::migration::{Step, Transfer};
use super::output::{CancelKeys, Output, Peer, ServerId, Source, Transmit};
use super::safepoint::SafePoint;
use crate::time::{Instant, Monotonic};

/// The longest transfer key accepted.
pub const MAX_TRANSFER_KEY_LEN: usize = 128;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Before the first ReadyForQuery.
    Startup,
    /// Relaying a started session.
    Ready,
    /// The client was closed.
    Closed,
}

/// Whether a relay loop used up its input, or must be called again (the mode may have
/// changed).
pub(super) enum Progress {
    Exhausted,
    Again,
}

/// Sits between one client and its server, relays both directions and moves the session to a
/// new server on request. See the [module docs](super) for the protocol and an example.
///
/// Inputs are the `handle_*` methods and [`Machine::request_transfer`]; outputs are drained with
/// [`Machine::poll_output`] until `None`, in the order they were produced, and the next
/// deadline is [`Machine::poll_timeout`].
#[derive(Debug)]
pub struct Machine {
    pub(super) config: Config,
    pub(super) phase: Phase,
    /// The server the session is on.
    pub(super) server_id: ServerId,
    pub(super) client: Framer,
    pub(super) server: Framer,
    pub(super) session: SafePoint,
    pub(super) startup_params: Vec<(String, String)>,
    pub(super) client_key: Option<BackendKey>,
    pub(super) server_key: Option<BackendKey>,
    pub(super) transfer: Option<Transfer>,
    /// Held bytes released by the end of a transfer, relayed before the current call returns.
    pub(super) replay_client: VecDeque<Bytes>,
    pub(super) replay_server: VecDeque<Bytes>,
    pub(super) outputs: VecDeque<Output>,
    pub(super) metrics: Metrics,
    pub(super) clock: Monotonic,
}

impl Machine {
    /// A machine for a client that has just connected to its first server, which the caller
    /// names `server`: the next client bytes are its startup packets.
    pub fn new(config: Config, server: ServerId) -> Machine {
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
            transfer: None,
            replay_client: VecDeque::new(),
            replay_server: VecDeque::new(),
            outputs: VecDeque::new(),
            metrics: Metrics::default(),
            clock: Monotonic::default(),
        }
    }

    /// Bytes the client sent. While a transfer runs they are held (up to
    /// `Config::max_held_client_bytes`, else [`TransferError::HeldClientBytesFull`] and nothing is
    /// taken) and later relayed, once, to whichever server the session ends on.
    pub fn handle_client_input(&mut self, now: Instant, data: Bytes) -> Result<(), TransferError> {
        if self.phase == Phase::Closed {
            return Err(TransferError::Closed);
        }
        if let Some(t) = self.transfer.as_mut() {
            if t.step != Step::WaitSafePoint {
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
        if self.phase == Phase::Closed {
            return Err(TransferError::Closed);
        }
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
        if self.phase == Phase::Closed {
            return Err(TransferError::Closed);
        }
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
        self.metrics.attempted += 1;
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

    /// Advance time: a transfer past its deadline fails (fatally if the state query is
    /// outstanding, recoverably otherwise).
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.clock.observe(now);
        let Some(t) = self.transfer.as_ref() else {
            return;
        };
        if now < t.deadline {
            return;
        }
        match t.step {
            Step::WaitSafePoint => self.fail_recoverable(now, Failure::NoSafePoint),
            Step::State(_) => self.close(now, CloseReason::TransferFatal(Failure::Timeout)),
            _ => self.fail_recoverable(now, Failure::Timeout),
        }
        self.drain(now);
    }

    /// The next output, in the order produced; `None` when there is nothing to do.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When [`Machine::handle_timeout`] must be called next: the deadline of a running transfer.
    /// `None` while no transfer runs (an idle session costs no wake-ups).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.transfer.as_ref().map(|t| t.deadline)
    }

    /// Counters and histograms, as of now.
    pub fn metrics(&self) -> Metrics {
        self.metrics.clone()
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
        self.phase == Phase::Ready
            && self.session.is_safe()
            && self.client.at_boundary()
            && self.server.at_boundary()
    }

    /// Whether a transfer was requested and has not ended.
    pub fn is_transferring(&self) -> bool {
        self.transfer.is_some()
    }

    /// Whether the session is over.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Bytes the machine holds: client and server bytes held during a transfer plus what the
    /// framers buffer. Bounded by the [`Config`] limits plus one input.
    pub fn buffered_len(&self) -> usize {
        let held = self.transfer.as_ref().map_or(0, Transfer::held_len);
        held + self.client.buffered_len() + self.server.buffered_len()
    }

    pub(super) fn transmit(&mut self, to: Peer, source: Source, data: Bytes) {
        if data.is_empty() {
            return;
        }
        match source {
            Source::Client => self.metrics.client_bytes += data.len() as u64,
            Source::Server => self.metrics.server_bytes += data.len() as u64,
            Source::Machine => {}
        }
        self.outputs
            .push_back(Output::Transmit(Transmit { to, source, data }));
    }

    pub(super) fn drain(&mut self, now: Instant) {
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
    pub(super) fn client_bytes(&mut self, now: Instant, data: Bytes) {
        let typed = Framer::frontend_typed(self.config.framer);
        let mut framer = core::mem::replace(&mut self.client, typed);
        let mut pos = 0;
        let mut run = framer.is_typed().then_some(0);
        loop {
            let before = pos;
            let body = match framer.next(&data, &mut pos, |_| 0) {
                Ok(None) => break,
                Ok(Some(Frame::Message { tag, .. } | Frame::Begin { tag, .. })) => {
                    // Password and SASL responses belong to authentication, not to the
                    // conversation a safe point is about.
                    if tag != b'p' {
                        self.session.client_message(tag);
                    }
                    continue;
                }
                Ok(Some(Frame::Part { .. } | Frame::EncryptionAnswer(_))) => continue,
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
                    self.transmit(Peer::Server(self.server_id), Source::Client, raw);
                    self.server.expect_encryption_answer();
                }
                Ok(StartupPacket::CancelRequest(key)) => {
                    self.outputs.push_back(Output::CancelRequest(key));
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
                    self.transmit(Peer::Server(self.server_id), Source::Client, raw);
                }
            }
            if framer.is_typed() {
                run = Some(pos);
            }
        }
        self.relay_run(Peer::Server(self.server_id), &data, run, pos);
        self.client = framer;
    }

    fn relay_run(&mut self, to: Peer, data: &Bytes, run: Option<usize>, end: usize) {
        if let Some(start) = run {
            if start < end {
                let source = if to == Peer::Client {
                    Source::Server
                } else {
                    Source::Client
                };
                self.transmit(to, source, data.slice(start..end));
            }
        }
    }

    /// Process bytes from the current server in whatever mode the transfer calls for.
    pub(super) fn server_bytes(&mut self, now: Instant, data: Bytes) {
        let placeholder = Framer::new(Side::Backend, self.config.framer);
        let mut framer = core::mem::replace(&mut self.server, placeholder);
        let mut pos = 0;
        loop {
            if self.phase == Phase::Closed {
                return;
            }
            let progress = match self.transfer.as_ref().map(|t| t.step) {
                None | Some(Step::WaitSafePoint) => {
                    self.server_relay(now, &mut framer, &data, &mut pos)
                }
                Some(Step::State(expect)) => {
                    self.state_response(now, expect, &mut framer, &data, &mut pos)
                }
                Some(Step::Dial | Step::Auth | Step::Deserialize(_)) => {
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
            let waiting =
                matches!(self.transfer.as_ref(), Some(t) if t.step == Step::WaitSafePoint);
            if waiting && framer.at_boundary() && self.at_safe_point_with(framer) {
                self.relay_run(Peer::Client, data, Some(start), *pos);
                self.begin_transfer(now);
                return Progress::Again;
            }
        }
        self.relay_run(Peer::Client, data, Some(start), *pos);
        Progress::Exhausted
    }

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
        Ok(())
    }

    /// End the session: close the client, and fail a running transfer fatally.
    pub(super) fn close(&mut self, now: Instant, reason: CloseReason) {
        if self.phase == Phase::Closed {
            return;
        }
        if let Some(t) = self.transfer.take() {
            let failure = match &reason {
                CloseReason::TransferFatal(f) => f.clone(),
                _ => Failure::SessionClosed,
            };
            self.metrics.error_fatal += 1;
            if t.new_server.is_some() {
                self.outputs.push_back(Output::CloseNewServer(t.to));
            }
            let outcome = t.outcome(now, super::output::TransferResult::Fatal(failure));
            self.metrics.latency_ns.record_duration(outcome.latency);
            self.outputs.push_back(Output::Outcome(outcome));
        }
        self.outputs.push_back(Output::Closed(reason));
        self.phase = Phase::Closed;
    }
}

/// A startup packet's bytes from its body (the length field is not part of the body).
fn startup_packet(body: &[u8]) -> Bytes {
    let mut raw = Vec::with_capacity(body.len() + 4);
    raw.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    raw.extend_from_slice(body);
    Bytes::from(raw)
}
