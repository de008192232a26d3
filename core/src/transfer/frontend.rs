//! What a proxy reads from a new client before any server is involved: the first packet.
//!
//! ```
//! use bytes::Bytes;
//! use weir::time::Instant;
//! use weir::transfer::frontend::{Frontend, FrontendCloseReason, FrontendConfig, FrontendOutput};
//! use weir::transfer::message::build_startup_message;
//!
//! let now = Instant::from_secs(1);
//! let mut client = Frontend::new(now, FrontendConfig::default());
//! // The client has until the login timeout (60 s by default) to finish its startup.
//! assert_eq!(client.poll_timeout(), Some(Instant::from_secs(61)));
//!
//! // An SSLRequest: the proxy speaks plaintext, so it answers `N`.
//! client.handle_input(now, Bytes::from_static(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f])).unwrap();
//! assert_eq!(client.poll_output(), Some(FrontendOutput::Transmit(Bytes::from_static(b"N"))));
//! assert_eq!(client.poll_output(), None);
//!
//! // Then the StartupMessage, in two pieces: it comes out whole, for a transfer::Machine.
//! let startup = build_startup_message([("user", "alice")], 10_000).unwrap();
//! client.handle_input(now, startup.slice(..5)).unwrap();
//! assert_eq!(client.poll_output(), None);
//! client.handle_input(now, startup.slice(5..)).unwrap();
//! assert_eq!(client.poll_output(), Some(FrontendOutput::Startup(startup)));
//! assert!(client.is_finished());
//! assert_eq!(client.poll_timeout(), None);
//!
//! // A client that sends nothing is let go when its time is up.
//! let mut silent = Frontend::new(now, FrontendConfig::default());
//! silent.handle_timeout(Instant::from_secs(61));
//! assert_eq!(silent.poll_output(), Some(FrontendOutput::Closed(FrontendCloseReason::LoginTimeout)));
//! ```
//!
//! A [`Frontend`] answers SSLRequest and GSSENCRequest with `N` (the proxy terminates no
//! encryption), and ends in exactly one final output, the last one: the StartupMessage
//! ([`FrontendOutput::Startup`]), a CancelRequest ([`FrontendOutput::Cancel`]) or a reason to
//! hang up ([`FrontendOutput::Closed`]), which includes a client that has not finished within
//! [`FrontendConfig::login_timeout`] (PgBouncer's `client_login_timeout`) of its start.
//! [`build_error_response`] builds the last words a proxy sends a client it cannot serve.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};

use super::error::ParseError;
use super::message::{BackendKey, StartupPacket};
use crate::error::{ErrorKind, Kind};
use crate::time::{Instant, Monotonic};

/// How a [`Frontend`] reads the first packet.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct FrontendConfig {
    /// The longest startup packet accepted, length field included. Default 10,000.
    pub max_startup_len: u32,
    /// Encryption requests answered `N` before the client is refused (libpq sends at most one
    /// of each kind): the one after them is answered, then the connection closed. Default 2.
    pub max_encryption_requests: usize,
    /// The client must have sent its StartupMessage or CancelRequest this long after the
    /// frontend started, or it is closed with [`FrontendCloseReason::LoginTimeout`]: a client
    /// that never finishes would otherwise hold its connection forever. Default 60 s.
    pub login_timeout: Duration,
}

impl Default for FrontendConfig {
    fn default() -> Self {
        FrontendConfig {
            max_startup_len: 10_000,
            max_encryption_requests: 2,
            login_timeout: Duration::from_secs(60),
        }
    }
}

/// What a [`Frontend`] asks of its caller, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrontendOutput {
    /// Write these bytes to the client (`N`, the answer to an encryption request).
    Transmit(Bytes),
    /// Final: the client's StartupMessage, whole (length field included), followed by any
    /// bytes the client sent after it. Give them to
    /// [`Machine::handle_client_input`](super::Machine::handle_client_input).
    Startup(Bytes),
    /// Final: the connection carried a CancelRequest for the backend with this key.
    Cancel(BackendKey),
    /// Final: the client broke the startup protocol; close the connection.
    Closed(FrontendCloseReason),
}

/// Why a [`Frontend`] gave up on a client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrontendCloseReason {
    /// A startup packet's length field is below 8 or above `FrontendConfig::max_startup_len`.
    #[error("startup packet length {len} is outside 8..={max}")]
    Length {
        /// The declared length.
        len: u32,
        /// The configured limit.
        max: u32,
    },
    /// A startup packet did not parse.
    #[error("{0}")]
    Parse(ParseError),
    /// More encryption requests than `FrontendConfig::max_encryption_requests`.
    #[error("too many encryption requests")]
    TooManyEncryptionRequests,
    /// `FrontendConfig::login_timeout` passed before the client finished its startup.
    #[error("the client did not finish its startup within the login timeout")]
    LoginTimeout,
}

