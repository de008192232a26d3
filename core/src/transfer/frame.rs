//! The pgwire framer: message boundaries and types of one direction, without buffering large
//! messages.
//!
//! A [`Framer`] reads the stream one peer writes. It hands out [`Frame`]s that borrow from the
//! caller's input wherever possible: a message that lies whole in the input comes out as one
//! [`Frame::Message`] with no copy; a message split across inputs is assembled in a buffer only
//! if its body is at most the capture limit the caller chose for its type, and otherwise passes
//! through as [`Frame::Begin`] followed by [`Frame::Part`]s. Every length is checked against the
//! limits before a byte is buffered.
//!
//! ```
//! use weir::transfer::frame::{Frame, Framer, FramerLimits, Side};
//!
//! let mut framer = Framer::new(Side::Backend, FramerLimits::default());
//! // ReadyForQuery, idle, in one input.
//! let input = [b'Z', 0, 0, 0, 5, b'I'];
//! let mut pos = 0;
//! match framer.next(&input, &mut pos, |_| 0).unwrap() {
//!     Some(Frame::Message { tag, body, .. }) => assert_eq!((tag, body), (b'Z', &b"I"[..])),
//!     other => panic!("unexpected {other:?}"),
//! }
//! assert_eq!(pos, input.len());
//! assert!(framer.at_boundary());
//! ```

use alloc::vec::Vec;
use core::ops::Range;

use super::error::FrameError;

/// The startup code of protocol 3.0 (`196608`); any 3.x minor version is accepted.
pub const PROTOCOL_3_0: u32 = 196_608;
/// The code of an SSLRequest.
pub const SSL_REQUEST_CODE: u32 = 80_877_103;
/// The code of a GSSENCRequest.
pub const GSSENC_REQUEST_CODE: u32 = 80_877_104;
/// The code of a CancelRequest.
pub const CANCEL_REQUEST_CODE: u32 = 80_877_102;

/// Which peer writes the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Side {
    /// The client: starts with untyped startup packets.
    Frontend,
    /// The server: typed messages from the first byte (or a one-byte encryption answer when
    /// told to expect one).
    Backend,
}

/// Length limits, checked before anything is buffered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct FramerLimits {
    /// Largest typed message, counting its length field. Default `i32::MAX`, the wire maximum:
    /// large messages pass through in pieces, so this bounds nothing in memory.
    pub max_message_len: u32,
    /// Largest startup packet, counting its length field. Default 10 000, PostgreSQL's own
    /// limit. Startup packets are always assembled whole.
    pub max_startup_len: u32,
}

impl Default for FramerLimits {
    fn default() -> Self {
        FramerLimits {
            max_message_len: i32::MAX as u32,
            max_startup_len: 10_000,
        }
    }
}

/// One step through the stream.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// A whole startup-phase packet: `body` is the code followed by its payload.
    Startup {
        /// Code and payload (the length field is not included).
        body: &'a [u8],
    },
    /// The one-byte answer to an SSLRequest or GSSENCRequest: `S`, `G` or `N`.
    EncryptionAnswer(u8),
    /// A whole typed message.
    Message {
        /// The type byte.
        tag: u8,
        /// The body (after the length field).
        body: &'a [u8],
        /// Where the whole message, header included, lies in the input, if it came in one piece;
        /// `None` if it was assembled from several inputs.
        raw: Option<Range<usize>>,
    },
    /// The header of a message whose body follows as [`Frame::Part`]s.
    Begin {
        /// The type byte.
        tag: u8,
        /// The body length.
        body_len: u32,
    },
    /// A piece of the body of the current streamed message.
    Part {
        /// Where the piece lies in the input.
        range: Range<usize>,
        /// Whether this piece ends the message.
        last: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Frontend before the StartupMessage: untyped packets.
    Startup,
    /// Assembling a startup packet body of this length.
    StartupBody(usize),
    /// Backend: the next byte answers an encryption request.
    EncryptionAnswer,
    /// Between typed messages (or inside a header).
    Header,
    /// Assembling a typed message body.
    Capture { tag: u8, body_len: usize },
    /// Streaming a typed message body.
    Stream { tag: u8, remaining: usize },
    /// The stream carries no more pgwire messages.
    Ended,
}

