//! Protobuf-style base-128 varints, with Go DRPC's reading rules.

use bytes::BufMut;

use super::WireError;

/// The most bytes a varint may take. Go gives up after ten, even when the buffer ends there.
pub const MAX_VARINT_LEN: usize = 10;

/// The number of bytes `value` takes as a varint (1 to 10).
#[inline]
pub const fn varint_len(value: u64) -> usize {
    // Seven bits per byte; a zero still takes one byte.
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

/// Append `value` as a varint. The caller checks capacity first (see [`varint_len`]).
#[inline]
pub fn put_varint(dst: &mut impl BufMut, mut value: u64) {
    while value >= 0x80 {
        dst.put_u8(value as u8 | 0x80);
        value >>= 7;
    }
    dst.put_u8(value as u8);
}

/// Read a varint from the front of `buf`, as Go's `drpcwire.ReadVarint` does.
///
/// Returns the value and the number of bytes it took, `Ok(None)` when `buf` ends before the varint
/// does (more bytes could complete it), or [`WireError::VarintTooLong`] when ten bytes all carry the
/// continuation bit. Over-long encodings such as `80 00` are accepted, and the upper six bits of a
/// tenth byte are dropped, exactly as in Go.
///
/// ```
/// use weir::mux::wire::{read_varint, WireError};
///
/// assert_eq!(read_varint(&[0xac, 0x02, 0x07]), Ok(Some((300, 2))));
/// assert_eq!(read_varint(&[0x80]), Ok(None));
/// assert_eq!(read_varint(&[0xff; 10]), Err(WireError::VarintTooLong));
/// ```
#[inline]
pub fn read_varint(buf: &[u8]) -> Result<Option<(u64, usize)>, WireError> {
    Ok(split_varint(buf)?.map(|(value, rest)| (value, buf.len() - rest.len())))
}

/// [`read_varint`] returning the bytes after the varint: the form the frame parser uses.
#[inline(always)]
pub(crate) fn split_varint(buf: &[u8]) -> Result<Option<(u64, &[u8])>, WireError> {
    // Ids and lengths below 2^21 take up to three bytes: no loop for them.
    let low = |b: &u8| u64::from(b & 0x7f);
    match buf {
        [b0, rest @ ..] if *b0 < 0x80 => Ok(Some((u64::from(*b0), rest))),
        [b0, b1, rest @ ..] if *b1 < 0x80 => Ok(Some((low(b0) | low(b1) << 7, rest))),
        [b0, b1, b2, rest @ ..] if *b2 < 0x80 => {
            Ok(Some((low(b0) | low(b1) << 7 | low(b2) << 14, rest)))
        }
        _ => split_long_varint(buf),
    }
}

#[cold]
fn split_long_varint(buf: &[u8]) -> Result<Option<(u64, &[u8])>, WireError> {
    let mut value = 0u64;
    for (i, &byte) in buf.iter().take(MAX_VARINT_LEN).enumerate() {
        // At i = 9 the shift is 63: the byte's upper bits fall off, as in Go.
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return Ok(Some((value, buf.get(i + 1..).unwrap_or_default())));
        }
    }
    if buf.len() >= MAX_VARINT_LEN {
        Err(WireError::VarintTooLong)
    } else {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn length_matches_encoding() {
        for shift in 0..64 {
            for value in [(1u64 << shift) - 1, 1u64 << shift] {
                let mut buf = Vec::new();
                put_varint(&mut buf, value);
                assert_eq!(buf.len(), varint_len(value), "value {value}");
                assert_eq!(read_varint(&buf), Ok(Some((value, buf.len()))));
            }
        }
        assert_eq!(varint_len(u64::MAX), 10);
    }

    #[test]
    fn nine_continuation_bytes_are_incomplete_ten_are_too_long() {
        assert_eq!(read_varint(&[0x80; 9]), Ok(None));
        assert_eq!(read_varint(&[0x80; 10]), Err(WireError::VarintTooLong));
    }
}
