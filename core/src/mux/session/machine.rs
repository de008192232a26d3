//! The session machine: its state, and what the peer's packets and the application's calls
//! share (stream bookkeeping, credit given back, packets encoded at once).

use alloc::collections::{BTreeMap, VecDeque};

use core::time::Duration;

use bytes::{Bytes, BytesMut};

use super::bdp::Bdp;
use super::credit::RecvWindow;
use super::output::{Output, Outputs};
use super::stream::Stream;
use super::timers::Timers;
use super::{Config, Credit, Metrics, Mode, Role, SessionError};
use crate::mux::wire::{Assembler, FrameDecoder, Id, Kind, MuxLimits, Packet, PacketLimit};
use crate::time::{Instant, Monotonic};

/// One DRPC connection, client or server side, with no IO inside.
///
/// Feed it the peer's bytes with [`Session::handle_input`] while [`Session::wants_input`]
/// holds, the application's calls with the stream methods, the bytes the transport took with
/// [`Session::handle_written`] and the timer with [`Session::handle_timeout`]; then drain
/// [`Session::poll_output`] (bytes to write, many frames in one buffer, and reports for the
/// application) until it returns `None`, and arm the timer for [`Session::poll_timeout`]. A peer that breaks the
/// protocol is not an error of `handle_input`: the session reports it once as
/// [`Output::Closed`], last, and every later call returns [`SessionError::Closed`].
#[derive(Debug)]
pub struct Session {
    pub(super) role: Role,
    pub(super) config: Config,
    pub(super) decoder: FrameDecoder,
    pub(super) assembler: Assembler,
    pub(super) input: BytesMut,
    pub(super) output: BytesMut,
    pub(super) streams: BTreeMap<u64, Stream>,
    /// The highest stream id this connection has used: ids at or below it that are not in
    /// `streams` are finished, and late packets for them are dropped.
    pub(super) highest_stream: u64,
    pub(super) outputs: Outputs,
    /// Streams with something to frame, in round-robin order.
    pub(super) ready: VecDeque<u64>,
    /// (Mux) Bytes the peer lets this side send on the whole connection.
    pub(super) send_credit: u64,
    /// (Mux) What the peer may send on the whole connection.
    pub(super) window: RecvWindow,
    /// (Mux) Round trips and delivery rates, to size `window`.
    pub(super) bdp: Bdp,
    /// (Mux) A pong has come back: `window` follows `bdp`, not `autotune_interval`.
    pub(super) rtt_sized: bool,
    /// (Mux) The token of the latest ping from the peer, to answer in the next transmit.
    pub(super) pong_due: Option<u64>,
    /// (Mux) The sum of the live streams' receive windows.
    pub(super) stream_windows: u64,
    /// (Mux) The one stream allowed credit beyond its window, to finish a message larger than
    /// the window.
    pub(super) stretching: Option<u64>,
    /// The latest time the caller passed in, for the timers and the window auto-tuning.
    pub(super) clock: Monotonic,
    pub(super) timers: Timers,
    pub(super) metrics: Metrics,
}

impl Session {
    /// A session for `role` with `config`.
    pub fn new(role: Role, config: Config) -> Session {
        let limit = PacketLimit::AtMost(config.max_packet_len);
        let assembler = match config.mode {
            Mode::Compat => Assembler::compat(limit),
            Mode::Mux => Assembler::mux(
                limit,
                MuxLimits {
                    // Every stream a session may hold (see `at_stream_limit`).
                    max_streams: config.max_concurrent_streams.saturating_mul(2),
                    // Message data is bounded by credit; Invokes and Errors by the packet limit.
                    max_partial_bytes: (config.max_connection_window as usize)
                        .saturating_add(config.max_packet_len),
                },
            ),
        };
        Session {
            role,
            config,
            decoder: FrameDecoder::new(limit.frame_bound()),
            assembler,
            input: BytesMut::new(),
            output: BytesMut::new(),
            streams: BTreeMap::new(),
            highest_stream: 0,
            outputs: Outputs::default(),
            ready: VecDeque::new(),
            send_credit: config.initial_connection_window,
            window: RecvWindow::new(
                config.initial_connection_window,
                config.max_connection_window,
                Instant::ZERO,
            ),
            bdp: Bdp::new(config.initial_connection_window),
            rtt_sized: false,
            pong_due: None,
            stream_windows: 0,
            stretching: None,
            clock: Monotonic::default(),
            timers: Timers::default(),
            metrics: Metrics::default(),
        }
    }

