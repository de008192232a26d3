//! Resetting a server connection a session left, so that another session can be moved onto it.
//!
//! ```
//! use bytes::Bytes;
//! use weir::time::Instant;
//! use weir::transfer::reset::{Reset, ResetConfig, ResetOutput};
//!
//! let now = Instant::from_secs(1);
//! let mut reset = Reset::new(now, ResetConfig::default());
//! // Two queries go out at once: DISCARD ALL, then emptying the revival-token setting.
//! let Some(ResetOutput::Transmit(queries)) = reset.poll_output() else { panic!() };
//! assert_eq!(&queries[5..17], b"DISCARD ALL\0");
//! assert_eq!(reset.poll_timeout(), Some(Instant::from_secs(6)));
//!
//! // CommandComplete and ReadyForQuery (idle) for each.
//! let answer: &[u8] = b"C\0\0\0\x10DISCARD ALL\0Z\0\0\0\x05IC\0\0\0\x0dSELECT 1\0Z\0\0\0\x05I";
//! reset.handle_input(now, Bytes::from_static(answer)).unwrap();
//! assert_eq!(reset.poll_output(), Some(ResetOutput::Done));
//! assert_eq!(reset.poll_timeout(), None);
//! ```
//!
//! A [`Reset`] runs on a server connection that is idle at a message boundary (what
//! [`super::Output::ReleaseOldServer`] hands back). It sends `DISCARD ALL` (settings, prepared
//! statements, temporary tables, listens, advisory locks, plans) and then empties the
//! dialect's revival-token setting: `DISCARD ALL` puts startup settings back, and a server
//! dialled for a transfer got an earlier session's token at startup. It ends in exactly one
//! final output: [`ResetOutput::Done`] once the server is idle again with nothing more to read,
//! or [`ResetOutput::Failed`], after which the connection must be closed.

use alloc::collections::VecDeque;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

use bytes::Bytes;

use super::error::ParseError;
use super::message::build_query;
use crate::error::{ErrorKind, Kind};
use crate::time::{Instant, Monotonic};

/// How a [`Reset`] runs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ResetConfig {
    /// The revival-token setting to empty (`Dialect::token_param`). Default
    /// `crdb:session_revival_token_base64`.
    pub token_param: String,
    /// The longest message the server may send during the reset (a notice, a parameter
    /// report), length field included. Default 64 KiB.
    pub max_message_len: usize,
    /// The reset fails if it has not finished this long after it started. Default 5 s.
    pub timeout: Duration,
}

impl Default for ResetConfig {
    fn default() -> Self {
        ResetConfig {
            token_param: super::Dialect::default().token_param,
            max_message_len: 64 << 10,
            timeout: Duration::from_secs(5),
        }
    }
}

/// What a [`Reset`] asks of its caller, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResetOutput {
    /// Write these bytes to the server.
    Transmit(Bytes),
    /// Final: the connection is reset, idle and at a message boundary; it may be kept.
    Done,
    /// Final: the reset failed; close the connection.
    Failed(ResetFailure),
}

/// Why a reset failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResetFailure {
    /// The server answered with an ErrorResponse.
    #[error("resetting a server failed")]
    ServerError,
    /// A message the reset does not expect (a transaction left open, bytes after the end, a
    /// length out of bounds).
    #[error("unexpected message {:?} while resetting a server", char::from(*tag))]
    Unexpected {
        /// Its type byte.
        tag: u8,
    },
    /// The server closed the connection.
    #[error("the server closed the connection during the reset")]
    ServerClosed,
    /// `ResetConfig::timeout` passed.
    #[error("resetting a server timed out")]
    Timeout,
    /// The token setting's name cannot be put in a query.
    #[error("the reset query cannot be built: {0}")]
    Query(ParseError),
}

/// Why a call to a [`Reset`] was refused. The call had no effect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ResetError {
    /// The reset has produced its final output and takes no more input.
    #[error("the reset has finished")]
    Closed,
}

impl Kind for ResetError {
    fn kind(&self) -> ErrorKind {
        match self {
            ResetError::Closed => ErrorKind::Closed,
        }
    }
}

