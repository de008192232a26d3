//! Frames: `control:u8, stream:varint, message:varint, len:varint, data[len]`.

use core::fmt;

use bytes::{BufMut, Bytes};

use super::varint::{put_varint, split_varint, varint_len};
use super::{Kind, WireError};

const DONE_BIT: u8 = 0b0000_0001;
const CONTROL_BIT: u8 = 0b1000_0000;
const KIND_BITS: u8 = 0b0111_1110;

/// The most bytes a frame header takes: a control byte and three ten-byte varints.
pub const MAX_HEADER_LEN: usize = 1 + 3 * 10;

/// A (stream, message) pair, ordered by stream first, as Go's `drpcwire.ID`.
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Id {
    /// The stream; a client numbers its streams from 1.
    pub stream: u64,
    /// The packet within the stream; each side numbers the packets it sends from 1.
    pub message: u64,
}

impl Id {
    /// The id `(stream, message)`.
    pub const fn new(stream: u64, message: u64) -> Id {
        Id { stream, message }
    }
}

impl fmt::Display for Id {
    /// `<id s:S m:M>`, as Go prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<id s:{} m:{}>", self.stream, self.message)
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// One frame. `D` is the data: [`Bytes`] when the frame owns a slice of a received buffer, `&[u8]`
/// when it borrows one (see [`parse_frame`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Frame<D = Bytes> {
    /// The kind of the packet this frame belongs to.
    pub kind: Kind,
    /// Set on the last frame of a packet.
    pub done: bool,
    /// The control bit: set on frames a peer may ignore if it does not know their kind.
    pub control: bool,
    /// The packet this frame belongs to.
    pub id: Id,
    /// This frame's share of the packet data.
    pub data: D,
}

impl<D: AsRef<[u8]>> Frame<D> {
    /// The number of bytes [`Frame::encode`] writes.
    pub fn encoded_len(&self) -> usize {
        header_len(self.id, self.data.as_ref().len()) + self.data.as_ref().len()
    }

    /// Append the frame to `dst`, or write nothing and fail if `dst` lacks room.
    ///
    /// The kind is not masked, as in Go's `AppendFrame`: a kind of 64 or more spills into the
    /// control bit. Kinds the decoder produces are always below 64.
    pub fn encode(&self, dst: &mut impl BufMut) -> Result<(), WireError> {
        let needed = self.encoded_len();
        let available = dst.remaining_mut();
        if available < needed {
            return Err(WireError::BufferTooSmall { needed, available });
        }
        put_header(
            dst,
            self.kind,
            self.done,
            self.control,
            self.id,
            self.data.as_ref().len(),
        );
        dst.put_slice(self.data.as_ref());
        Ok(())
    }
}

/// The length of a frame header for this id and data length.
#[inline]
pub(crate) fn header_len(id: Id, data_len: usize) -> usize {
    1 + varint_len(id.stream) + varint_len(id.message) + varint_len(data_len as u64)
}

/// Write a frame header; the caller has checked the room.
#[inline]
pub(crate) fn put_header(
    dst: &mut impl BufMut,
    kind: Kind,
    done: bool,
    control: bool,
    id: Id,
    data_len: usize,
) {
    let mut byte = kind.0 << 1;
    if done {
        byte |= DONE_BIT;
    }
    if control {
        byte |= CONTROL_BIT;
    }
    dst.put_u8(byte);
    put_varint(dst, id.stream);
    put_varint(dst, id.message);
    put_varint(dst, data_len as u64);
}

/// A parsed frame header and what it announces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub kind: Kind,
    pub done: bool,
    pub control: bool,
    pub id: Id,
    /// The announced data length: not yet checked against anything.
    pub data_len: u64,
    /// The bytes the header itself took.
    pub len: usize,
}

