//! The new server's side of a transfer: greeting, deserialize, and the switch.

use alloc::string::ToString;

use bytes::Bytes;

use super::error::{Failure, TransferError};
use super::frame::{Frame, Framer};
use super::machine::Machine;
use super::message::{
    build_query, build_startup_message, build_terminate, error_summary, parse_command_complete,
    parse_ready_for_query, Authentication, BackendKey, DataRow, RowDescription, TransactionStatus,
};
use super::migration::{Expect, Step};
use super::output::{Output, Peer, ServerId, Source, TransferResult};
use super::safepoint::SafePoint;
use crate::time::Instant;

/// What one new-server message did to the transfer.
enum Next {
    Continue,
    Fail(Failure),
    Succeed,
}

impl Machine {
    /// The adapter connected to `server`, the new server asked for by
    /// [`Output::DialNewServer`]. The machine writes the StartupMessage.
    pub fn handle_new_server_connected(
        &mut self,
        now: Instant,
        server: ServerId,
    ) -> Result<(), TransferError> {
        let step = self.new_server_step(server)?;
        if step != Step::Dial {
            return Err(TransferError::NewServerAlreadyConnected);
        }
        let Some(t) = self.transfer.as_mut() else {
            return Err(TransferError::NoNewServer);
        };
        // The client's startup parameters plus the token: what DialNewServer announced.
        let token = (self.config.dialect.token_param.as_str(), t.token());
        let params = self
            .startup_params
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .chain(core::iter::once(token));
        let now = self.clock.observe(now);
        match build_startup_message(params, self.config.framer.max_startup_len as usize) {
            Ok(startup) => {
                t.step = Step::Auth;
                self.transmit(Peer::Server(server), Source::Machine, startup);
            }
            Err(e) => self.fail_recoverable(now, Failure::Parse(e)),
        }
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
        if self.new_server_step(server)? != Step::Dial {
            return Err(TransferError::NewServerAlreadyConnected);
        }
        let Some(t) = self.transfer.as_mut() else {
            return Err(TransferError::NoNewServer);
        };
        let Some(sql) = self
            .config
            .dialect
            .started_server_query(t.state(), t.token())
        else {
            return Err(TransferError::NoStartedServerQuery);
        };
        if let Some(n) = t.new_server.as_mut() {
            n.key = key;
        }
        let now = self.clock.observe(now);
        match build_query(&sql) {
            Ok(query) => {
                t.step = Step::Deserialize(Expect::RowDescription);
                self.transmit(Peer::Server(server), Source::Machine, query);
            }
            Err(e) => self.fail_recoverable(now, Failure::Parse(e)),
        }
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
        self.new_server_step(server)?;
        let now = self.clock.observe(now);
        self.fail_recoverable(now, Failure::DialFailed(reason.to_string()));
        self.drain(now);
        Ok(())
    }

    /// Bytes the new server `server` sent (see [`Machine::handle_server_input`]).
    pub(super) fn handle_new_server_input(
        &mut self,
        now: Instant,
        server: ServerId,
        data: Bytes,
    ) -> Result<(), TransferError> {
        let step = match self.new_server_step(server) {
            Err(TransferError::NoNewServer) => return Err(TransferError::UnknownServer(server)),
            other => other?,
        };
        if step == Step::Dial {
            return Err(TransferError::NewServerNotConnected);
        }
        let mut framer = self
            .transfer
            .as_mut()
            .and_then(|t| t.new_server.as_mut())
            .and_then(|n| n.framer.take())
            .ok_or(TransferError::NoNewServer)?;
        let now = self.clock.observe(now);
        let small = self.config.max_small_message_len.saturating_sub(4);
        let mut pos = 0;
        loop {
            let next = match framer.next(&data, &mut pos, |_| small) {
                Ok(None) => break,
                Err(e) => Next::Fail(Failure::Protocol(e)),
                Ok(Some(Frame::Begin { body_len, .. })) => Next::Fail(Failure::ResponseTooLarge {
                    len: body_len.saturating_add(4),
                }),
                Ok(Some(Frame::Message { tag, body, .. })) => self.new_server_message(tag, body),
                Ok(Some(
                    Frame::Part { .. } | Frame::Startup { .. } | Frame::EncryptionAnswer(_),
                )) => Next::Continue,
            };
            match next {
                Next::Continue => {}
                Next::Fail(failure) => {
                    self.fail_recoverable(now, failure);
                    break;
                }
                Next::Succeed => {
                    self.succeed(now, framer);
                    // Whatever follows is the session's own traffic on its new server.
                    self.server_bytes(now, data.slice(pos..));
                    self.drain(now);
                    return Ok(());
                }
            }
        }
        if let Some(n) = self.transfer.as_mut().and_then(|t| t.new_server.as_mut()) {
            n.framer = Some(framer);
        }
        self.drain(now);
        Ok(())
    }

    fn new_server_step(&self, server: ServerId) -> Result<Step, TransferError> {
        if self.is_closed() {
            return Err(TransferError::Closed);
        }
        match self.transfer.as_ref() {
            Some(t) if t.new_server.is_some() && t.to == server => Ok(t.step),
            Some(t) if t.new_server.is_some() => Err(TransferError::UnknownServer(server)),
            _ => Err(TransferError::NoNewServer),
        }
    }