/// Resets one server connection. See the [module docs](self).
#[derive(Debug)]
pub struct Reset {
    config: ResetConfig,
    clock: Monotonic,
    deadline: Instant,
    /// Bytes of the message being read.
    buf: Vec<u8>,
    /// `DISCARD ALL` completed.
    discarded: bool,
    /// ReadyForQuery messages seen: one per query.
    ready: u8,
    finished: bool,
    outputs: VecDeque<ResetOutput>,
}

impl Reset {
    /// Start resetting a connection: the queries are the first output.
    pub fn new(now: Instant, config: ResetConfig) -> Reset {
        let mut clock = Monotonic::default();
        let now = clock.observe(now);
        let mut reset = Reset {
            deadline: now + config.timeout,
            config,
            clock,
            buf: Vec::new(),
            discarded: false,
            ready: 0,
            finished: false,
            outputs: VecDeque::new(),
        };
        // Two Query messages: DISCARD ALL refuses to run inside the implicit transaction of a
        // multi-statement one.
        let clear = format!(
            "SELECT pg_catalog.set_config('{}', '', false)",
            reset.config.token_param.replace('\'', "''")
        );
        match (build_query("DISCARD ALL"), build_query(&clear)) {
            (Ok(discard), Ok(clear)) => {
                let queries = [&discard[..], &clear[..]].concat();
                reset
                    .outputs
                    .push_back(ResetOutput::Transmit(Bytes::from(queries)));
            }
            (Err(e), _) | (_, Err(e)) => reset.fail(ResetFailure::Query(e)),
        }
        reset
    }

    /// Bytes the server sent.
    pub fn handle_input(&mut self, now: Instant, data: Bytes) -> Result<(), ResetError> {
        if self.finished {
            return Err(ResetError::Closed);
        }
        self.clock.observe(now);
        let mut pos = 0;
        while !self.finished && pos < data.len() {
            if self.ready == 2 {
                // Anything more would leave the connection mid-message.
                self.fail(ResetFailure::Unexpected { tag: data[pos] });
                break;
            }
            let want = self.declared_len().map_or(5, |len| len + 1);
            let take = want.saturating_sub(self.buf.len()).min(data.len() - pos);
            self.buf.extend_from_slice(&data[pos..pos + take]);
            pos += take;
            let Some(len) = self.declared_len() else {
                continue;
            };
            let tag = self.buf[0];
            if !(4..=self.config.max_message_len).contains(&len) {
                self.fail(ResetFailure::Unexpected { tag });
            } else if self.buf.len() == len + 1 {
                let message = core::mem::take(&mut self.buf);
                self.message(tag, &message[5..]);
            }
        }
        if self.ready == 2 && !self.finished {
            self.finished = true;
            self.outputs.push_back(ResetOutput::Done);
        }
        Ok(())
    }

    /// The server closed the connection.
    pub fn handle_eof(&mut self, now: Instant) -> Result<(), ResetError> {
        if self.finished {
            return Err(ResetError::Closed);
        }
        self.clock.observe(now);
        self.fail(ResetFailure::ServerClosed);
        Ok(())
    }

