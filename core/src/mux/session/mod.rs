//! The DRPC session machine: one connection, client or server side.
//!
//! A peer cannot make a session hold more than its `Config` allows, whatever it does, not
//! reading included. Bytes handed out in [`Output::Transmit`] count until the adapter reports
//! them written with [`Session::handle_written`]; once `Config::max_queued_output` of them
//! wait, [`Session::wants_input`] turns false and the adapter stops reading the peer until the
//! peer has read enough. Input fed anyway closes the connection
//! ([`CloseReason::OutputLimit`]). A server also closes a connection that sends no whole frame
//! within `Config::handshake_timeout`, or holds no stream for `Config::idle_timeout`, through
//! [`Session::poll_timeout`]; the timers start at the first `now` the session sees, so an
//! adapter calls [`Session::handle_timeout`] as soon as the connection exists.
//!
//! ```
//! use bytes::Bytes;
//! use weir::mux::session::{CloseReason, Config, Output, Recv, Role, Session, SessionError};
//! use weir::mux::wire::{Frame, Id, Kind, Metadata};
//! use weir::time::Instant;
//!
//! /// Everything a session has to say: the bytes for the peer, and the reports.
//! fn drain(session: &mut Session) -> (Vec<u8>, Vec<Output>) {
//!     let (mut bytes, mut reports) = (Vec::new(), Vec::new());
//!     while let Some(output) = session.poll_output() {
//!         match output {
//!             Output::Transmit(chunk) => bytes.extend_from_slice(&chunk),
//!             report => reports.push(report),
//!         }
//!     }
//!     (bytes, reports)
//! }
//!
//! let now = Instant::ZERO;
//! let mut client = Session::new(Role::Client, Config::default());
//! let mut server = Session::new(Role::Server, Config::default());
//!
//! // A unary call: Invoke, Message, CloseSend.
//! let stream = client.open_stream(now, "/echo.Echo/Unary", &Metadata::new()).unwrap();
//! client.send(now, stream, Bytes::from_static(b"hello")).unwrap();
//! client.close_send(now, stream).unwrap();
//! let (request, _) = drain(&mut client);
//! server.handle_input(now, &request).unwrap();
//!
//! // The server sees the call, reads the request and answers it.
//! let (_, reports) = drain(&mut server);
//! assert!(matches!(reports[0], Output::Opened { stream: 1, .. }));
//! assert_eq!(server.read(1).unwrap(), Recv::Message(Bytes::from_static(b"hello")));
//! server.send(now, 1, Bytes::from_static(b"hi!")).unwrap();
//! server.close_send(now, 1).unwrap();
//! let (reply, _) = drain(&mut server);
//! client.handle_input(now, &reply).unwrap();
//! assert_eq!(client.read(stream).unwrap(), Recv::Message(Bytes::from_static(b"hi!")));
//! assert_eq!(client.read(stream).unwrap(), Recv::Eof);
//!
//! // A peer that breaks the protocol (a Message on a stream never invoked) closes the
//! // connection: not an error of `handle_input`, but one `Closed`, last.
//! let mut stray = Vec::new();
//! Frame { kind: Kind::MESSAGE, done: true, control: false, id: Id::new(5, 1), data: &b"x"[..] }
//!     .encode(&mut stray)
//!     .unwrap();
//! server.handle_input(now, &stray).unwrap();
//! let (bytes, reports) = drain(&mut server);
//! assert!(bytes.is_empty());
//! assert_eq!(
//!     reports,
//!     [Output::Closed(CloseReason::UnexpectedPacket { kind: Kind::MESSAGE, stream: 5 })]
//! );
//! assert_eq!(server.handle_input(now, b""), Err(SessionError::Closed));
//! ```

mod bdp;
mod calls;
mod config;
mod credit;
mod error;
mod inbound;
mod machine;
mod output;
mod send;
mod stream;
mod timers;

pub use bdp::MIN_RTT_LIFETIME;
pub use config::{Config, Mode, Role};
pub use error::SessionError;
pub use machine::Session;
pub use output::{CloseReason, Output, FRAME_OUTPUT_MAX};
pub use send::ZERO_COPY_MIN;
pub use stream::Recv;

use crate::histogram::Histogram;

/// A connection's credit in mux mode, from one side.
///
/// With nothing in flight, one side's `send` equals the other side's `receive_available`, and
/// `receive_available + receive_unreturned + (bytes held for the application)` equals
/// `receive_window` on each side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Credit {
    /// Bytes this side may still send.
    pub send: u64,
    /// Bytes the peer may still send.
    pub receive_available: u64,
    /// Bytes read (or discarded) that are not yet granted back to the peer.
    pub receive_unreturned: u64,
    /// The receive window's current size.
    pub receive_window: u64,
}

/// Counters of one session, readable at any time with `Session::metrics` (a copy).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Metrics {
    /// Bytes received from the peer.
    pub bytes_received: u64,
    /// Bytes produced for the peer.
    pub bytes_sent: u64,
    /// Whole packets received.
    pub packets_received: u64,
    /// Whole packets sent.
    pub packets_sent: u64,
    /// Streams opened, by either side.
    pub streams_opened: u64,
    /// Streams finished and forgotten.
    pub streams_finished: u64,
    /// (Mux, server) Streams turned away for the concurrency limit.
    pub streams_refused: u64,
    /// (Mux) WindowUpdate frames sent.
    pub window_updates_sent: u64,
    /// (Mux) Pings sent, to time round trips.
    pub pings_sent: u64,
    /// (Mux) The round trips timed with pings, in nanoseconds.
    pub round_trips: Histogram,
    /// The most bytes that waited for the transport at once ([`Session::queued_output`]).
    /// The peer's input never takes it past `Config::max_queued_output` plus
    /// [`FRAME_OUTPUT_MAX`]; the application's own calls may.
    pub peak_queued_output: u64,
}

#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

#[cfg(test)]
mod mux_tests;

#[cfg(test)]
mod bound_tests;