    /// One whole message from the new server.
    fn new_server_message(&mut self, tag: u8, body: &[u8]) -> Next {
        let Some(t) = self.transfer.as_mut() else {
            return Next::Continue;
        };
        let dialect = &self.config.dialect;
        // Notices and parameter reports (set_config of a reported setting sends one) carry
        // nothing the client lacks: its own session already had those values.
        if matches!(tag, b'N' | b'S' | b'v') {
            return Next::Continue;
        }
        let failure = |f: Failure| Next::Fail(f);
        match (t.step, tag) {
            (Step::Auth, b'R') => match Authentication::parse(body) {
                Ok(Authentication::Ok) => Next::Continue,
                Ok(other) => failure(Failure::TokenRejected(alloc::format!(
                    "server asked for authentication: {other:?}"
                ))),
                Err(e) => failure(Failure::Parse(e)),
            },
            (Step::Auth, b'E') => failure(Failure::TokenRejected(error_summary(body))),
            (Step::Auth, b'K') => match BackendKey::parse(body) {
                Ok(key) => {
                    if let Some(n) = t.new_server.as_mut() {
                        n.key = Some(key);
                    }
                    Next::Continue
                }
                Err(e) => failure(Failure::Parse(e)),
            },
            (Step::Auth, b'Z') => {
                let sql = dialect.deserialize_query(t.state());
                match build_query(&sql) {
                    Ok(query) => {
                        t.step = Step::Deserialize(Expect::RowDescription);
                        let to = t.to;
                        self.transmit(Peer::Server(to), Source::Machine, query);
                        Next::Continue
                    }
                    Err(e) => failure(Failure::Parse(e)),
                }
            }
            (Step::Deserialize(_), b'E') => failure(Failure::DeserializeError(error_summary(body))),
            (Step::Deserialize(Expect::RowDescription), b'T') => {
                let column = dialect.deserialize_column.as_str();
                match RowDescription::parse(body) {
                    Ok(d) if d.has_columns(&[column]) => {
                        t.step = Step::Deserialize(Expect::DataRow);
                        Next::Continue
                    }
                    Ok(_) => failure(Failure::MalformedResponse("deserialize column")),
                    Err(e) => failure(Failure::Parse(e)),
                }
            }
            (Step::Deserialize(Expect::DataRow), b'D') => match DataRow::parse(body) {
                Ok(row) => match row.values[..] {
                    [Some(b"t")] => {
                        t.step = Step::Deserialize(Expect::CommandComplete);
                        Next::Continue
                    }
                    [Some(b"f")] => failure(Failure::DeserializeFalse),
                    _ => failure(Failure::MalformedResponse("deserialize row")),
                },
                Err(e) => failure(Failure::Parse(e)),
            },
            (Step::Deserialize(Expect::CommandComplete), b'C') => {
                match parse_command_complete(body) {
                    Ok(got) if got == dialect.deserialize_tag => {
                        t.step = Step::Deserialize(Expect::ReadyForQuery);
                        Next::Continue
                    }
                    Ok(got) => failure(Failure::WrongTag(got.to_string())),
                    Err(e) => failure(Failure::Parse(e)),
                }
            }
            (Step::Deserialize(Expect::ReadyForQuery), b'Z') => match parse_ready_for_query(body) {
                Ok(TransactionStatus::Idle) => Next::Succeed,
                Ok(status) => failure(Failure::NotIdle(status.byte())),
                Err(e) => failure(Failure::Parse(e)),
            },
            (step, got) => failure(Failure::UnexpectedMessage {
                expected: expected_tag(step),
                got,
            }),
        }
    }

    /// The session is on the new server now.
    fn succeed(&mut self, now: Instant, framer: Framer) {
        let Some(mut t) = self.transfer.take() else {
            return;
        };
        // Reusable only if the old server is exactly where the state query's ReadyForQuery
        // left it: nothing held, no partial message.
        let idle = t.held_server_len() == 0 && self.server.at_boundary();
        let old = self.server_id;
        if self.config.reuse_old_server && idle {
            let key = self.server_key.clone();
            self.outputs
                .push_back(Output::ReleaseOldServer { server: old, key });
        } else {
            self.transmit(Peer::Server(old), Source::Machine, build_terminate());
            self.outputs.push_back(Output::CloseOldServer(old));
        }
        self.server_id = t.to;
        self.server = framer;
        if let Some(key) = t.new_server.take().and_then(|n| n.key) {
            self.server_key = Some(key);
        }
        self.session = SafePoint {
            ready: Some(TransactionStatus::Idle),
            ..SafePoint::default()
        };
        self.metrics.success += 1;
        self.metrics.discarded_old_server_bytes += t.held_server_len() as u64;
        let outcome = t.outcome(now, TransferResult::Success);
        self.metrics.latency_ns.record_duration(outcome.latency);
        self.outputs.push_back(Output::Outcome(outcome));
        self.replay_client.extend(t.take_held_client());
    }
}

fn expected_tag(step: Step) -> u8 {
    match step {
        Step::Auth => b'Z',
        Step::Deserialize(Expect::RowDescription) => b'T',
        Step::Deserialize(Expect::DataRow) => b'D',
        Step::Deserialize(Expect::CommandComplete) => b'C',
        _ => b'Z',
    }
}
