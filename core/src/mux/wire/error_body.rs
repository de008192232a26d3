//! The data of an Error packet: an 8-byte big-endian code, then the message text.

use bytes::{BufMut, Bytes, BytesMut};

use super::WireError;

/// What Go appends to the raw bytes of an Error body too short to hold a code.
pub const INVALID_ERROR_DATA_NOTE: &str = " (drpcwire note: invalid error data)";

/// The code and message an Error packet carries.
///
/// ```
/// use bytes::Bytes;
/// use weir::mux::wire::ErrorBody;
///
/// let body = ErrorBody::new(7, "boom");
/// let mut wire = Vec::new();
/// body.encode(&mut wire).unwrap();
/// assert_eq!(wire, b"\0\0\0\0\0\0\0\x07boom");
/// assert_eq!(ErrorBody::decode(Bytes::from(wire)), body);
///
/// // Go does not fail on a body shorter than 8 bytes: the whole body becomes the message, code 0.
/// let short = ErrorBody::decode(Bytes::from_static(b"oops"));
/// assert_eq!((short.code, &short.message[..]), (0, &b"oops (drpcwire note: invalid error data)"[..]));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorBody {
    /// The application's error code; 0 means "no code".
    pub code: u64,
    /// The error text: bytes, because a Go peer may send text that is not UTF-8.
    pub message: Bytes,
}

impl ErrorBody {
    /// A body with this code and message.
    pub fn new(code: u64, message: impl Into<Bytes>) -> ErrorBody {
        ErrorBody {
            code,
            message: message.into(),
        }
    }

    /// The number of bytes [`ErrorBody::encode`] writes.
    pub fn encoded_len(&self) -> usize {
        8 + self.message.len()
    }

    /// Append the body to `dst`, or write nothing and fail if `dst` lacks room.
    pub fn encode(&self, dst: &mut impl BufMut) -> Result<(), WireError> {
        let needed = self.encoded_len();
        let available = dst.remaining_mut();
        if available < needed {
            return Err(WireError::BufferTooSmall { needed, available });
        }
        dst.put_u64(self.code);
        dst.put_slice(&self.message);
        Ok(())
    }

    /// Read a body as Go's `UnmarshalError` does; this never fails.
    ///
    /// A body of 8 bytes or more splits into code and message without copying. A shorter one keeps
    /// all its bytes as the message, followed by [`INVALID_ERROR_DATA_NOTE`], with code 0.
    pub fn decode(data: Bytes) -> ErrorBody {
        match data.get(..8) {
            Some(code) => {
                let mut be = [0u8; 8];
                be.copy_from_slice(code);
                ErrorBody {
                    code: u64::from_be_bytes(be),
                    message: data.slice(8..),
                }
            }
            None => {
                let mut message =
                    BytesMut::with_capacity(data.len() + INVALID_ERROR_DATA_NOTE.len());
                message.extend_from_slice(&data);
                message.extend_from_slice(INVALID_ERROR_DATA_NOTE.as_bytes());
                ErrorBody {
                    code: 0,
                    message: message.freeze(),
                }
            }
        }
    }
}
