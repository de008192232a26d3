//! DRPC-compatible RPC framing.
//!
//! [`wire`] is the codec: frames, packets, varints, error bodies and metadata exactly as the Go
//! implementation writes them. [`session`] is the connection machine on top of it: streams, their
//! lifecycle, and the rules of Go DRPC.
//!
//! ```
//! use bytes::BytesMut;
//! use weir::mux::session::{Config, Output, Role, Session};
//! use weir::mux::wire::{FrameDecoder, Kind, Metadata};
//! use weir::time::Instant;
//!
//! // A client session opens a stream: its Invoke comes out as bytes to write.
//! let mut client = Session::new(Role::Client, Config::default());
//! let stream = client.open_stream(Instant::ZERO, "/echo.Echo/Unary", &Metadata::new()).unwrap();
//! let Some(Output::Transmit(bytes)) = client.poll_output() else { panic!("no bytes") };
//! assert_eq!(client.poll_output(), None);
//!
//! // The codec reads them back: one Invoke frame naming the rpc.
//! let mut wire = BytesMut::from(&bytes[..]);
//! let invoke = FrameDecoder::default().decode(&mut wire).unwrap().unwrap();
//! assert_eq!((invoke.kind, invoke.id.stream), (Kind::INVOKE, stream));
//! assert_eq!(&invoke.data[..], b"/echo.Echo/Unary");
//! ```

pub mod session;
pub mod wire;
