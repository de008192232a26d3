//! DRPC-compatible RPC framing.
//!
//! [`wire`] is the codec: frames, packets, varints, error bodies and metadata exactly as the Go
//! implementation writes them.
//!
//! ```
//! use bytes::BytesMut;
//! use weir::mux::wire::{Frame, FrameDecoder, Id, Kind};
//!
//! let invoke = Frame { kind: Kind::INVOKE, done: true, control: false, id: Id::new(1, 1), data: &b"/echo.Echo/Unary"[..] };
//! let mut wire = BytesMut::new();
//! invoke.encode(&mut wire).unwrap();
//! let decoded = FrameDecoder::default().decode(&mut wire).unwrap().unwrap();
//! assert_eq!(&decoded.data[..], invoke.data);
//! ```

pub mod wire;