/// Why a call to a [`Frontend`] was refused. The call had no effect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrontendError {
    /// The frontend has produced its final output and takes no more input.
    #[error("the frontend has finished")]
    Closed,
}

impl Kind for FrontendError {
    fn kind(&self) -> ErrorKind {
        match self {
            FrontendError::Closed => ErrorKind::Closed,
        }
    }
}

/// Reads a client's first packet, answering encryption requests. See the
/// [module docs](self).
#[derive(Debug)]
pub struct Frontend {
    config: FrontendConfig,
    clock: Monotonic,
    deadline: Instant,
    /// Bytes of the packet being read.
    buf: Vec<u8>,
    encryption_requests: usize,
    finished: bool,
    outputs: VecDeque<FrontendOutput>,
}

impl Frontend {
    /// A frontend for a client that connected at `now`: its login timeout runs from here.
    pub fn new(now: Instant, config: FrontendConfig) -> Frontend {
        let mut clock = Monotonic::default();
        let now = clock.observe(now);
        Frontend {
            deadline: now + config.login_timeout,
            config,
            clock,
            buf: Vec::new(),
            encryption_requests: 0,
            finished: false,
            outputs: VecDeque::new(),
        }
    }

    /// Bytes the client sent. They are read whatever the time: only
    /// [`Frontend::handle_timeout`] closes a client that is late.
    pub fn handle_input(&mut self, now: Instant, data: Bytes) -> Result<(), FrontendError> {
        if self.finished {
            return Err(FrontendError::Closed);
        }
        self.clock.observe(now);
        let mut pos = 0;
        while !self.finished && pos < data.len() {
            // The length field first, then the rest of the packet it announces.
            let want = self.declared_len().unwrap_or(4);
            let take = want.saturating_sub(self.buf.len()).min(data.len() - pos);
            self.buf.extend_from_slice(&data[pos..pos + take]);
            pos += take;
            if self.buf.len() == 4 {
                let len = self.declared_len().unwrap_or(0) as u32;
                if !(8..=self.config.max_startup_len).contains(&len) {
                    let max = self.config.max_startup_len;
                    self.finish(FrontendOutput::Closed(FrontendCloseReason::Length {
                        len,
                        max,
                    }));
                    break;
                }
            }
            if self.declared_len() == Some(self.buf.len()) {
                let packet = core::mem::take(&mut self.buf);
                self.packet(packet, data.slice(pos..));
            }
        }
        Ok(())
    }

    /// Advance time: past the login timeout, a client that has not finished is closed.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.clock.observe(now);
        if !self.finished && now >= self.deadline {
            self.finish(FrontendOutput::Closed(FrontendCloseReason::LoginTimeout));
        }
    }

    /// The next output, in the order produced; `None` when there is nothing to do.
    pub fn poll_output(&mut self) -> Option<FrontendOutput> {
        self.outputs.pop_front()
    }

    /// When [`Frontend::handle_timeout`] must be called next: the end of the login timeout;
    /// `None` once finished.
    pub fn poll_timeout(&self) -> Option<Instant> {
        (!self.finished).then_some(self.deadline)
    }

    /// Whether the final output was produced.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// Bytes held: at most `FrontendConfig::max_startup_len`, or the 4 bytes of a length field
    /// below 8 that is about to be refused.
    pub fn buffered_len(&self) -> usize {
        self.buf.len()
    }

    fn declared_len(&self) -> Option<usize> {
        let head: [u8; 4] = self.buf.get(..4)?.try_into().ok()?;
        Some(u32::from_be_bytes(head) as usize)
    }

    /// One whole startup packet; `rest` is what the client sent after it.
    fn packet(&mut self, packet: Vec<u8>, rest: Bytes) {
        let body = packet.get(4..).unwrap_or_default();
        match StartupPacket::parse(body) {
            Err(e) => self.finish(FrontendOutput::Closed(FrontendCloseReason::Parse(e))),
            Ok(StartupPacket::SslRequest | StartupPacket::GssEncRequest) => {
                self.encryption_requests += 1;
                self.outputs
                    .push_back(FrontendOutput::Transmit(Bytes::from_static(b"N")));
                if self.encryption_requests > self.config.max_encryption_requests {
                    let reason = FrontendCloseReason::TooManyEncryptionRequests;
                    self.finish(FrontendOutput::Closed(reason));
                }
            }
            Ok(StartupPacket::CancelRequest(key)) => self.finish(FrontendOutput::Cancel(key)),
            Ok(StartupPacket::Startup { .. }) => {
                let mut whole = BytesMut::with_capacity(packet.len() + rest.len());
                whole.extend_from_slice(&packet);
                whole.extend_from_slice(&rest);
                self.finish(FrontendOutput::Startup(whole.freeze()));
            }
        }
    }

    fn finish(&mut self, output: FrontendOutput) {
        self.finished = true;
        self.buf = Vec::new();
        self.outputs.push_back(output);
    }
}

