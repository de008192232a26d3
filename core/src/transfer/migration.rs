//! One transfer: waiting for a safe point, the state query, the new server, and the ways it
//! ends. The machine owns the [`Transfer`] while it runs, hands it what it needs and does what
//! it answers; the transfer never reaches into the machine.

use alloc::collections::VecDeque;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::time::Duration;

use bytes::Bytes;

use super::config::Config;
use super::dialect::{Dialect, STATE_COLUMNS};
use super::error::{Failure, TransferError};
use super::frame::{header, Frame, Framer};
use super::message::{
    build_query, error_summary, parse_command_complete, parse_ready_for_query, BackendKey, DataRow,
    RowDescription, TransactionStatus,
};
use super::new_server::{Expect, NewServer, Revival};
use super::output::{Output, Outputs, Peer, ServerId, Source, TransferOutcome, TransferResult};
use super::prepared::Replay;
use super::safepoint::SafePoint;
use crate::time::Instant;

/// Whether a reader used up its input, or must be called again: the transfer may have moved
/// on, and with it what the rest of the input is for.
pub(super) enum Progress {
    Exhausted,
    Again,
}

/// How a transfer that cannot go on ends.
#[derive(Debug)]
pub(super) enum Failed {
    /// The session goes on, on the old server.
    Recoverable(Failure),
    /// The session's state is unknown: the client is closed.
    Fatal(Failure),
}

/// What the old server's bytes are for while a transfer runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OldServerBytes {
    /// Relayed to the client, as without a transfer.
    Relay,
    /// The answer to the state query.
    StateResponse,
    /// Held: they reach the client only if the transfer fails.
    Hold,
}

/// The parts of the machine that reading the state response uses.
pub(super) struct Context<'a> {
    pub(super) config: &'a Config,
    /// The client's startup parameters, which the new server gets too.
    pub(super) startup_params: &'a [(String, String)],
    /// The session's conversation, which the state query's ReadyForQuery belongs to.
    pub(super) session: &'a mut SafePoint,
    pub(super) out: &'a mut Outputs,
}

/// What a failed transfer held back; the session goes on with it on the old server, if it
/// goes on.
pub(super) struct HeldBytes {
    /// Client bytes, for the old server.
    pub(super) client: VecDeque<Bytes>,
    /// Old-server bytes, for the client.
    pub(super) server: VecDeque<Bytes>,
}

/// What the machine takes over from a transfer that moved the session.
pub(super) struct Moved {
    /// The new server, which the session is on now.
    pub(super) server: ServerId,
    pub(super) framer: Framer,
    /// The new server's BackendKeyData, if it gave one.
    pub(super) key: Option<BackendKey>,
    /// Client bytes held during the transfer, for the new server.
    pub(super) held_client: VecDeque<Bytes>,
    /// How many bytes the old server sent after answering the state query, which the client
    /// never sees.
    pub(super) discarded: usize,
    /// How many prepared statements the new server was given.
    pub(super) replayed: usize,
    pub(super) outcome: TransferOutcome,
}

/// One transfer in progress.
#[derive(Debug)]
pub(super) struct Transfer {
    key: String,
    /// The caller's id for the new server.
    to: ServerId,
    requested_at: Instant,
    /// When the state query went out, once it has.
    suspended_at: Option<Instant>,
    deadline: Instant,
    step: Step,
    /// Client bytes from the state query on, for whichever server the session ends on.
    held_client: Held,
    /// Old-server bytes after the state response, for the client should the transfer fail.
    held_server: Held,
    /// The prepared statements for the new server, from the safe point on.
    replay: Option<Replay>,
}

/// Where a transfer stands.
#[derive(Debug)]
enum Step {
    /// Requested; relaying normally until a safe point.
    WaitSafePoint,
    /// The state query is outstanding on the old server: the non-recoverable window.
    State(StateResponse),
    /// The old server answered; the new server is being set up.
    NewServer(NewServer),
}

/// Bytes held back during a transfer, in order.
#[derive(Debug, Default)]
struct Held {
    chunks: VecDeque<Bytes>,
    len: usize,
}

impl Held {
    fn push(&mut self, data: Bytes) {
        if data.is_empty() {
            return;
        }
        self.len = self.len.saturating_add(data.len());
        self.chunks.push_back(data);
    }
}

impl Transfer {
    pub(super) fn new(key: String, to: ServerId, now: Instant, deadline: Instant) -> Transfer {
        Transfer {
            key,
            to,
            requested_at: now,
            suspended_at: None,
            deadline,
            step: Step::WaitSafePoint,
            held_client: Held::default(),
            held_server: Held::default(),
            replay: None,
        }
    }