    /// The role this session plays.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The configuration it runs with.
    pub fn config(&self) -> Config {
        self.config
    }

    /// The counters so far.
    pub fn metrics(&self) -> Metrics {
        self.metrics.clone()
    }

    /// Streams open or not yet finished.
    pub fn active_streams(&self) -> usize {
        self.streams.len()
    }

    /// Message bytes held for the application (unread or in unfinished packets), across streams.
    pub fn buffered_bytes(&self) -> u64 {
        self.streams
            .values()
            .map(|s| s.unread as u64 + s.in_partial)
            .sum()
    }

    /// Bytes received from the peer and held: messages the application has not read, and the
    /// data of unfinished packets of any kind, in either mode (in compat mode a message's
    /// packet is assembled before it belongs to a stream). What an adapter accounts when it
    /// bounds the input its connections hold together.
    pub fn held_input_bytes(&self) -> u64 {
        let unread: u64 = self.streams.values().map(|s| s.unread as u64).sum();
        unread + self.assembler.partial_bytes() as u64
    }

    /// (Mux) The lowest round trip measured with pings (they go out while Message data
    /// arrives), if any. The connection's receive window is twice this times the delivery
    /// rate, between `min_connection_window` and `max_connection_window`.
    pub fn min_rtt(&self) -> Option<Duration> {
        self.bdp.min_rtt()
    }

    /// (Mux) The connection's credit as this side sees it.
    pub fn connection_credit(&self) -> Credit {
        Credit {
            send: self.send_credit,
            receive_available: self.window.available(),
            receive_unreturned: self.window.unreturned(),
            receive_window: self.window.target(),
        }
    }

    /// The latest time the caller passed in.
    pub(super) fn now(&self) -> Instant {
        self.clock.now()
    }

    pub(super) fn new_stream(&mut self, invoked: bool) -> Stream {
        if invoked {
            self.busy();
        }
        self.stream_windows += self.config.initial_stream_window;
        let window = RecvWindow::new(
            self.config.initial_stream_window,
            self.config.max_stream_window,
            self.now(),
        );
        Stream::new(invoked, self.config.initial_stream_window, window)
    }

    /// (Mux) No new stream may start: `max_concurrent_streams` are open, or twice that many
    /// are held (open ones plus ended ones the application has not read to the end).
    ///
    /// A stream the peer has terminated stops counting as open even before the application
    /// reads its end, so both sides agree on the count once they have seen the same frames.
    pub(super) fn at_stream_limit(&self) -> bool {
        let max = self.config.max_concurrent_streams;
        let open = self.streams.values().filter(|s| s.is_active()).count();
        open >= max || self.streams.len() >= max.saturating_mul(2)
    }

    /// Refuse every call once the connection has failed.
    pub(super) fn check_open(&self) -> Result<(), SessionError> {
        if self.outputs.closed {
            Err(SessionError::Closed)
        } else {
            Ok(())
        }
    }

    /// Why a stream is not in the map: finished (its close calls are no-ops) or never opened.
    pub(super) fn missing(&self, stream: u64) -> Result<(), SessionError> {
        if stream != 0 && stream <= self.highest_stream {
            Ok(())
        } else {
            Err(SessionError::UnknownStream(stream))
        }
    }