/// Tracks message boundaries and types in one direction. See the [module docs](self).
#[derive(Debug, Clone)]
pub struct Framer {
    state: State,
    head: [u8; 5],
    head_len: usize,
    buf: Vec<u8>,
    limits: FramerLimits,
}

impl Framer {
    /// A framer for the stream `side` writes, from its first byte.
    pub fn new(side: Side, limits: FramerLimits) -> Framer {
        let state = match side {
            Side::Frontend => State::Startup,
            Side::Backend => State::Header,
        };
        Framer {
            state,
            head: [0; 5],
            head_len: 0,
            buf: Vec::new(),
            limits,
        }
    }

    /// A frontend framer past the startup phase (typed messages from the first byte).
    pub fn frontend_typed(limits: FramerLimits) -> Framer {
        let mut framer = Framer::new(Side::Frontend, limits);
        framer.state = State::Header;
        framer
    }

    /// Tell a backend framer that the next byte answers an SSLRequest or GSSENCRequest. Has no
    /// effect unless the framer is between messages.
    pub fn expect_encryption_answer(&mut self) {
        if self.at_boundary() && self.state == State::Header {
            self.state = State::EncryptionAnswer;
        }
    }

    /// Whether the stream is between two messages (no partial header or body consumed).
    pub fn at_boundary(&self) -> bool {
        self.head_len == 0
            && matches!(
                self.state,
                State::Startup | State::Header | State::EncryptionAnswer | State::Ended
            )
    }

    /// Whether the startup phase is over (typed messages are flowing).
    pub fn is_typed(&self) -> bool {
        matches!(
            self.state,
            State::Header | State::Capture { .. } | State::Stream { .. }
        )
    }

    /// Bytes consumed but not yet handed out in a frame: a partial header, or the header and
    /// body so far of a message being assembled.
    pub fn buffered_len(&self) -> usize {
        match self.state {
            State::Capture { .. } => 5 + self.buf.len(),
            State::StartupBody(_) => 4 + self.buf.len(),
            _ => self.head_len,
        }
    }

