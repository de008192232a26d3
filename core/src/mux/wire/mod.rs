//! The DRPC wire format, byte for byte as Go's `storj.io/drpc` writes and reads it.
//!
//! A frame is `control:u8, stream:varint, message:varint, len:varint, data[len]`, where the control
//! byte packs the kind (bits 1 to 6), the done flag (bit 0) and the control flag (bit 7). A packet
//! is the run of frames with one id that ends with a done frame. Every error names what was wrong
//! and displays as Go's error text (see [`WireError`]).
//!
//! ```
//! use bytes::{Bytes, BytesMut};
//! use weir::mux::wire::{Id, Kind, Packet, PacketLimit, PacketReader, SplitSize};
//!
//! // Encode a 5-byte message as frames of at most 2 bytes...
//! let packet = Packet { kind: Kind::MESSAGE, control: false, id: Id::new(1, 2), data: Bytes::from_static(b"hello") };
//! let mut wire = BytesMut::new();
//! packet.encode(SplitSize::new(2).unwrap(), &mut wire).unwrap();
//! assert_eq!(wire.len(), 3 * 4 + 5);
//!
//! // ...and read it back, as Go's reader would (which starts at stream 1, message 1).
//! let mut reader = PacketReader::compat(PacketLimit::DEFAULT);
//! assert_eq!(reader.read(&mut wire).unwrap(), Some(packet));
//! ```

mod assembler;
mod decoder;
mod error;
mod error_body;
mod frame;
mod kind;
mod metadata;
mod packet;
mod varint;

pub use assembler::{Assembler, MuxLimits, PacketLimit, PacketReader};
pub use decoder::{FrameDecoder, GO_FRAME_OVERHEAD};
pub use error::WireError;
pub use error_body::{ErrorBody, INVALID_ERROR_DATA_NOTE};
pub(crate) use frame::{header_len, put_header};
pub use frame::{parse_frame, Frame, Id, ParsedFrame, MAX_HEADER_LEN};
pub use kind::Kind;
pub use metadata::Metadata;
pub use packet::{Frames, Packet, SplitSize};
pub use varint::{put_varint, read_varint, varint_len, MAX_VARINT_LEN};
