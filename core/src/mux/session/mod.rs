//! The DRPC session machine: one connection, client or server side.
//!
//! ```
//! use bytes::Bytes;
//! use weir::mux::session::{Config, Event, Recv, Role, Session};
//! use weir::mux::wire::Metadata;
//! use weir::time::Instant;
//!
//! let now = Instant::ZERO;
//! let mut client = Session::new(Role::Client, Config::default());
//! let mut server = Session::new(Role::Server, Config::default());
//!
//! // A unary call: Invoke, Message, CloseSend.
//! let stream = client.open_stream(now, "/echo.Echo/Unary", &Metadata::new()).unwrap();
//! client.send(now, stream, Bytes::from_static(b"hello")).unwrap();
//! client.close_send(now, stream).unwrap();
//! server.handle_input(now, &client.poll_transmit().unwrap()).unwrap();
//!
//! // The server sees the call, reads the request and answers it.
//! assert!(matches!(server.poll_event(), Some(Event::Opened { stream: 1, .. })));
//! assert_eq!(server.read(1).unwrap(), Recv::Message(Bytes::from_static(b"hello")));
//! server.send(now, 1, Bytes::from_static(b"hi!")).unwrap();
//! server.close_send(now, 1).unwrap();
//! client.handle_input(now, &server.poll_transmit().unwrap()).unwrap();
//! assert_eq!(client.read(stream).unwrap(), Recv::Message(Bytes::from_static(b"hi!")));
//! assert_eq!(client.read(stream).unwrap(), Recv::Eof);
//! ```

mod bdp;
mod config;
mod credit;
mod error;
mod event;
mod machine;
mod send;
mod stream;

pub use bdp::MIN_RTT_LIFETIME;
pub use config::{Config, Mode, Role};
pub use error::SessionError;
pub use event::Event;
pub use machine::Session;
pub use send::ZERO_COPY_MIN;
pub use stream::Recv;

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

/// Counters of one session, readable at any time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
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
}

#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

#[cfg(test)]
mod mux_tests;