    /// Capacity of the framer's buffers, for memory accounting.
    pub fn buffer_capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// Read the next frame from `input[*pos..]`, advancing `*pos` past what it consumed.
    ///
    /// `capture(tag)` is the largest body of type `tag` to assemble whole when it is split across
    /// inputs; longer bodies come out as [`Frame::Begin`] and [`Frame::Part`]s. Returns `None`
    /// once the input is used up (a partial header or a captured body is kept for the next
    /// call). After an error the framer must not be used again.
    pub fn next<'s, F>(
        &'s mut self,
        input: &'s [u8],
        pos: &mut usize,
        capture: F,
    ) -> Result<Option<Frame<'s>>, FrameError>
    where
        F: Fn(u8) -> u32,
    {
        loop {
            let rest = input.get(*pos..).unwrap_or_default();
            match self.state {
                State::Header => {
                    let (tag, len) = if self.head_len == 0 && rest.len() >= 5 {
                        let (tag, len) = split_header(rest);
                        let body_len = self.check_len(tag, len)?;
                        if rest.len() - 5 >= body_len {
                            let start = *pos;
                            *pos += 5 + body_len;
                            let body = input.get(start + 5..*pos).unwrap_or_default();
                            return Ok(Some(Frame::Message {
                                tag,
                                body,
                                raw: Some(start..*pos),
                            }));
                        }
                        *pos += 5;
                        (tag, len)
                    } else {
                        if rest.is_empty() {
                            return Ok(None);
                        }
                        let take = (5 - self.head_len).min(rest.len());
                        self.head[self.head_len..self.head_len + take]
                            .copy_from_slice(&rest[..take]);
                        self.head_len += take;
                        *pos += take;
                        if self.head_len < 5 {
                            return Ok(None);
                        }
                        self.head_len = 0;
                        split_header(&self.head)
                    };
                    let body_len = self.check_len(tag, len)?;
                    if body_len == 0 {
                        return Ok(Some(Frame::Message {
                            tag,
                            body: &[],
                            raw: None,
                        }));
                    }
                    if body_len <= capture(tag) as usize {
                        self.buf.clear();
                        self.buf.reserve(body_len);
                        self.state = State::Capture { tag, body_len };
                    } else {
                        self.state = State::Stream {
                            tag,
                            remaining: body_len,
                        };
                        return Ok(Some(Frame::Begin {
                            tag,
                            body_len: body_len as u32,
                        }));
                    }
                }
                State::Capture { tag, body_len } => {
                    let take = (body_len - self.buf.len()).min(rest.len());
                    self.buf.extend_from_slice(&rest[..take]);
                    *pos += take;
                    if self.buf.len() < body_len {
                        return Ok(None);
                    }
                    self.state = State::Header;
                    return Ok(Some(Frame::Message {
                        tag,
                        body: &self.buf,
                        raw: None,
                    }));
                }
                State::Stream { tag, remaining } => {
                    if rest.is_empty() {
                        return Ok(None);
                    }
                    let take = remaining.min(rest.len());
                    let range = *pos..*pos + take;
                    *pos += take;
                    let last = take == remaining;
                    self.state = if last {
                        State::Header
                    } else {
                        State::Stream {
                            tag,
                            remaining: remaining - take,
                        }
                    };
                    return Ok(Some(Frame::Part { range, last }));
                }
                State::Startup => {
                    if rest.is_empty() {
                        return Ok(None);
                    }
                    let take = (4 - self.head_len).min(rest.len());
                    self.head[self.head_len..self.head_len + take].copy_from_slice(&rest[..take]);
                    self.head_len += take;
                    *pos += take;
                    if self.head_len < 4 {
                        return Ok(None);
                    }
                    self.head_len = 0;
                    let len = u32::from_be_bytes([
                        self.head[0],
                        self.head[1],
                        self.head[2],
                        self.head[3],
                    ]);
                    if len < 8 {
                        return Err(FrameError::StartupTooShort { len });
                    }
                    if len > self.limits.max_startup_len {
                        return Err(FrameError::StartupTooLong {
                            len,
                            max: self.limits.max_startup_len,
                        });
                    }
                    self.buf.clear();
                    self.buf.reserve(len as usize - 4);
                    self.state = State::StartupBody(len as usize - 4);
                }
                State::StartupBody(body_len) => {
                    let take = (body_len - self.buf.len()).min(rest.len());
                    self.buf.extend_from_slice(&rest[..take]);
                    *pos += take;
                    if self.buf.len() < body_len {
                        return Ok(None);
                    }
                    let code = match self.buf.first_chunk::<4>() {
                        Some(code) => u32::from_be_bytes(*code),
                        None => return Err(FrameError::StartupTooShort { len: 4 }),
                    };
                    self.state = match code {
                        SSL_REQUEST_CODE | GSSENC_REQUEST_CODE => State::Startup,
                        CANCEL_REQUEST_CODE => State::Ended,
                        code if code >> 16 == 3 => State::Header,
                        code => return Err(FrameError::UnsupportedStartupCode { code }),
                    };
                    return Ok(Some(Frame::Startup { body: &self.buf }));
                }
                State::EncryptionAnswer => {
                    let Some(&byte) = rest.first() else {
                        return Ok(None);
                    };
                    match byte {
                        b'S' | b'G' => {
                            *pos += 1;
                            self.state = State::Ended;
                            return Ok(Some(Frame::EncryptionAnswer(byte)));
                        }
                        b'N' => {
                            *pos += 1;
                            self.state = State::Header;
                            return Ok(Some(Frame::EncryptionAnswer(byte)));
                        }
                        // A server that refuses the request outright answers with an
                        // ErrorResponse, which is an ordinary typed message.
                        b'E' => self.state = State::Header,
                        byte => return Err(FrameError::InvalidEncryptionAnswer { byte }),
                    }
                }
                State::Ended => {
                    return if rest.is_empty() {
                        Ok(None)
                    } else {
                        Err(FrameError::AfterEnd)
                    };
                }
            }
        }
    }

    fn check_len(&self, tag: u8, len: u32) -> Result<usize, FrameError> {
        if len < 4 {
            return Err(FrameError::LengthTooShort { tag, len });
        }
        let max = self.limits.max_message_len.min(i32::MAX as u32);
        if len > max {
            return Err(FrameError::MessageTooLong { tag, len, max });
        }
        Ok(len as usize - 4)
    }
}

