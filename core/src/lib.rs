//! weir: sans-IO protocol cores for distributed SQL plumbing.
//!
//! Every machine in this crate takes bytes and events in and gives actions out. It never reads a
//! socket, a clock or a random number generator. The crate is `#![no_std]` with `alloc`; the
//! `std` feature (on by default) only adds `std::error::Error` implementations.
//!
//! # One contract for every machine
//!
//! ```
//! use weir::error::{ErrorKind, Kind as _};
//! use weir::mux::session::{CloseReason, Config, Output, Role, Session};
//! use weir::time::Instant;
//!
//! let mut server = Session::new(Role::Server, Config::default());
//! // A client that sends a Message on stream 1 before invoking it breaks the protocol. That is
//! // not an `Err`: the machine reports it once, as its last output, and is closed from then on.
//! server.handle_input(Instant::ZERO, b"\x05\x01\x01\x02hi").unwrap();
//! let mut last = None;
//! while let Some(output) = server.poll_output() {
//!     last = Some(output);
//! }
//! assert!(matches!(last, Some(Output::Closed(CloseReason::UnexpectedPacket { stream: 1, .. }))));
//! assert_eq!(server.poll_timeout(), None);
//! // Later calls change nothing and say so with an error of the closed kind.
//! assert_eq!(server.read(1).unwrap_err().kind(), ErrorKind::Closed);
//! ```
//!
//! The same verbs on every machine ([`mux::session::Session`], [`transfer::Machine`] with its
//! helpers [`transfer::frontend::Frontend`] and [`transfer::reset::Reset`],
//! [`flow::FlowControl`], [`frontier::CheckpointPolicy`]):
//!
//! - **Inputs** are `handle_*` calls for what arrived (bytes from a peer, a deadline reached) and
//!   named calls for what the application wants (`open_stream`, `request_transfer`, `admit`).
//!   Every input that depends on time carries `now`, a [`time::Instant`] from an epoch the
//!   caller picks; a `now` earlier than one already seen counts as no time passing
//!   ([`time::Monotonic`]).
//! - **Outputs** come from one `poll_output() -> Option<Output>`, one `Output` enum per machine,
//!   drained until `None` after every input: bytes to write, events, requests to the caller.
//!   `poll_timeout() -> Option<Instant>` is read after draining; `None` means no timer.
//! - **Errors**: a call returns `Err` only when it changed nothing, and the error's
//!   [`error::Kind::kind`] says whether the caller misused the machine, a configured limit was
//!   reached, or the machine is closed. A peer that breaks the protocol is an output (see
//!   [`error`]).
//! - **Metrics**: `metrics()` returns a snapshot by value; every distribution is a
//!   [`histogram::Histogram`].
//!
//! `ARCHITECTURE.md` in the repository describes each machine's inputs and outputs and how an
//! adapter drives them.
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
//!
//! [`transfer`]: moving a live PostgreSQL-wire session to another server at a safe point.
//!
//! ```
//! use bytes::Bytes;
//! use weir::time::Instant;
//! use weir::transfer::{message::build_startup_message, Config, Machine, Output, Peer, ServerId, Transmit};
//!
//! let now = Instant::ZERO;
//! let mut session = Machine::new(Config::default(), ServerId(0));
//! session.handle_client_input(now, build_startup_message([("user", "ada")], 10_000).unwrap()).unwrap();
//! // The server greets: AuthenticationOk, BackendKeyData, ReadyForQuery (idle).
//! let greeting = b"R\0\0\0\x08\0\0\0\0K\0\0\0\x0c\0\0\0\x07\0\0\0\x2aZ\0\0\0\x05I";
//! session.handle_server_input(now, ServerId(0), Bytes::from_static(greeting)).unwrap();
//! while session.poll_output().is_some() {}
//! // Idle is a safe point: asking for a move to server 1 sends the state query to 0 at once.
//! session.request_transfer(now, "key", ServerId(1)).unwrap();
//! let to = Peer::Server(ServerId(0));
//! assert!(matches!(session.poll_output(), Some(Output::Transmit(Transmit { to: t, .. })) if t == to));
//! ```
//!
//! [`frontier`]: the high-water timestamp over many key spans, and checkpoints that survive a
//! restart.
//!
//! ```
//! use weir::frontier::{Frontier, FrontierConfig, Span, Timestamp};
//!
//! let ts = |wall| Timestamp::new(wall, 0);
//! let mut f = Frontier::from_spans(FrontierConfig::default(), [Span::new(b"a", b"z")?], ts(10))?;
//! assert!(!f.forward(&Span::new(b"a", b"m")?, ts(20))?); // half the keys: no advance yet
//! assert!(f.forward(&Span::new(b"m", b"z")?, ts(20))?); // the rest: the frontier moves
//! assert_eq!(f.frontier(), Some(ts(20)));
//! # Ok::<(), weir::frontier::FrontierError>(())
//! ```
//!
//! [`flow`]: flow-control token budgets for replication traffic.
//!
//! ```
//! use weir::flow::{Class, Config, FlowControl, LogPosition, Output, RequestId, StreamId, Targets};
//! use weir::time::Instant;
//!
//! let mut fc = FlowControl::new(Config::default());
//! let replicas = [StreamId::new(1, 1), StreamId::new(1, 2), StreamId::new(1, 3)];
//! for s in replicas {
//!     fc.connect_stream(Instant::ZERO, s, LogPosition::new(1, 0)).unwrap();
//! }
//! let targets = Targets::majority(&replicas);
//! fc.admit(Instant::ZERO, RequestId(1), Class::Regular, 4096, &targets).unwrap();
//! assert!(matches!(fc.poll_output(), Some(Output::Admitted { id: RequestId(1), .. })));
//! fc.check_invariants().unwrap();
//! ```
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

pub mod error;
pub mod flow;
pub mod frontier;
pub mod histogram;
pub mod mux;
pub mod time;
pub mod transfer;

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