    pub(super) fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Whether the transfer still waits for a safe point: until then the session runs as
    /// usual.
    pub(super) fn waits_for_safe_point(&self) -> bool {
        matches!(self.step, Step::WaitSafePoint)
    }

    pub(super) fn old_server_bytes(&self) -> OldServerBytes {
        match self.step {
            Step::WaitSafePoint => OldServerBytes::Relay,
            Step::State(_) => OldServerBytes::StateResponse,
            Step::NewServer(_) => OldServerBytes::Hold,
        }
    }

    /// How the transfer fails once its deadline passed: fatally while the state query is
    /// outstanding (its answer may still change the session), recoverably otherwise.
    pub(super) fn expired(&self) -> Failed {
        match self.step {
            Step::WaitSafePoint => Failed::Recoverable(Failure::NoSafePoint),
            Step::State(_) => Failed::Fatal(Failure::Timeout),
            Step::NewServer(_) => Failed::Recoverable(Failure::Timeout),
        }
    }

    /// Hold client bytes until the transfer ends; past `limit` they are refused and nothing
    /// is taken.
    pub(super) fn hold_client(&mut self, data: Bytes, limit: usize) -> Result<(), TransferError> {
        let held = self.held_client.len;
        if held.saturating_add(data.len()) > limit {
            return Err(TransferError::HeldClientBytesFull {
                held,
                offered: data.len(),
                limit,
            });
        }
        self.held_client.push(data);
        Ok(())
    }

    /// Hold old-server bytes while the new server is set up. Past `limit` the transfer fails,
    /// recoverably.
    pub(super) fn hold_server(&mut self, data: Bytes, limit: usize) -> Result<(), Failure> {
        if data.is_empty() {
            return Ok(());
        }
        self.held_server.push(data);
        if self.held_server.len > limit {
            return Err(Failure::HeldServerBytesFull);
        }
        Ok(())
    }

    /// Bytes held from both sides, what the new server's framer buffers, and the prepared
    /// statements on their way to it.
    pub(super) fn held_len(&self) -> usize {
        let framer = match &self.step {
            Step::NewServer(new_server) => new_server.buffered_len(),
            _ => 0,
        };
        let replay = self.replay.as_ref().map_or(0, |r| r.bytes.len());
        self.held_client.len + self.held_server.len + framer + replay
    }

    /// The session is at a safe point: the state query to send the old server, or why the
    /// transfer fails (recoverably) instead. `replay` is what the new server must run after
    /// the deserialize query.
    pub(super) fn begin(
        &mut self,
        now: Instant,
        dialect: &Dialect,
        replay: Option<Replay>,
    ) -> Result<Bytes, Failure> {
        let query = build_query(&dialect.state_query(&self.key)).map_err(Failure::Parse)?;
        self.replay = replay;
        self.step = Step::State(StateResponse::new());
        self.suspended_at = Some(now);
        Ok(query)
    }

    /// Read the old server's answer to the state query from `data[*pos..]`, one message per
    /// call. Once the answer is complete and usable, asks the adapter for the new server.
    pub(super) fn read_state_response(
        &mut self,
        cx: &mut Context<'_>,
        framer: &mut Framer,
        data: &Bytes,
        pos: &mut usize,
    ) -> Result<Progress, Failed> {
        let Step::State(response) = &mut self.step else {
            return Ok(Progress::Again);
        };
        match response
            .read(&self.key, cx, framer, data, pos)
            .map_err(Failed::Fatal)?
        {
            StateRead::NeedInput => Ok(Progress::Exhausted),
            StateRead::Read => Ok(Progress::Again),
            StateRead::Answered(revival) => {
                let revival = revival.map_err(Failed::Recoverable)?;
                self.dial_new_server(cx, revival);
                Ok(Progress::Again)
            }
        }
    }

    /// Ask the adapter for the new server, announcing the startup parameters it will get: the
    /// client's plus the revival token.
    fn dial_new_server(&mut self, cx: &mut Context<'_>, revival: Revival) {
        let mut params = cx.startup_params.to_vec();
        params.push((cx.config.dialect.token_param.clone(), revival.token.clone()));
        let replay = self.replay.take();
        self.step = Step::NewServer(NewServer::new(revival, replay, cx.config.framer));
        cx.out.push(Output::DialNewServer {
            server: self.to,
            params,
        });
    }