    /// Advance time: past the deadline, the reset fails.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.clock.observe(now);
        if !self.finished && now >= self.deadline {
            self.fail(ResetFailure::Timeout);
        }
    }

    /// The next output, in the order produced; `None` when there is nothing to do.
    pub fn poll_output(&mut self) -> Option<ResetOutput> {
        self.outputs.pop_front()
    }

    /// When [`Reset::handle_timeout`] must be called next; `None` once finished.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (!self.finished).then_some(self.deadline)
    }

    /// Whether the final output was produced.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Bytes held: at most `ResetConfig::max_message_len` plus one.
    pub fn buffered_len(&self) -> usize {
        self.buf.len()
    }

    /// The length field of the message being read, once its header is in.
    fn declared_len(&self) -> Option<usize> {
        let len: [u8; 4] = self.buf.get(1..5)?.try_into().ok()?;
        Some(u32::from_be_bytes(len) as usize)
    }

    /// One whole message.
    fn message(&mut self, tag: u8, body: &[u8]) {
        match tag {
            b'C' if self.ready == 0 && body == b"DISCARD ALL\0" => self.discarded = true,
            b'T' | b'D' | b'C' if self.ready == 1 => {}
            b'Z' if self.discarded && body == b"I" => self.ready += 1,
            b'N' | b'S' => {}
            b'E' => self.fail(ResetFailure::ServerError),
            _ => self.fail(ResetFailure::Unexpected { tag }),
        }
    }

    fn fail(&mut self, failure: ResetFailure) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.buf = Vec::new();
        self.outputs.push_back(ResetOutput::Failed(failure));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn message(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![tag];
        m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    fn config() -> ResetConfig {
        ResetConfig {
            token_param: "weir.token's".into(),
            ..ResetConfig::default()
        }
    }

    /// The two queries of a reset that empties `weir.token's`, whose name needs quoting.
    fn reset_queries_sent() -> Vec<u8> {
        let clear = "SELECT pg_catalog.set_config('weir.token''s', '', false)";
        [
            build_query("DISCARD ALL").unwrap(),
            build_query(clear).unwrap(),
        ]
        .concat()
    }

    /// What a server answers to them.
    fn reset_reply() -> Vec<u8> {
        [
            message(b'N', b"Mhi\0\0"),
            message(b'S', b"application_name\0\0"),
            message(b'C', b"DISCARD ALL\0"),
            message(b'Z', b"I"),
            message(b'T', b"\0\x01set_config\0"),
            message(b'D', b"\0\x01\0\0\0\0"),
            message(b'C', b"SELECT 1\0"),
            message(b'Z', b"I"),
        ]
        .concat()
    }

    /// Every output after feeding `reply` in pieces of `piece` bytes.
    fn run(reply: &[u8], piece: usize) -> Vec<ResetOutput> {
        let now = Instant::from_secs(1);
        let mut r = Reset::new(now, config());
        for chunk in reply.chunks(piece) {
            if r.handle_input(now, Bytes::copy_from_slice(chunk)).is_err() {
                break;
            }
        }
        core::iter::from_fn(|| r.poll_output()).collect()
    }

    #[test]
    fn discards_then_empties_the_token_setting() {
        for piece in [1, 3, 20, 1000] {
            assert_eq!(
                run(&reset_reply(), piece),
                [
                    ResetOutput::Transmit(Bytes::from(reset_queries_sent())),
                    ResetOutput::Done
                ]
            );
        }
    }

    #[test]
    fn fails_on_an_error_a_transaction_left_open_or_bytes_after_the_end() {
        for (reply, failure) in [
            (message(b'E', b"SERROR\0\0"), ResetFailure::ServerError),
            (
                [message(b'C', b"DISCARD ALL\0"), message(b'Z', b"T")].concat(),
                ResetFailure::Unexpected { tag: b'Z' },
            ),
            (
                [reset_reply(), vec![b'N', 0, 0]].concat(),
                ResetFailure::Unexpected { tag: b'N' },
            ),
        ] {
            let outputs = run(&reply, 1000);
            assert_eq!(outputs.last(), Some(&ResetOutput::Failed(failure)));
            assert_eq!(outputs.len(), 2);
        }
    }

    #[test]
    fn refuses_lengths_out_of_bounds() {
        for header in [[b'Z', 0, 0, 0, 3], [b'D', 0, 1, 0, 5]] {
            let tag = header[0];
            let outputs = run(&header, 1000);
            assert_eq!(
                outputs.last(),
                Some(&ResetOutput::Failed(ResetFailure::Unexpected { tag }))
            );
        }
        // Part of a header: nothing yet, and nothing but the queries.
        assert_eq!(run(&message(b'Z', b"I")[..5], 1000).len(), 1);
    }

    #[test]
    fn times_out_and_notices_a_closed_server_once() {
        let start = Instant::from_secs(1);
        let mut r = Reset::new(start, config());
        r.poll_output();
        r.handle_timeout(start + Duration::from_secs(4));
        assert_eq!(r.poll_output(), None);
        r.handle_timeout(start + Duration::from_secs(5));
        assert_eq!(
            r.poll_output(),
            Some(ResetOutput::Failed(ResetFailure::Timeout))
        );
        assert_eq!(r.poll_timeout(), None);
        assert_eq!(r.handle_eof(start), Err(ResetError::Closed));
        assert_eq!(ResetError::Closed.kind(), ErrorKind::Closed);

        let mut r = Reset::new(start, config());
        r.poll_output();
        r.handle_eof(start).unwrap();
        assert_eq!(
            r.poll_output(),
            Some(ResetOutput::Failed(ResetFailure::ServerClosed))
        );
        assert_eq!(r.poll_output(), None);
    }
}