fn split_header(head: &[u8]) -> (u8, u32) {
    match head.first_chunk::<5>() {
        Some([tag, a, b, c, d]) => (*tag, u32::from_be_bytes([*a, *b, *c, *d])),
        None => (0, 0),
    }
}

/// The five header bytes of a typed message with a body of `body_len` bytes.
pub fn header(tag: u8, body_len: u32) -> [u8; 5] {
    let [a, b, c, d] = body_len.saturating_add(4).to_be_bytes();
    [tag, a, b, c, d]
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn collect(framer: &mut Framer, input: &[u8], capture: u32) -> Vec<String> {
        let mut out = Vec::new();
        let mut pos = 0;
        while let Some(frame) = framer.next(input, &mut pos, |_| capture).unwrap() {
            out.push(alloc::format!("{frame:?}"));
        }
        assert_eq!(pos, input.len());
        out
    }
    use alloc::string::String;

    #[test]
    fn whole_messages_borrow_the_input() {
        let mut framer = Framer::new(Side::Backend, FramerLimits::default());
        let input = [b'C', 0, 0, 0, 6, b'x', 0, b'Z', 0, 0, 0, 5, b'I'];
        let mut pos = 0;
        let first = framer.next(&input, &mut pos, |_| 0).unwrap();
        assert_eq!(
            first,
            Some(Frame::Message {
                tag: b'C',
                body: b"x\0",
                raw: Some(0..7)
            })
        );
        let second = framer.next(&input, &mut pos, |_| 0).unwrap();
        assert!(matches!(
            second,
            Some(Frame::Message {
                tag: b'Z',
                raw: Some(_),
                ..
            })
        ));
        assert_eq!(framer.next(&input, &mut pos, |_| 0).unwrap(), None);
    }

    #[test]
    fn split_messages_are_captured_or_streamed() {
        let msg = [b'D', 0, 0, 0, 8, 1, 2, 3, 4];
        for split in 0..msg.len() {
            let mut captured = Framer::new(Side::Backend, FramerLimits::default());
            let mut frames = collect(&mut captured, &msg[..split], 100);
            frames.extend(collect(&mut captured, &msg[split..], 100));
            let whole = if split == 0 { Some(0..9) } else { None };
            assert_eq!(
                frames,
                vec![alloc::format!(
                    "{:?}",
                    Frame::Message {
                        tag: b'D',
                        body: &[1, 2, 3, 4],
                        raw: whole
                    }
                )]
            );
            assert!(captured.at_boundary());

            let mut streamed = Framer::new(Side::Backend, FramerLimits::default());
            let mut pieces = 0;
            for chunk in [&msg[..split], &msg[split..]] {
                let mut pos = 0;
                while let Some(frame) = streamed.next(chunk, &mut pos, |_| 0).unwrap() {
                    match frame {
                        Frame::Part { range, .. } => pieces += range.len(),
                        Frame::Begin { tag, body_len } => assert_eq!((tag, body_len), (b'D', 4)),
                        Frame::Message { body, .. } => pieces += body.len(),
                        other => panic!("{other:?}"),
                    }
                }
            }
            assert_eq!(pieces, 4);
            assert!(streamed.at_boundary());
        }
    }

    /// Found by the `transfer_framer` fuzz target: the header of a message being assembled was
    /// consumed but counted nowhere.
    #[test]
    fn consumed_bytes_are_handed_out_or_buffered() {
        let mut framer = Framer::new(Side::Backend, FramerLimits::default());
        let mut pos = 0;
        let input = [b'N', 0, 0, 5, 7];
        assert_eq!(framer.next(&input, &mut pos, |_| 19_973), Ok(None));
        assert_eq!(pos, 5);
        assert_eq!(framer.buffered_len(), 5);
        let mut client = Framer::new(Side::Frontend, FramerLimits::default());
        let mut pos = 0;
        assert_eq!(client.next(&[0, 0, 0, 9, 0], &mut pos, |_| 0), Ok(None));
        assert_eq!(client.buffered_len(), 5);
    }

    #[test]
    fn lengths_are_checked_before_buffering() {
        let limits = FramerLimits {
            max_message_len: 100,
            ..FramerLimits::default()
        };
        let mut framer = Framer::new(Side::Backend, limits);
        let mut pos = 0;
        let err = framer.next(&[b'D', 0, 0, 1, 0], &mut pos, |_| u32::MAX);
        assert_eq!(
            err,
            Err(FrameError::MessageTooLong {
                tag: b'D',
                len: 256,
                max: 100
            })
        );
        assert_eq!(framer.buffer_capacity(), 0);
        let mut framer = Framer::new(Side::Backend, limits);
        let mut pos = 0;
        let err = framer.next(&[b'D', 0, 0, 0, 3], &mut pos, |_| 0);
        assert_eq!(err, Err(FrameError::LengthTooShort { tag: b'D', len: 3 }));
        let mut framer = Framer::new(Side::Backend, FramerLimits::default());
        let mut pos = 0;
        let err = framer.next(&[b'D', 0x80, 0, 0, 0], &mut pos, |_| 0);
        assert!(matches!(err, Err(FrameError::MessageTooLong { .. })));
    }

    #[test]
    fn startup_phase_and_encryption_answer() {
        let mut client = Framer::new(Side::Frontend, FramerLimits::default());
        let ssl = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
        let frames = collect(&mut client, &ssl, 0);
        assert_eq!(frames.len(), 1);
        assert!(!client.is_typed());
        let mut server = Framer::new(Side::Backend, FramerLimits::default());
        server.expect_encryption_answer();
        let mut pos = 0;
        assert_eq!(
            server.next(b"N", &mut pos, |_| 0).unwrap(),
            Some(Frame::EncryptionAnswer(b'N'))
        );
        let startup = [0, 0, 0, 9, 0, 3, 0, 0, 0];
        collect(&mut client, &startup, 0);
        assert!(client.is_typed());

        let mut pos = 0;
        let mut server = Framer::new(Side::Backend, FramerLimits::default());
        server.expect_encryption_answer();
        assert_eq!(
            server.next(b"S\x16", &mut pos, |_| 0).unwrap(),
            Some(Frame::EncryptionAnswer(b'S'))
        );
        assert_eq!(
            server.next(b"S\x16", &mut pos, |_| 0),
            Err(FrameError::AfterEnd)
        );

        let mut client = Framer::new(Side::Frontend, FramerLimits::default());
        let mut pos = 0;
        let err = client.next(&[0x16, 3, 1, 0], &mut pos, |_| 0);
        assert!(matches!(err, Err(FrameError::StartupTooLong { .. })));
    }
}
