//! weir: sans-IO protocol cores for distributed SQL plumbing.
//!
//! Every machine in this crate takes bytes and events in and gives actions out. It never reads a
//! socket, a clock or a random number generator: the caller passes time in as a [`time::Instant`],
//! feeds input through `handle_*` methods and drains output through `poll_*` methods until they
//! return `None`.
//!
//! The crate is `#![no_std]` with `alloc`; the `std` feature (on by default) only adds
//! `std::error::Error` implementations.
//!
//! # Modules
//!
//! [`mux`]: DRPC framing, byte for byte as the Go implementation writes it.
//!
//! ```
//! use bytes::BytesMut;
//! use weir::mux::wire::{Kind, PacketLimit, PacketReader};
//!
//! // What a Go DRPC client writes for a unary call: Invoke, Message, CloseSend on stream 1.
//! let mut wire = BytesMut::new();
//! wire.extend_from_slice(b"\x03\x01\x01\x04/a/b\x05\x01\x02\x02hi\x0d\x01\x03\x00");
//! let mut reader = PacketReader::compat(PacketLimit::DEFAULT);
//! let kinds: Vec<Kind> = core::iter::from_fn(|| reader.read(&mut wire).unwrap()).map(|p| p.kind).collect();
//! assert_eq!(kinds, [Kind::INVOKE, Kind::MESSAGE, Kind::CLOSE_SEND]);
//! ```
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod flow;
pub mod mux;
pub mod time;
pub mod transfer;

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