    pub(super) fn live_stream(&mut self, stream: u64) -> Result<&mut Stream, SessionError> {
        if !self.streams.contains_key(&stream) {
            self.missing(stream)?;
            return Err(SessionError::SendClosed(stream));
        }
        self.streams
            .get_mut(&stream)
            .ok_or(SessionError::UnknownStream(stream))
    }

    /// Encode a packet straight into the output, ahead of scheduled frames.
    pub(super) fn encode_now(&mut self, packet: &Packet) {
        let len = packet.encoded_len(self.config.split_size);
        self.output.reserve(len);
        // The room was just reserved, so encoding cannot fail.
        let encoded = packet.encode(self.config.split_size, &mut self.output);
        debug_assert!(encoded.is_ok());
        self.metrics.packets_sent += 1;
        self.metrics.bytes_sent += len as u64;
        self.note_queued();
    }

    /// `len` message bytes of `stream` left the session (read or discarded): give the stream's
    /// credit back while it lives (mux). The connection's credit went back on arrival.
    pub(super) fn release_stream(&mut self, stream: u64, len: u64) {
        if self.config.mode != Mode::Mux || len == 0 {
            return;
        }
        let budget = self.config.max_buffered_per_connection;
        let may_grow = budget.saturating_sub(self.stream_windows);
        let (now, tune) = (self.now(), self.config.autotune_interval);
        let Some(state) = self.streams.get_mut(&stream).filter(|s| s.end.is_none()) else {
            return;
        };
        let (grant, grew) = state.window.release(len, now, tune, may_grow);
        self.stream_windows += grew;
        if let Some(credit) = grant {
            self.send_window_update(stream, credit);
        }
        // Reading may leave the window held only by an unfinished message.
        self.stretch_if_stuck(stream);
    }

    /// `len` Message bytes arrived: the connection's credit goes back at once, and a ping may
    /// go out to time the round trip.
    pub(super) fn release_connection(&mut self, len: u64) {
        // Until a pong comes back (a peer that predates pings never sends one), the window
        // grows by the time it takes to fill.
        let autotune = if self.rtt_sized {
            Duration::ZERO
        } else {
            self.config.autotune_interval
        };
        let (grant, _) = self.window.release(len, self.now(), autotune, u64::MAX);
        if let Some(credit) = grant {
            self.send_window_update(0, credit);
        }
        if let Some(token) = self.bdp.on_data(len, self.now()) {
            self.send_control(Kind::PING, 0, token);
            self.metrics.pings_sent += 1;
        }
    }

    pub(super) fn send_window_update(&mut self, stream: u64, credit: u64) {
        self.send_control(Kind::WINDOW_UPDATE, stream, credit);
        self.metrics.window_updates_sent += 1;
    }

    /// A control packet whose data is one varint, ahead of scheduled frames. These sit outside
    /// the packet sequence (message id 0), so they never cut into a packet in progress and
    /// never wait behind one.
    pub(super) fn send_control(&mut self, kind: Kind, stream: u64, value: u64) {
        let mut data = BytesMut::with_capacity(10);
        crate::mux::wire::put_varint(&mut data, value);
        self.encode_now(&Packet {
            kind,
            control: true,
            id: Id::new(stream, 0),
            data: data.freeze(),
        });
    }

    pub(super) fn finish_if_done(&mut self, stream: u64) {
        if !self.streams.get(&stream).is_some_and(Stream::is_finished) {
            return;
        }
        if let Some(state) = self.streams.remove(&stream) {
            self.stream_windows -= state.window.target() - state.window.stretched();
            self.end_stretch(stream);
            // A packet still in progress is dropped with the stream.
            self.assembler.retire(stream);
        }
        // A stream whose Invoke has not arrived whole is no call: it does not keep the
        // connection from idling.
        if !self.streams.values().any(|s| s.invoked) {
            self.idle();
        }
        self.metrics.streams_finished += 1;
        self.report(Output::Finished(stream));
    }
}

pub(super) fn packet(kind: Kind, id: Id, data: Bytes) -> Packet {
    Packet {
        kind,
        control: false,
        id,
        data,
    }
}