    /// The new server, if `server` names it.
    pub(super) fn new_server(&mut self, server: ServerId) -> Result<&mut NewServer, TransferError> {
        match &mut self.step {
            Step::NewServer(new_server) if self.to == server => Ok(new_server),
            Step::NewServer(_) => Err(TransferError::UnknownServer(server)),
            _ => Err(TransferError::NoNewServer),
        }
    }

    /// End the transfer in failure: close the new server if it was dialled and report the
    /// outcome. Returns what was held back.
    pub(super) fn fail(self, now: Instant, failed: Failed, out: &mut Outputs) -> HeldBytes {
        if let Step::NewServer(_) = self.step {
            out.push(Output::CloseNewServer(self.to));
        }
        let result = match failed {
            Failed::Recoverable(failure) => TransferResult::Recoverable(failure),
            Failed::Fatal(failure) => TransferResult::Fatal(failure),
        };
        out.report(self.outcome(now, result));
        HeldBytes {
            client: self.held_client.chunks,
            server: self.held_server.chunks,
        }
    }

    /// End the transfer in success, once the new server is ready: what the session goes on
    /// with. `None` if no new server was set up.
    pub(super) fn succeed(self, now: Instant) -> Option<Moved> {
        let outcome = self.outcome(now, TransferResult::Success);
        let Step::NewServer(new_server) = self.step else {
            return None;
        };
        let (framer, key, replayed) = new_server.into_connection();
        Some(Moved {
            server: self.to,
            framer,
            key,
            held_client: self.held_client.chunks,
            discarded: self.held_server.len,
            replayed,
            outcome,
        })
    }

    fn outcome(&self, now: Instant, result: TransferResult) -> TransferOutcome {
        TransferOutcome {
            key: self.key.clone(),
            result,
            latency: now.duration_since(self.requested_at),
            suspended: self
                .suspended_at
                .map_or(Duration::ZERO, |at| now.duration_since(at)),
        }
    }
}

/// Reading the old server's answer to the state query.
#[derive(Debug)]
struct StateResponse {
    expect: Expect,
    /// A too-large message before our RowDescription is being relayed to the client in parts.
    relaying_stream: bool,
    /// What the state row said, once it came.
    answer: Option<Answer>,
}

/// What the state query's row said.
#[derive(Debug)]
enum Answer {
    Ready(Revival),
    Refused(String),
    Malformed(&'static str),
}

/// What one frame of the state response came to.
enum StateRead {
    /// The input is used up.
    NeedInput,
    /// A frame was read; read on.
    Read,
    /// The old server is ready again: what revives the session on the new server, or why the
    /// session stays where it is.
    Answered(Result<Revival, Failure>),
}

impl StateResponse {
    fn new() -> StateResponse {
        StateResponse {
            expect: Expect::RowDescription,
            relaying_stream: false,
            answer: None,
        }
    }

    /// Read the next frame. `Err` is fatal.
    fn read(
        &mut self,
        key: &str,
        cx: &mut Context<'_>,
        framer: &mut Framer,
        data: &Bytes,
        pos: &mut usize,
    ) -> Result<StateRead, Failure> {
        let small = cx.config.max_small_message_len.saturating_sub(4);
        let response = cx.config.max_transfer_response_len.saturating_sub(4);
        let expect = self.expect;
        let frame = framer.next(data, pos, |tag| match (expect, tag) {
            (Expect::DataRow, b'D') => response,
            _ => small,
        });
        match frame {
            Ok(None) => Ok(StateRead::NeedInput),
            Err(e) => Err(Failure::Protocol(e)),
            Ok(Some(Frame::Part { range, last })) => {
                if self.relaying_stream {
                    cx.out
                        .transmit(Peer::Client, Source::Server, data.slice(range));
                    if last {
                        self.relaying_stream = false;
                    }
                }
                Ok(StateRead::Read)
            }
            Ok(Some(Frame::Begin { tag, body_len })) => match (expect, tag) {
                (_, b'E') => Err(Failure::AmbiguousError("oversized ErrorResponse".into())),
                (Expect::RowDescription, _) => {
                    let head = Bytes::copy_from_slice(&header(tag, body_len));
                    cx.out.transmit(Peer::Client, Source::Server, head);
                    self.relaying_stream = true;
                    Ok(StateRead::Read)
                }
                _ => Err(Failure::ResponseTooLarge {
                    len: body_len.saturating_add(4),
                }),
            },
            Ok(Some(Frame::Message { tag, body, raw })) => {
                // The message's bytes, should it have to be relayed.
                let raw = || match raw {
                    Some(range) => data.slice(range),
                    None => {
                        let mut whole = Vec::with_capacity(body.len() + 5);
                        whole.extend_from_slice(&header(tag, body.len() as u32));
                        whole.extend_from_slice(body);
                        Bytes::from(whole)
                    }
                };
                self.message(key, cx, tag, body, raw)
            }
            Ok(Some(Frame::Startup { .. } | Frame::EncryptionAnswer(_))) => Ok(StateRead::Read),
        }
    }