/// Parse a frame header from the front of `buf`, or `Ok(None)` if `buf` is too short.
///
/// Like Go's `ParseFrame`, nothing is looked at before four bytes are there (the smallest frame).
#[inline(always)]
pub(crate) fn parse_header(buf: &[u8]) -> Result<Option<Header>, WireError> {
    let [control, rest @ ..] = buf else {
        return Ok(None);
    };
    if buf.len() < 4 {
        return Ok(None);
    }
    let Some((stream, rest)) = split_varint(rest)? else {
        return Ok(None);
    };
    let Some((message, rest)) = split_varint(rest)? else {
        return Ok(None);
    };
    let Some((data_len, rest)) = split_varint(rest)? else {
        return Ok(None);
    };
    Ok(Some(Header {
        kind: Kind((control & KIND_BITS) >> 1),
        done: control & DONE_BIT != 0,
        control: control & CONTROL_BIT != 0,
        id: Id { stream, message },
        data_len,
        len: buf.len() - rest.len(),
    }))
}

/// A frame borrowed from a buffer, and the number of bytes it took there.
pub type ParsedFrame<'a> = (Frame<&'a [u8]>, usize);

/// Parse one whole frame from the front of `buf` without copying, as Go's `ParseFrame` does.
///
/// Returns the frame, borrowing its data from `buf`, and the number of bytes it took; `Ok(None)`
/// when `buf` does not yet hold a whole frame (an announced length larger than what is there, even
/// 2^64-1, only means "not yet"); or [`WireError::VarintTooLong`].
///
/// ```
/// use weir::mux::wire::{parse_frame, Id, Kind};
///
/// let wire = [0x05, 0x01, 0x02, 0x02, b'h', b'i', 0xde, 0xad];
/// let (frame, used) = parse_frame(&wire).unwrap().unwrap();
/// assert_eq!((frame.kind, frame.done, frame.id), (Kind::MESSAGE, true, Id::new(1, 2)));
/// assert_eq!((frame.data, used), (&b"hi"[..], 6));
/// assert_eq!(parse_frame(&wire[..5]), Ok(None));
/// ```
#[inline]
pub fn parse_frame(buf: &[u8]) -> Result<Option<ParsedFrame<'_>>, WireError> {
    let Some(header) = parse_header(buf)? else {
        return Ok(None);
    };
    let rest = buf.get(header.len..).unwrap_or_default();
    let Some(data) = usize::try_from(header.data_len)
        .ok()
        .and_then(|len| rest.get(..len))
    else {
        return Ok(None);
    };
    let frame = Frame {
        kind: header.kind,
        done: header.done,
        control: header.control,
        id: header.id,
        data,
    };
    Ok(Some((frame, header.len + data.len())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn encode_refuses_a_short_buffer_and_writes_nothing() {
        let frame = Frame {
            kind: Kind::MESSAGE,
            done: true,
            control: false,
            id: Id::new(1, 1),
            data: &b"hello"[..],
        };
        let mut room = [0u8; 8];
        let mut dst = &mut room[..];
        assert_eq!(
            frame.encode(&mut dst),
            Err(WireError::BufferTooSmall {
                needed: 9,
                available: 8
            })
        );
        assert_eq!(room, [0; 8]);
    }

    #[test]
    fn a_tenth_varint_byte_keeps_only_its_low_bit() {
        // Found by fuzzing: Go drops the upper bits of a tenth varint byte, so this frame's stream
        // id re-encodes with 0x01 where the input had 0x03.
        let input = [5, 255, 255, 255, 255, 255, 255, 255, 255, 128, 3, 5, 1, 1];
        let (frame, used) = parse_frame(&input).unwrap().unwrap();
        assert_eq!(
            (frame.id, frame.data, used),
            (Id::new(0x80ff_ffff_ffff_ffff, 5), &[1][..], input.len())
        );
        let mut wire = Vec::new();
        frame.encode(&mut wire).unwrap();
        assert_eq!(
            wire,
            [5, 255, 255, 255, 255, 255, 255, 255, 255, 128, 1, 5, 1, 1]
        );
        assert_eq!(parse_frame(&wire).unwrap().unwrap().0, frame);
    }

    #[test]
    fn a_kind_of_64_spills_into_the_control_bit() {
        let mut out = Vec::new();
        let frame = Frame {
            kind: Kind(64),
            id: Id::new(1, 1),
            data: &[][..],
            ..Frame::default()
        };
        frame.encode(&mut out).unwrap();
        assert_eq!(out, [0x80, 1, 1, 0]);
    }
}
