//! Incremental frame decoding from a growing receive buffer.

use bytes::{Buf, BytesMut};

use super::frame::parse_header;
use super::{Frame, WireError};

/// Takes bytes as they arrive, in any chunking, and returns whole frames whose data is a slice of
/// the receive buffer: no copy.
///
/// The caller appends what it reads to a [`BytesMut`] and calls [`FrameDecoder::decode`] until it
/// returns `Ok(None)`. Decoding splits each frame off the front of that buffer.
///
/// Memory is bounded by `max_frame_size`: the decoder never asks for more room than that, and once
/// more than `max_frame_size` bytes are buffered without completing a frame it fails with
/// [`WireError::FrameTooLarge`]. Like Go's reader it does not fail on an announced length alone, so
/// a stream that ends in the middle of an oversized frame ends cleanly, as in Go.
///
/// ```
/// use bytes::BytesMut;
/// use weir::mux::wire::{FrameDecoder, Kind};
///
/// let mut decoder = FrameDecoder::default();
/// let mut received = BytesMut::from(&[0x05, 0x01, 0x01, 0x03, b'a'][..]);
/// assert_eq!(decoder.decode(&mut received), Ok(None));
/// received.extend_from_slice(b"bc");
/// let frame = decoder.decode(&mut received).unwrap().unwrap();
/// assert_eq!((frame.kind, &frame.data[..]), (Kind::MESSAGE, &b"abc"[..]));
/// assert!(received.is_empty());
/// ```
#[derive(Clone, Debug)]
pub struct FrameDecoder {
    max_frame_size: usize,
}

impl FrameDecoder {
    /// The default bound: Go's default 4 MiB packet plus its 28-byte frame allowance.
    pub const DEFAULT_MAX_FRAME_SIZE: usize = (4 << 20) + GO_FRAME_OVERHEAD;

    /// A decoder that holds at most `max_frame_size` bytes of an unfinished frame.
    pub const fn new(max_frame_size: usize) -> FrameDecoder {
        FrameDecoder { max_frame_size }
    }

    /// The bound this decoder was built with.
    pub const fn max_frame_size(&self) -> usize {
        self.max_frame_size
    }

    /// Split the next whole frame off the front of `src`, or return `Ok(None)` until one is there.
    ///
    /// After an error the stream is broken: the bytes in `src` are left as they were.
    #[inline]
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, WireError> {
        // Look at no more than a byte past the bound, so that the error a stream gets is the
        // first one its bytes reveal (a too-long varint, or the bound), however they arrive.
        let visible = src.len().min(self.max_frame_size.saturating_add(1));
        let Some(header) = parse_header(src.get(..visible).unwrap_or_default())? else {
            return self.incomplete(src, 0);
        };
        let size = (header.len as u64).saturating_add(header.data_len);
        // A frame over the bound is refused even when all of it is here, as Go's reader cannot
        // complete one without buffering past its bound either.
        if size > src.len() as u64 || size > self.max_frame_size as u64 {
            return self.incomplete(src, size);
        }
        // `size <= src.len()`, a usize: the cast is exact. Advancing the frozen frame past its
        // header is a pointer bump; advancing the receive buffer costs more.
        let mut data = src.split_to(size as usize).freeze();
        data.advance(header.len);
        Ok(Some(Frame {
            kind: header.kind,
            done: header.done,
            control: header.control,
            id: header.id,
            data,
        }))
    }

    /// No frame to hand out yet: fail past the bound, else make room for the frame if its size is
    /// known.
    fn incomplete(&self, src: &mut BytesMut, frame_size: u64) -> Result<Option<Frame>, WireError> {
        if src.len() > self.max_frame_size {
            return Err(WireError::FrameTooLarge {
                max: self.max_frame_size,
            });
        }
        // Reserve only up to the bound plus one byte, the most that can be buffered before failing.
        let wanted = frame_size.min(self.max_frame_size as u64 + 1) as usize;
        src.reserve(wanted.saturating_sub(src.len()));
        Ok(None)
    }
}

impl Default for FrameDecoder {
    fn default() -> FrameDecoder {
        FrameDecoder::new(FrameDecoder::DEFAULT_MAX_FRAME_SIZE)
    }
}

/// The header allowance Go's reader grants on top of its packet limit (1 control byte and three
/// 9-byte varints) before it declares its read buffer overflowed.
pub const GO_FRAME_OVERHEAD: usize = 1 + 9 + 9 + 9;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_oversized_frame_fails_only_once_the_bound_is_passed() {
        let mut decoder = FrameDecoder::new(8);
        // Announces 100 bytes of data.
        let mut src = BytesMut::from(&[0x04, 0x01, 0x01, 100, 0, 0, 0, 0][..]);
        assert_eq!(decoder.decode(&mut src), Ok(None));
        assert!(src.capacity() <= 64, "reserved {} bytes", src.capacity());
        src.extend_from_slice(&[0]);
        assert_eq!(
            decoder.decode(&mut src),
            Err(WireError::FrameTooLarge { max: 8 })
        );
    }

    #[test]
    fn the_error_does_not_depend_on_chunking_when_the_bound_comes_first() {
        // Found by fuzzing: with a 27-byte bound, this header's third varint is too long only at
        // its 30th byte, so the bound is what the stream reveals first, whole or byte by byte.
        let input = [
            0xff, 0xff, 0xff, 0xff, 0xb2, 0xff, 0xff, 0xff, 0xff, 0x01, 0xff, 0xff, 0xff, 0xff,
            0xff, 0xff, 0xff, 0xff, 0xff, 0x63, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfa,
            0x81, 0xff, 0xff,
        ];
        let whole = FrameDecoder::new(27).decode(&mut BytesMut::from(&input[..]));
        let mut decoder = FrameDecoder::new(27);
        let mut buf = BytesMut::new();
        let mut bytewise = Ok(None);
        for byte in input {
            buf.extend_from_slice(&[byte]);
            bytewise = decoder.decode(&mut buf);
            if bytewise.is_err() {
                break;
            }
        }
        assert_eq!(whole, Err(WireError::FrameTooLarge { max: 27 }));
        assert_eq!(bytewise, whole);
    }

    #[test]
    fn an_announced_length_of_2_pow_64_is_only_incomplete() {
        let mut decoder = FrameDecoder::default();
        let mut src = BytesMut::from(
            &[
                0x05, 1, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
            ][..],
        );
        assert_eq!(decoder.decode(&mut src), Ok(None));
        assert!(src.capacity() <= FrameDecoder::DEFAULT_MAX_FRAME_SIZE + 1);
    }
}
