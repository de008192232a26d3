//! DRPC-compatible RPC framing.
//!
//! [`wire`] is the codec: frames, packets, varints, error bodies and metadata exactly as the Go
//! implementation writes them. [`session`] is the connection machine on top of it: streams, their
//! lifecycle, and the rules of Go DRPC.
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

pub mod session;
pub mod wire;