    /// One whole message of the state response. `Err` is fatal.
    fn message(
        &mut self,
        key: &str,
        cx: &mut Context<'_>,
        tag: u8,
        body: &[u8],
        raw: impl FnOnce() -> Bytes,
    ) -> Result<StateRead, Failure> {
        if tag == b'E' {
            // It may answer the state query or anything else: the session state is unknown.
            return Err(Failure::AmbiguousError(error_summary(body)));
        }
        if self.expect == Expect::RowDescription {
            let small = cx.config.max_small_message_len as usize;
            let ours = tag == b'T'
                && body.len() + 4 <= small
                && RowDescription::parse(body).is_ok_and(|d| d.has_columns(&STATE_COLUMNS));
            if ours {
                self.expect = Expect::DataRow;
            } else {
                // Not ours (a notice, or a message for the client): relay it.
                cx.out.transmit(Peer::Client, Source::Server, raw());
            }
            return Ok(StateRead::Read);
        }
        let expected = self.expect.tag();
        if tag != expected {
            return Err(Failure::UnexpectedMessage { expected, got: tag });
        }
        match self.expect {
            Expect::DataRow => {
                let len = body.len() as u64 + 4;
                if len > u64::from(cx.config.max_transfer_response_len) {
                    return Err(Failure::ResponseTooLarge {
                        len: u32::try_from(len).unwrap_or(u32::MAX),
                    });
                }
                cx.out.metrics_mut().response_bytes.record(len);
                let row = DataRow::parse(body).map_err(Failure::Parse)?;
                let [error, state, token, row_key] = row.values[..] else {
                    return Err(Failure::MalformedResponse("state row needs 4 values"));
                };
                if row_key != Some(key.as_bytes()) {
                    return Err(Failure::WrongKey);
                }
                self.answer = Some(match (error, base64_text(state), base64_text(token)) {
                    (Some(e), _, _) => Answer::Refused(String::from_utf8_lossy(e).into_owned()),
                    (None, Some(state), Some(token)) => Answer::Ready(Revival { state, token }),
                    (None, _, _) => Answer::Malformed("state or token is missing or not base64"),
                });
                self.expect = Expect::CommandComplete;
            }
            Expect::CommandComplete => {
                let got = parse_command_complete(body).map_err(Failure::Parse)?;
                if got != cx.config.dialect.state_tag {
                    return Err(Failure::WrongTag(got.to_string()));
                }
                self.expect = Expect::ReadyForQuery;
            }
            Expect::ReadyForQuery | Expect::RowDescription => {
                let status = parse_ready_for_query(body).map_err(Failure::Parse)?;
                cx.session.server_message(b'Z', Some(status));
                return Ok(StateRead::Answered(self.answered(status)));
            }
        }
        Ok(StateRead::Read)
    }

    /// The response is complete and the old server is ready again with `status`: the session
    /// can move only if it is idle and the row gave a usable state and token.
    fn answered(&mut self, status: TransactionStatus) -> Result<Revival, Failure> {
        match (status, self.answer.take()) {
            (TransactionStatus::Idle, Some(Answer::Ready(revival))) => Ok(revival),
            (TransactionStatus::Idle, Some(Answer::Refused(e))) => Err(Failure::StateError(e)),
            (TransactionStatus::Idle, Some(Answer::Malformed(m))) => {
                Err(Failure::MalformedResponse(m))
            }
            (TransactionStatus::Idle, None) => Err(Failure::MalformedResponse("no state row")),
            (status, _) => Err(Failure::NotIdle(status.byte())),
        }
    }
}

/// Base64 as servers send it; line breaks (PostgreSQL's `encode` adds them) are dropped.
fn base64_text(value: Option<&[u8]>) -> Option<String> {
    let text: String = core::str::from_utf8(value?)
        .ok()?
        .chars()
        .filter(|c| !matches!(c, '\n' | '\r'))
        .collect();
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=');
    (!text.is_empty() && text.chars().all(valid)).then_some(text)
}