/// A FATAL ErrorResponse with SQLSTATE `code` and `message` (NUL bytes become spaces): the
/// last thing a proxy says to a client it cannot serve.
pub fn build_error_response(code: &str, message: &str) -> Bytes {
    let mut body = BytesMut::new();
    for (field, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', code),
        (b'M', message),
    ] {
        body.put_u8(field);
        body.put_slice(value.replace('\0', " ").as_bytes());
        body.put_u8(0);
    }
    body.put_u8(0);
    let mut out = BytesMut::with_capacity(body.len() + 5);
    out.put_u8(b'E');
    out.put_u32(body.len() as u32 + 4);
    out.put_slice(&body);
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transfer::message::{build_cancel_request, build_startup_message, ErrorFields};
    use alloc::string::ToString;

    const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

    const T0: Instant = Instant::from_secs(100);

    fn run(input: &[u8]) -> Vec<FrontendOutput> {
        let mut f = Frontend::new(T0, FrontendConfig::default());
        // One byte at a time: packets split anywhere read the same.
        for b in input {
            if f.handle_input(T0, Bytes::copy_from_slice(&[*b])).is_err() {
                break;
            }
        }
        core::iter::from_fn(|| f.poll_output()).collect()
    }

    #[test]
    fn ssl_is_refused_then_the_startup_is_read_whole() {
        let startup = build_startup_message([("user", "alice")], 10_000).unwrap();
        let mut input = SSL_REQUEST.to_vec();
        input.extend_from_slice(&startup);
        assert_eq!(
            run(&input),
            [
                FrontendOutput::Transmit(Bytes::from_static(b"N")),
                FrontendOutput::Startup(startup.clone())
            ]
        );
        // Bytes after the StartupMessage in the same input follow it.
        let mut f = Frontend::new(T0, FrontendConfig::default());
        let mut both = startup.to_vec();
        both.extend_from_slice(b"Q\0\0\0\x05x");
        f.handle_input(T0, Bytes::from(both.clone())).unwrap();
        assert_eq!(
            f.poll_output(),
            Some(FrontendOutput::Startup(Bytes::from(both)))
        );
        assert_eq!(f.handle_input(T0, Bytes::new()), Err(FrontendError::Closed));
        assert_eq!(FrontendError::Closed.kind(), ErrorKind::Closed);
    }

    #[test]
    fn cancel_requests_carry_their_key() {
        let key = BackendKey {
            process_id: 42,
            secret: alloc::vec![1, 2, 3, 4],
        };
        assert_eq!(
            run(&build_cancel_request(&key)),
            [FrontendOutput::Cancel(key)]
        );
    }

    #[test]
    fn bad_lengths_and_endless_encryption_requests_are_refused() {
        assert_eq!(
            run(&[0, 0, 0, 4]),
            [FrontendOutput::Closed(FrontendCloseReason::Length {
                len: 4,
                max: 10_000
            })]
        );
        let too_long = FrontendCloseReason::Length {
            len: 65_536,
            max: 10_000,
        };
        assert!(too_long.to_string().contains("outside 8..=10000"));
        assert_eq!(run(&[0, 1, 0, 0]), [FrontendOutput::Closed(too_long)]);
        let n = FrontendOutput::Transmit(Bytes::from_static(b"N"));
        assert_eq!(
            run(&SSL_REQUEST.repeat(4)),
            [
                n.clone(),
                n.clone(),
                n,
                FrontendOutput::Closed(FrontendCloseReason::TooManyEncryptionRequests)
            ]
        );
        // Half a packet: nothing yet.
        assert_eq!(run(&[0, 0, 0, 8, 0, 0]), []);
        // A limit below the shortest packet refuses every length, holding no more than the
        // length field.
        let mut f = Frontend::new(
            T0,
            FrontendConfig {
                max_startup_len: 0,
                ..FrontendConfig::default()
            },
        );
        f.handle_input(T0, Bytes::from_static(&[0, 0, 0])).unwrap();
        assert_eq!(f.buffered_len(), 3);
        f.handle_input(T0, Bytes::from_static(&[8, 1])).unwrap();
        assert_eq!(f.buffered_len(), 0);
        assert_eq!(
            f.poll_output(),
            Some(FrontendOutput::Closed(FrontendCloseReason::Length {
                len: 8,
                max: 0
            }))
        );
    }

    fn login_timeout(ms: u64) -> FrontendConfig {
        FrontendConfig {
            login_timeout: Duration::from_millis(ms),
            ..FrontendConfig::default()
        }
    }

    #[test]
    fn a_client_that_does_not_finish_in_time_is_closed() {
        let timed_out = FrontendOutput::Closed(FrontendCloseReason::LoginTimeout);
        let deadline = T0 + Duration::from_millis(500);

        // Silent: nothing before the deadline, closed at it, and nothing more after.
        let mut f = Frontend::new(T0, login_timeout(500));
        assert_eq!(f.poll_timeout(), Some(deadline));
        f.handle_timeout(deadline - Duration::from_nanos(1));
        assert_eq!(f.poll_output(), None);
        f.handle_timeout(deadline);
        assert_eq!(f.poll_output(), Some(timed_out.clone()));
        assert_eq!(f.poll_output(), None);
        assert_eq!(f.poll_timeout(), None);
        assert!(f.is_finished());
        f.handle_timeout(deadline + Duration::from_secs(1));
        assert_eq!(f.poll_output(), None);
        assert_eq!(
            f.handle_input(deadline, Bytes::from_static(&SSL_REQUEST))
                .map_err(|e| e.kind()),
            Err(ErrorKind::Closed)
        );

        // Input does not push the deadline back: an SSLRequest answered, half a startup, closed.
        let startup = build_startup_message([("user", "alice")], 10_000).unwrap();
        let mut f = Frontend::new(T0, login_timeout(500));
        let later = T0 + Duration::from_millis(400);
        f.handle_input(later, Bytes::from_static(&SSL_REQUEST))
            .unwrap();
        f.handle_input(later, startup.slice(..6)).unwrap();
        assert_eq!(f.poll_timeout(), Some(deadline));
        f.handle_timeout(deadline + Duration::from_millis(1));
        assert_eq!(
            core::iter::from_fn(|| f.poll_output()).collect::<Vec<_>>(),
            [
                FrontendOutput::Transmit(Bytes::from_static(b"N")),
                timed_out
            ]
        );
        assert_eq!(f.buffered_len(), 0);

        // Finished in time: no timer, and a late timeout changes nothing.
        let mut f = Frontend::new(T0, login_timeout(500));
        f.handle_input(later, startup.clone()).unwrap();
        assert_eq!(f.poll_timeout(), None);
        f.handle_timeout(deadline);
        assert_eq!(f.poll_output(), Some(FrontendOutput::Startup(startup)));
        assert_eq!(f.poll_output(), None);
    }

    #[test]
    fn time_that_goes_back_is_no_time() {
        let mut f = Frontend::new(T0, login_timeout(500));
        f.handle_input(T0 + Duration::from_millis(499), Bytes::from_static(&[0]))
            .unwrap();
        // A clock stepped back: no time passed, the deadline is where it was.
        f.handle_timeout(Instant::ZERO);
        assert_eq!(f.poll_output(), None);
        assert_eq!(f.poll_timeout(), Some(T0 + Duration::from_millis(500)));
        // A timeout of zero ends at the start; one past the end of time never does.
        let mut f = Frontend::new(T0, login_timeout(0));
        f.handle_timeout(T0);
        assert_eq!(
            f.poll_output(),
            Some(FrontendOutput::Closed(FrontendCloseReason::LoginTimeout))
        );
        let mut f = Frontend::new(
            T0,
            FrontendConfig {
                login_timeout: Duration::MAX,
                ..FrontendConfig::default()
            },
        );
        assert_eq!(f.poll_timeout(), Some(Instant::MAX));
        f.handle_timeout(Instant::from_secs(1 << 30));
        assert_eq!(f.poll_output(), None);
    }

    #[test]
    fn error_responses_parse_back() {
        let e = build_error_response("08006", "weir: no\0backend");
        assert_eq!(e[0], b'E');
        assert_eq!(
            u32::from_be_bytes(e[1..5].try_into().unwrap()) as usize,
            e.len() - 1
        );
        let fields = ErrorFields::parse(&e[5..]).unwrap();
        assert_eq!(fields.get(b'S'), Some("FATAL"));
        assert_eq!(fields.get(b'C'), Some("08006"));
        assert_eq!(fields.get(b'M'), Some("weir: no backend"));
    }
}
