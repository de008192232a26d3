//! How a session is set up.

use core::time::Duration;

use crate::mux::wire::SplitSize;

/// Which end of the connection a session is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Role {
    /// Opens streams (numbered 1, 2, 3, ...) and calls rpcs.
    Client,
    /// Accepts streams and answers them.
    Server,
}

/// The rules a session plays by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Mode {
    /// storj/drpc semantics: one active stream at a time, ids rising across the connection.
    /// Interoperates byte for byte with a stock Go DRPC peer.
    #[default]
    Compat,
    /// Many concurrent streams on one connection, with per-stream and per-connection credit
    /// (WindowUpdate frames) and fair, frame-by-frame scheduling across streams. Both peers must
    /// be in this mode with the same initial windows.
    Mux,
}

/// Limits and settings of a session. Sizes are bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Config {
    /// The rules (default [`Mode::Compat`]).
    pub mode: Mode,
    /// The largest frame data this session writes (default 64 KiB, as Go).
    pub split_size: SplitSize,
    /// The largest packet accepted from the peer (default 4 MiB, as Go). A bigger one fails the
    /// connection.
    pub max_packet_len: usize,
    /// Message bytes received on one stream and not yet read (default 4 MiB). Past it the
    /// connection fails: in compat mode Go's reader would block instead, which a sans-IO core
    /// cannot do without holding the whole connection's input; in mux mode credit keeps a
    /// well-behaved peer below it.
    pub max_unread_per_stream: usize,
    /// The largest metadata accepted with an Invoke (default 64 KiB).
    pub max_metadata_len: usize,
    /// Message bytes a stream queues for sending before `send` refuses more (default 1 MiB; a
    /// message is always accepted on an empty queue, whatever its size).
    pub send_buffer_per_stream: usize,
    /// Bytes of one batch of [`Output::Transmit`](super::Output::Transmit) at most (default
    /// 256 KiB), so that one write stays bounded and the scheduler interleaves fairly between
    /// writes.
    pub max_transmit: usize,
    /// Bytes handed out in [`Output::Transmit`](super::Output::Transmit)s and not yet confirmed
    /// written with [`Session::handle_written`](super::Session::handle_written), past which
    /// queued messages stay queued (default `None`: no bound, every queued message is framed
    /// as soon as credit allows). Control frames go out regardless. With a bound, messages wait
    /// in the session, where `send` refuses past `send_buffer_per_stream` and the scheduler
    /// still interleaves the streams, instead of in front of the transport. Messages are framed
    /// only up to half of `max_queued_output` either way.
    pub max_unwritten: Option<usize>,
    /// Bytes produced for the peer and not yet confirmed written with
    /// [`Session::handle_written`](super::Session::handle_written), control frames included
    /// (default 1 MiB). Messages are framed up to half of it (plus one frame: keep it above
    /// four `split_size`), so that a peer reading slowly never stops the reads; the rest is room
    /// for the frames the peer's input causes (refusals, pongs, window updates). At the bound
    /// the session takes no more input ([`Session::wants_input`](super::Session::wants_input)
    /// is false) until the transport catches up, so a peer that never reads makes it hold at
    /// most this plus [`FRAME_OUTPUT_MAX`](super::FRAME_OUTPUT_MAX). Input fed past the bound
    /// anyway fails the connection
    /// ([`CloseReason::OutputLimit`](super::CloseReason::OutputLimit)).
    pub max_queued_output: usize,
    /// (Server) Time from the first `now` the session sees to the peer's first whole frame
    /// (default 10 s; `None`: no limit). Past it the connection fails
    /// ([`CloseReason::HandshakeTimeout`](super::CloseReason::HandshakeTimeout)): half a frame
    /// does not hold a connection. Client sessions ignore it, as a server speaks only when
    /// called.
    pub handshake_timeout: Option<Duration>,
    /// (Server) Time the connection may hold no stream (default 5 min; `None`: no limit), from
    /// the first `now` the session sees or the end of its last stream. Past it the connection
    /// fails ([`CloseReason::IdleTimeout`](super::CloseReason::IdleTimeout)), as with Go's
    /// `InactivityTimeout`. Client sessions ignore it: a client keeps an idle connection for
    /// its next call, and closes it by dropping it.
    pub idle_timeout: Option<Duration>,
    /// Streams open at once (default 256; compat mode has one). A server refuses the stream
    /// past it with an Error; a client's `open_stream` refuses locally. Ended streams the
    /// application has not read to the end (or dropped) are held too, up to as many again;
    /// past that new streams are refused the same way, in both modes.
    pub max_concurrent_streams: usize,
    /// Mux: a stream's receive window before any WindowUpdate (default 256 KiB). Must match the
    /// peer's. A stream holds at most its window of data for the application.
    pub initial_stream_window: u64,
    /// Mux: the largest a stream's window grows to (default 16 MiB).
    pub max_stream_window: u64,
    /// Mux: what stream windows may grow to together (default 64 MiB). Windows start at
    /// `initial_stream_window` whatever this says; growth beyond that takes from this budget.
    /// A connection holds at most `max(this, max_concurrent_streams * initial_stream_window)`
    /// bytes for the application, plus one packet: a message larger than its stream's window
    /// is let through one at a time so that it can complete.
    pub max_buffered_per_connection: u64,
    /// Mux: the connection's receive window before any WindowUpdate (default 1 MiB). Must match
    /// the peer's. Credit for it returns as frames arrive, not when the application reads, so
    /// messages half-received on many streams can never stall each other; it paces the bytes in
    /// flight, and the stream windows bound memory.
    pub initial_connection_window: u64,
    /// Mux: the largest the connection's window grows to (default 64 MiB).
    pub max_connection_window: u64,
    /// Mux: the smallest the connection's window shrinks to (default 512 KiB). Once a ping has
    /// timed a round trip (weir peers answer them), the window aims at twice the delivery rate
    /// times the lowest round trip, within this and `max_connection_window`, so that bulk data
    /// does not queue in the socket buffers in front of other streams' frames. The floor is for
    /// round trips too short to matter: the window must still cover the writes and reads in
    /// flight (two `max_transmit` by default; on loopback 256 KiB lost 40% of the throughput
    /// and 512 KiB none measurable). Need not match the peer's.
    pub min_connection_window: u64,
    /// Mux: a window doubles when the application reads a whole window's worth in less than
    /// this (default 20 ms). For the connection's window, only until a round trip is timed.
    pub autotune_interval: Duration,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            mode: Mode::Compat,
            split_size: SplitSize::DEFAULT,
            max_packet_len: 4 << 20,
            max_unread_per_stream: 4 << 20,
            max_metadata_len: 64 << 10,
            send_buffer_per_stream: 1 << 20,
            max_transmit: 256 << 10,
            max_unwritten: None,
            max_queued_output: 1 << 20,
            handshake_timeout: Some(Duration::from_secs(10)),
            idle_timeout: Some(Duration::from_secs(300)),
            max_concurrent_streams: 256,
            initial_stream_window: 256 << 10,
            max_stream_window: 16 << 20,
            max_buffered_per_connection: 64 << 20,
            initial_connection_window: 1 << 20,
            max_connection_window: 64 << 20,
            min_connection_window: 512 << 10,
            autotune_interval: Duration::from_millis(20),
        }
    }
}

impl Config {
    /// The defaults in mux mode.
    pub fn mux() -> Config {
        Config {
            mode: Mode::Mux,
            max_unread_per_stream: 16 << 20,
            ..Config::default()
        }
    }
}
