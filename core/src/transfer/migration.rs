//! The transfer itself: state query, new server, deserialize, and the three ways it ends.

use alloc::collections::VecDeque;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::time::Duration;

use bytes::Bytes;

use super::dialect::STATE_COLUMNS;
use super::error::{CloseReason, Failure, TransferError};
use super::frame::{header, Frame, Framer, Side};
use super::machine::{Machine, Progress};
use super::message::{
    build_query, error_summary, parse_command_complete, parse_ready_for_query, BackendKey, DataRow,
    RowDescription, TransactionStatus,
};
use super::output::{Output, Peer, ServerId, Source, TransferOutcome, TransferResult};
use crate::time::Instant;

/// The next message a response must bring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expect {
    RowDescription,
    DataRow,
    CommandComplete,
    ReadyForQuery,
}

/// Where a transfer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    /// Requested; relaying normally until a safe point.
    WaitSafePoint,
    /// The state query is outstanding on the old server: the non-recoverable window.
    State(Expect),
    /// Waiting for the adapter to connect to the new server.
    Dial,
    /// StartupMessage sent; consuming the new server's greeting up to ReadyForQuery.
    Auth,
    /// The deserialize query is outstanding on the new server.
    Deserialize(Expect),
}

/// What the state query's row said.
#[derive(Debug, Clone)]
enum Answer {
    Ready { state: String, token: String },
    Refused(String),
    Malformed(&'static str),
}

#[derive(Debug)]
pub(super) struct NewServer {
    pub(super) framer: Option<Framer>,
    pub(super) key: Option<BackendKey>,
}

/// One transfer in progress.
#[derive(Debug)]
pub(super) struct Transfer {
    key: String,
    /// The caller's id for the new server.
    pub(super) to: ServerId,
    requested_at: Instant,
    /// When the state query went out, once it has.
    suspended_at: Option<Instant>,
    pub(super) deadline: Instant,
    pub(super) step: Step,
    /// A too-large message before our RowDescription is being relayed to the client in parts.
    relaying_stream: bool,
    answer: Option<Answer>,
    held_client: VecDeque<Bytes>,
    held_client_len: usize,
    held_server: VecDeque<Bytes>,
    held_server_len: usize,
    /// The base64 session state and revival token, once the old server gave them.
    state: String,
    token: String,
    pub(super) new_server: Option<NewServer>,
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
            relaying_stream: false,
            answer: None,
            held_client: VecDeque::new(),
            held_client_len: 0,
            held_server: VecDeque::new(),
            held_server_len: 0,
            state: String::new(),
            token: String::new(),
            new_server: None,
        }
    }

    pub(super) fn hold_client(&mut self, data: Bytes, limit: usize) -> Result<(), TransferError> {
        let len = self.held_client_len.saturating_add(data.len());
        if len > limit {
            return Err(TransferError::HeldClientBytesFull {
                held: self.held_client_len,
                offered: data.len(),
                limit,
            });
        }
        self.held_client_len = len;
        if !data.is_empty() {
            self.held_client.push_back(data);
        }
        Ok(())
    }

    pub(super) fn held_len(&self) -> usize {
        let framer = self
            .new_server
            .as_ref()
            .and_then(|n| n.framer.as_ref())
            .map_or(0, Framer::buffered_len);
        self.held_client_len + self.held_server_len + framer
    }

    pub(super) fn state(&self) -> &str {
        &self.state
    }

    pub(super) fn token(&self) -> &str {
        &self.token
    }

    pub(super) fn held_server_len(&self) -> usize {
        self.held_server_len
    }

    pub(super) fn take_held_client(&mut self) -> VecDeque<Bytes> {
        self.held_client_len = 0;
        core::mem::take(&mut self.held_client)
    }

    pub(super) fn outcome(&self, now: Instant, result: TransferResult) -> TransferOutcome {
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

impl Machine {
    /// The session is at a safe point with a transfer waiting: send the state query.
    pub(super) fn begin_transfer(&mut self, now: Instant) {
        let Some(t) = self.transfer.as_mut() else {
            return;
        };
        let sql = self.config.dialect.state_query(&t.key);
        match build_query(&sql) {
            Ok(query) => {
                t.step = Step::State(Expect::RowDescription);
                t.suspended_at = Some(now);
                self.transmit(Peer::Server(self.server_id), Source::Machine, query);
            }
            Err(e) => self.fail_recoverable(now, Failure::Parse(e)),
        }
    }

    /// Read the old server's answer to the state query.
    pub(super) fn state_response(
        &mut self,
        now: Instant,
        expect: Expect,
        framer: &mut Framer,
        data: &Bytes,
        pos: &mut usize,
    ) -> Progress {
        let small = self.config.max_small_message_len.saturating_sub(4);
        let response = self.config.max_transfer_response_len.saturating_sub(4);
        let frame = framer.next(data, pos, |tag| match (expect, tag) {
            (Expect::DataRow, b'D') => response,
            _ => small,
        });
        let relaying = self.transfer.as_ref().is_some_and(|t| t.relaying_stream);
        let verdict = match frame {
            Ok(None) => return Progress::Exhausted,
            Err(e) => Err(Failure::Protocol(e)),
            Ok(Some(Frame::Part { range, last })) => {
                if relaying {
                    self.transmit(Peer::Client, Source::Server, data.slice(range));
                    if let (true, Some(t)) = (last, self.transfer.as_mut()) {
                        t.relaying_stream = false;
                    }
                }
                Ok(())
            }
            Ok(Some(Frame::Begin { tag, body_len })) => match (expect, tag) {
                (_, b'E') => Err(Failure::AmbiguousError("oversized ErrorResponse".into())),
                (Expect::RowDescription, _) => {
                    let head = Bytes::copy_from_slice(&header(tag, body_len));
                    self.transmit(Peer::Client, Source::Server, head);
                    if let Some(t) = self.transfer.as_mut() {
                        t.relaying_stream = true;
                    }
                    Ok(())
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
                self.state_message(now, expect, tag, body, raw)
            }
            Ok(Some(Frame::Startup { .. } | Frame::EncryptionAnswer(_))) => Ok(()),
        };
        if let Err(failure) = verdict {
            self.close(now, CloseReason::TransferFatal(failure));
        }
        Progress::Again
    }

    /// One whole message of the state response. `Err` is fatal.
    fn state_message(
        &mut self,
        now: Instant,
        expect: Expect,
        tag: u8,
        body: &[u8],
        raw: impl FnOnce() -> Bytes,
    ) -> Result<(), Failure> {
        if tag == b'E' {
            // It may answer the state query or anything else: the session state is unknown.
            return Err(Failure::AmbiguousError(error_summary(body)));
        }
        let small = self.config.max_small_message_len as usize;
        let expected = match expect {
            Expect::RowDescription => b'T',
            Expect::DataRow => b'D',
            Expect::CommandComplete => b'C',
            Expect::ReadyForQuery => b'Z',
        };
        if expect == Expect::RowDescription {
            let ours = tag == b'T'
                && body.len() + 4 <= small
                && RowDescription::parse(body).is_ok_and(|d| d.has_columns(&STATE_COLUMNS));
            if ours {
                self.set_step(Step::State(Expect::DataRow));
            } else {
                // Not ours (a notice, or a message for the client): relay it.
                self.transmit(Peer::Client, Source::Server, raw());
            }
            return Ok(());
        }
        if tag != expected {
            return Err(Failure::UnexpectedMessage { expected, got: tag });
        }
        match expect {
            Expect::DataRow => {
                let len = body.len() as u64 + 4;
                if len > u64::from(self.config.max_transfer_response_len) {
                    return Err(Failure::ResponseTooLarge {
                        len: u32::try_from(len).unwrap_or(u32::MAX),
                    });
                }
                self.metrics.response_bytes.record(len);
                let row = DataRow::parse(body).map_err(Failure::Parse)?;
                let [error, state, token, key] = row.values[..] else {
                    return Err(Failure::MalformedResponse("state row needs 4 values"));
                };
                let Some(t) = self.transfer.as_mut() else {
                    return Ok(());
                };
                if key != Some(t.key.as_bytes()) {
                    return Err(Failure::WrongKey);
                }
                t.answer = Some(match (error, base64_text(state), base64_text(token)) {
                    (Some(e), _, _) => Answer::Refused(String::from_utf8_lossy(e).into_owned()),
                    (None, Some(state), Some(token)) => Answer::Ready { state, token },
                    (None, _, _) => Answer::Malformed("state or token is missing or not base64"),
                });
                t.step = Step::State(Expect::CommandComplete);
            }
            Expect::CommandComplete => {
                let got = parse_command_complete(body).map_err(Failure::Parse)?;
                if got != self.config.dialect.state_tag {
                    return Err(Failure::WrongTag(got.to_string()));
                }
                self.set_step(Step::State(Expect::ReadyForQuery));
            }
            Expect::ReadyForQuery | Expect::RowDescription => {
                let status = parse_ready_for_query(body).map_err(Failure::Parse)?;
                self.session.server_message(b'Z', Some(status));
                self.state_answered(now, status);
            }
        }
        Ok(())
    }

    /// The state response is complete and the old server is ready again.
    fn state_answered(&mut self, now: Instant, status: TransactionStatus) {
        let Some(t) = self.transfer.as_mut() else {
            return;
        };
        let (state, token) = match (status, t.answer.take()) {
            (TransactionStatus::Idle, Some(Answer::Ready { state, token })) => (state, token),
            (TransactionStatus::Idle, Some(Answer::Refused(e))) => {
                return self.fail_recoverable(now, Failure::StateError(e));
            }
            (TransactionStatus::Idle, Some(Answer::Malformed(m))) => {
                return self.fail_recoverable(now, Failure::MalformedResponse(m));
            }
            (TransactionStatus::Idle, None) => {
                return self.fail_recoverable(now, Failure::MalformedResponse("no state row"));
            }
            (status, _) => return self.fail_recoverable(now, Failure::NotIdle(status.byte())),
        };
        let mut params = self.startup_params.clone();
        params.push((self.config.dialect.token_param.clone(), token.clone()));
        t.state = state;
        t.token = token;
        t.step = Step::Dial;
        t.new_server = Some(NewServer {
            framer: Some(Framer::new(Side::Backend, self.config.framer)),
            key: None,
        });
        let server = t.to;
        self.outputs
            .push_back(Output::DialNewServer { server, params });
    }

    fn set_step(&mut self, step: Step) {
        if let Some(t) = self.transfer.as_mut() {
            t.step = step;
        }
    }

    /// Old-server bytes while the new server is set up: kept for the client in case the
    /// transfer fails.
    pub(super) fn hold_server(&mut self, now: Instant, data: Bytes) {
        let limit = self.config.max_held_server_bytes;
        let Some(t) = self.transfer.as_mut() else {
            return;
        };
        if data.is_empty() {
            return;
        }
        t.held_server_len = t.held_server_len.saturating_add(data.len());
        t.held_server.push_back(data);
        if t.held_server_len > limit {
            self.fail_recoverable(now, Failure::HeldServerBytesFull);
        }
    }

    /// End the transfer and resume on the old server.
    pub(super) fn fail_recoverable(&mut self, now: Instant, failure: Failure) {
        let Some(mut t) = self.transfer.take() else {
            return;
        };
        self.metrics.error_recoverable += 1;
        if t.new_server.is_some() {
            self.outputs.push_back(Output::CloseNewServer(t.to));
        }
        let outcome = t.outcome(now, TransferResult::Recoverable(failure));
        self.metrics.latency_ns.record_duration(outcome.latency);
        self.outputs.push_back(Output::Outcome(outcome));
        self.replay_server.extend(t.held_server.drain(..));
        self.replay_client.extend(t.held_client.drain(..));
    }
}
