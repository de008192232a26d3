//! The session machine: input, application calls and output.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;

use core::time::Duration;

use bytes::{Bytes, BytesMut};

use super::bdp::Bdp;
use super::credit::RecvWindow;
use super::stream::{End, Stream};
use super::{Config, Credit, Event, Metrics, Mode, Recv, Role, SessionError};
use crate::mux::wire::{
    read_varint, Assembler, ErrorBody, Frame, FrameDecoder, Id, Kind, Metadata, MuxLimits, Packet,
    PacketLimit,
};
use crate::time::Instant;

/// One DRPC connection, client or server side, with no IO inside.
///
/// Feed it the peer's bytes with [`Session::handle_input`] and the application's calls with the
/// stream methods; then drain [`Session::poll_transmit`] (bytes to write, many frames in one
/// buffer) and [`Session::poll_event`] until they return `None`.
#[derive(Debug)]
pub struct Session {
    pub(super) role: Role,
    pub(super) config: Config,
    decoder: FrameDecoder,
    assembler: Assembler,
    input: BytesMut,
    pub(super) output: BytesMut,
    pub(super) streams: BTreeMap<u64, Stream>,
    /// The highest stream id this connection has used: ids at or below it that are not in
    /// `streams` are finished, and late packets for them are dropped.
    highest_stream: u64,
    pub(super) events: VecDeque<Event>,
    /// Streams with something to frame, in round-robin order.
    pub(super) ready: VecDeque<u64>,
    /// (Mux) Bytes the peer lets this side send on the whole connection.
    pub(super) send_credit: u64,
    /// (Mux) What the peer may send on the whole connection.
    window: RecvWindow,
    /// (Mux) Round trips and delivery rates, to size `window`.
    bdp: Bdp,
    /// (Mux) A pong has come back: `window` follows `bdp`, not `autotune_interval`.
    rtt_sized: bool,
    /// (Mux) The token of the latest ping from the peer, to answer in the next transmit.
    pub(super) pong_due: Option<u64>,
    /// (Mux) The sum of the live streams' receive windows.
    stream_windows: u64,
    /// (Mux) The one stream allowed credit beyond its window, to finish a message larger than
    /// the window.
    stretching: Option<u64>,
    /// The latest time the caller passed in, for the window auto-tuning.
    now: Instant,
    failed: bool,
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
            events: VecDeque::new(),
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
            now: Instant::ZERO,
            failed: false,
            metrics: Metrics::default(),
        }
    }

    /// The role this session plays.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The counters so far.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
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

    // ---- input -------------------------------------------------------------------------------

    /// Bytes from the peer, in any chunking.
    ///
    /// A peer violation or a limit fails the connection: the error is returned, reported once as
    /// [`Event::Failed`], and every later call returns [`SessionError::ConnectionClosed`].
    pub fn handle_input(&mut self, now: Instant, bytes: &[u8]) -> Result<(), SessionError> {
        self.check_open()?;
        self.tick(now);
        self.metrics.bytes_received += bytes.len() as u64;
        self.input.extend_from_slice(bytes);
        let mut input = core::mem::take(&mut self.input);
        let result = self.decode_from(&mut input);
        self.input = input;
        result
    }

    /// Bytes from the peer in a buffer the caller read them into, without copying them: whole
    /// frames are split off the front of `buf` and their data shared with it, and what is left
    /// is the start of an unfinished frame, which the caller keeps in `buf` and reads more bytes
    /// after. `buf` has room reserved for the rest of that frame, up to the frame bound.
    ///
    /// The same as [`Session::handle_input`] otherwise; the two may be mixed: bytes left over
    /// from `handle_input` are joined in front of `buf`'s.
    pub fn handle_input_buf(
        &mut self,
        now: Instant,
        buf: &mut BytesMut,
    ) -> Result<(), SessionError> {
        self.check_open()?;
        self.tick(now);
        self.metrics.bytes_received += buf.len() as u64;
        if !self.input.is_empty() {
            self.input.extend_from_slice(buf);
            buf.clear();
            let mut input = core::mem::take(&mut self.input);
            let result = self.decode_from(&mut input);
            self.input = input;
            return result;
        }
        self.decode_from(buf)
    }

    /// Decode and handle every whole frame at the front of `input`.
    fn decode_from(&mut self, input: &mut BytesMut) -> Result<(), SessionError> {
        loop {
            let frame = match self.decoder.decode(input) {
                Ok(Some(frame)) => frame,
                Ok(None) => return Ok(()),
                Err(e) => return Err(self.fail(e.into())),
            };
            let result = match self.config.mode {
                Mode::Compat => self.assemble(frame),
                Mode::Mux => self.handle_mux_frame(frame),
            };
            if let Err(e) = result {
                return Err(self.fail(e));
            }
        }
    }

    /// Time has passed. No timers run inside a session; the time only feeds window auto-tuning.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.tick(now);
    }

    fn tick(&mut self, now: Instant) {
        self.now = self.now.max(now);
    }

    fn assemble(&mut self, frame: Frame) -> Result<(), SessionError> {
        match self.assembler.push(frame)? {
            Some(packet) => {
                self.metrics.packets_received += 1;
                self.handle_packet(packet)
            }
            None => Ok(()),
        }
    }

    /// Mux rules at the frame level: credit, window updates, and which streams exist.
    fn handle_mux_frame(&mut self, frame: Frame) -> Result<(), SessionError> {
        let stream = frame.id.stream;
        if frame.control && frame.kind == Kind::WINDOW_UPDATE {
            return self.handle_window_update(stream, &frame.data);
        }
        if frame.control && matches!(frame.kind, Kind::PING | Kind::PONG) {
            return self.handle_ping(frame.kind, stream, &frame.data);
        }
        let len = frame.data.len() as u64;
        let is_message = frame.kind == Kind::MESSAGE;
        if !self.streams.contains_key(&stream) {
            let finished = stream != 0 && stream <= self.highest_stream;
            let opens = matches!(frame.kind, Kind::INVOKE | Kind::INVOKE_METADATA);
            if finished || (!opens && !is_message && self.role == Role::Server && stream != 0) {
                // A late frame for a finished stream, or a Close or Cancel that arrived before
                // its stream's Invoke: nothing is kept. Message data still gave up connection
                // credit, which goes straight back.
                if is_message {
                    self.consume_connection(stream, len)?;
                    self.release_connection(len);
                }
                return Ok(());
            }
            if frame.control && !opens {
                return Ok(());
            }
            if self.role == Role::Client || !opens || stream == 0 {
                return Err(SessionError::UnexpectedPacket {
                    kind: frame.kind,
                    stream,
                });
            }
            self.highest_stream = stream;
            if self.at_stream_limit() {
                self.refuse(stream);
                return Ok(());
            }
            let state = self.new_stream(false);
            self.streams.insert(stream, state);
            self.metrics.streams_opened += 1;
        }
        if is_message {
            self.consume_connection(stream, len)?;
            self.release_connection(len);
            let Some(state) = self.streams.get_mut(&stream) else {
                return Ok(());
            };
            if !state.window.consume(len) {
                return Err(SessionError::FlowControl(stream));
            }
            state.in_partial += len;
            let done = frame.done;
            self.assemble(frame)?;
            if !done {
                self.stretch_if_stuck(stream);
            }
            return Ok(());
        }
        self.assemble(frame)
    }

    /// A message can only be read whole, so a stream whose window is all taken by one unfinished
    /// message would wait forever. One such stream at a time may go past its window, by up to
    /// the packet limit, until the message completes: memory stays bounded by the windows plus
    /// one packet, and every message completes.
    fn stretch_if_stuck(&mut self, stream: u64) {
        if self.stretching.is_some_and(|s| s != stream) {
            return;
        }
        let max_packet = self.config.max_packet_len as u64;
        let Some(state) = self.streams.get_mut(&stream) else {
            return;
        };
        let stuck = state.window.available() == 0 && state.unread == 0 && state.in_partial > 0;
        if !stuck || state.end.is_some() {
            return;
        }
        let room = max_packet.saturating_sub(state.in_partial);
        let credit = state.window.stretch(room.min(state.window.target().max(1)));
        if credit > 0 {
            self.stretching = Some(stream);
            self.send_window_update(stream, credit);
        }
    }

    /// The stretched stream's message completed or the stream ended: pass the turn on.
    fn end_stretch(&mut self, stream: u64) {
        if self.stretching != Some(stream) {
            return;
        }
        self.stretching = None;
        let waiting: Vec<u64> = self
            .streams
            .iter()
            .filter(|(_, s)| s.window.available() == 0 && s.unread == 0 && s.in_partial > 0)
            .map(|(id, _)| *id)
            .collect();
        for other in waiting {
            self.stretch_if_stuck(other);
            if self.stretching.is_some() {
                break;
            }
        }
    }

    fn consume_connection(&mut self, stream: u64, len: u64) -> Result<(), SessionError> {
        if self.window.consume(len) {
            Ok(())
        } else {
            Err(SessionError::FlowControl(stream))
        }
    }

    /// Credit from the peer: stream 0 for the connection, else for one stream.
    fn handle_window_update(&mut self, stream: u64, data: &[u8]) -> Result<(), SessionError> {
        let credit = match read_varint(data) {
            Ok(Some((credit, used))) if used == data.len() => credit,
            _ => return Err(SessionError::BadWindowUpdate(stream)),
        };
        if stream == 0 {
            let was_blocked = self.send_credit == 0;
            self.send_credit = self.send_credit.saturating_add(credit);
            if was_blocked {
                self.schedule_all();
            }
        } else if let Some(state) = self.streams.get_mut(&stream) {
            state.send_credit = state.send_credit.saturating_add(credit);
            self.schedule(stream);
        }
        Ok(())
    }

    /// A Ping (answered in the next transmit; only the latest if several arrive before it) or
    /// a Pong (a round trip for the window's size).
    fn handle_ping(&mut self, kind: Kind, stream: u64, data: &[u8]) -> Result<(), SessionError> {
        let token = match read_varint(data) {
            Ok(Some((token, used))) if used == data.len() && stream == 0 => token,
            _ => return Err(SessionError::BadPing(stream)),
        };
        if kind == Kind::PING {
            self.pong_due = Some(token);
            return Ok(());
        }
        let floor = self.config.min_connection_window;
        let drained = self.window.target() <= floor;
        let limits = (floor, self.config.max_connection_window);
        let aimed = self.window.aimed();
        if let Some(size) = self.bdp.on_pong(token, self.now, aimed, drained, limits) {
            self.rtt_sized = true;
            let credit = self.window.retarget(size);
            if credit > 0 {
                self.send_window_update(0, credit);
            }
        }
        Ok(())
    }

    /// (Server, mux) Turn a stream away: too many are open. It leaves no state behind.
    fn refuse(&mut self, stream: u64) {
        let body = ErrorBody::new(
            0,
            alloc::format!(
                "protocol error: too many concurrent streams (limit {})",
                self.config.max_concurrent_streams
            ),
        );
        let mut data = BytesMut::with_capacity(body.encoded_len());
        // A BytesMut grows as needed, so encoding cannot fail.
        let encoded = body.encode(&mut data);
        debug_assert!(encoded.is_ok());
        self.encode_now(&Packet {
            kind: Kind::ERROR,
            control: false,
            id: Id::new(stream, 1),
            data: data.freeze(),
        });
        self.assembler.retire(stream);
        self.metrics.streams_refused += 1;
    }

    fn handle_packet(&mut self, packet: Packet) -> Result<(), SessionError> {
        let stream = packet.id.stream;
        match packet.kind {
            Kind::INVOKE
            | Kind::MESSAGE
            | Kind::ERROR
            | Kind::CANCEL
            | Kind::CLOSE
            | Kind::CLOSE_SEND
            | Kind::INVOKE_METADATA => {}
            // Unknown kinds (WindowUpdate among them, in compat mode) are ignored when the peer
            // marked them as control, as Go does.
            _ if packet.control => return Ok(()),
            kind => return Err(SessionError::UnknownKind(kind)),
        }
        if !self.streams.contains_key(&stream) {
            return self.handle_new_stream_packet(packet);
        }
        let mux = self.config.mode == Mode::Mux;
        let Some(state) = self.streams.get_mut(&stream) else {
            return Ok(());
        };
        // Under mux rules, Message bytes of a packet this one replaced were dropped by the
        // assembler: give their credit back.
        let mut discarded = if mux { state.in_partial } else { 0 };
        if packet.kind == Kind::MESSAGE {
            discarded = discarded.saturating_sub(packet.data.len() as u64);
        }
        state.in_partial = 0;
        let mut release = discarded;
        if mux {
            self.end_stretch(stream);
        }
        let Some(state) = self.streams.get_mut(&stream) else {
            return Ok(());
        };
        if state.end.is_some() {
            // Go drops what arrives for a terminated stream (the rest of a call the server has
            // already failed, say).
            if packet.kind == Kind::MESSAGE {
                release += packet.data.len() as u64;
            }
            self.release_stream(stream, release);
            return Ok(());
        }
        match packet.kind {
            Kind::INVOKE_METADATA | Kind::INVOKE if self.role == Role::Server && !state.invoked => {
                self.release_stream(stream, release);
                return self.handle_invoke(packet);
            }
            Kind::MESSAGE if state.dropped => release += packet.data.len() as u64,
            Kind::MESSAGE if !state.recv_closed && (state.invoked || self.role == Role::Client) => {
                state.unread += packet.data.len();
                if state.unread > self.config.max_unread_per_stream {
                    return Err(SessionError::UnreadLimit {
                        stream,
                        max: self.config.max_unread_per_stream,
                    });
                }
                state.inbox.push_back(packet.data);
                self.events.push_back(Event::Readable { stream });
            }
            Kind::CLOSE_SEND => {
                state.recv_closed = true;
                if state.send_closed {
                    state.terminate(End::Completed);
                }
                self.events.push_back(Event::RemoteClosedSend { stream });
            }
            Kind::CLOSE => {
                state.terminate(End::RemoteClose);
                self.events.push_back(Event::RemoteClosed { stream });
            }
            Kind::CANCEL => {
                state.terminate(End::RemoteCancel);
                self.events.push_back(Event::RemoteCanceled { stream });
            }
            Kind::ERROR => {
                let error = ErrorBody::decode(packet.data);
                state.terminate(End::RemoteError(error.clone()));
                self.events.push_back(Event::RemoteError { stream, error });
            }
            kind => return Err(SessionError::UnexpectedPacket { kind, stream }),
        }
        self.release_stream(stream, release);
        self.finish_if_done(stream);
        Ok(())
    }

    /// A packet for a stream the session does not hold: a late one for a finished stream, or
    /// (compat server) the start of a new one.
    fn handle_new_stream_packet(&mut self, packet: Packet) -> Result<(), SessionError> {
        let stream = packet.id.stream;
        if stream <= self.highest_stream {
            return Ok(());
        }
        let starts_stream = matches!(packet.kind, Kind::INVOKE | Kind::INVOKE_METADATA);
        if self.role == Role::Client || !starts_stream {
            return Err(SessionError::UnexpectedPacket {
                kind: packet.kind,
                stream,
            });
        }
        // One active stream at a time: a new call replaces an unfinished one, and a stream that
        // had already ended is dropped unread, so at most the replaced one and the new one stay.
        let older: Vec<u64> = self.streams.keys().copied().collect();
        for old in older {
            let Some(state) = self.streams.get_mut(&old) else {
                continue;
            };
            if state.end.is_none() {
                state.terminate(End::RemoteCancel);
                self.events.push_back(Event::RemoteCanceled { stream: old });
            } else {
                self.drop_stream(old);
            }
        }
        self.highest_stream = stream;
        let state = self.new_stream(false);
        self.streams.insert(stream, state);
        self.metrics.streams_opened += 1;
        self.handle_invoke(packet)
    }

    /// (Server) InvokeMetadata or Invoke on a stream not yet invoked.
    fn handle_invoke(&mut self, packet: Packet) -> Result<(), SessionError> {
        let stream = packet.id.stream;
        let Some(state) = self.streams.get_mut(&stream) else {
            return Ok(());
        };
        if packet.kind == Kind::INVOKE_METADATA {
            let len = packet.data.len();
            if len > self.config.max_metadata_len {
                return Err(SessionError::MetadataLimit {
                    len,
                    max: self.config.max_metadata_len,
                });
            }
            state.metadata = Some(Metadata::decode(&packet.data)?);
            return Ok(());
        }
        state.invoked = true;
        let metadata = state.metadata.take().unwrap_or_default();
        self.events.push_back(Event::Opened {
            stream,
            rpc: packet.data,
            metadata,
        });
        Ok(())
    }

    // ---- application calls -------------------------------------------------------------------

    /// (Client) Open a stream calling `rpc`, sending `metadata` ahead of it if not empty.
    /// Returns the new stream's id. In compat mode the previous stream must be finished; in mux
    /// mode at most `max_concurrent_streams` may be open.
    pub fn open_stream(
        &mut self,
        now: Instant,
        rpc: impl Into<Bytes>,
        metadata: &Metadata,
    ) -> Result<u64, SessionError> {
        self.check_open()?;
        self.tick(now);
        if self.role != Role::Client {
            return Err(SessionError::WrongRole);
        }
        match self.config.mode {
            Mode::Compat if !self.streams.is_empty() => return Err(SessionError::StreamBusy),
            Mode::Mux if self.at_stream_limit() => {
                return Err(SessionError::TooManyStreams(
                    self.config.max_concurrent_streams,
                ))
            }
            _ => {}
        }
        let stream = self.highest_stream + 1;
        self.highest_stream = stream;
        let mut state = self.new_stream(true);
        // Invokes go out at once, ahead of any queued data, so the peer sees streams open in
        // the order of their ids.
        if !metadata.is_empty() {
            let mut data = BytesMut::with_capacity(metadata.encoded_len());
            metadata.encode(&mut data)?;
            let id = Id::new(stream, state.take_message_id());
            self.encode_now(&packet(Kind::INVOKE_METADATA, id, data.freeze()));
        }
        let id = Id::new(stream, state.take_message_id());
        self.encode_now(&packet(Kind::INVOKE, id, rpc.into()));
        self.streams.insert(stream, state);
        self.metrics.streams_opened += 1;
        Ok(stream)
    }

    /// Queue one message on `stream`. Refused with [`SessionError::SendBufferFull`] (nothing
    /// queued) when the stream already holds `send_buffer_per_stream` unsent bytes; an
    /// [`Event::Writable`] follows when there is room again.
    pub fn send(&mut self, now: Instant, stream: u64, message: Bytes) -> Result<(), SessionError> {
        self.check_open()?;
        self.tick(now);
        let limit = self.config.send_buffer_per_stream;
        let state = self.live_stream(stream)?;
        if !state.can_send() {
            return Err(SessionError::SendClosed(stream));
        }
        if state.queued > 0 && state.queued + message.len() > limit {
            state.writer_waiting = true;
            return Err(SessionError::SendBufferFull(stream));
        }
        state.enqueue(Kind::MESSAGE, message);
        self.schedule(stream);
        Ok(())
    }

    /// Close this side's sending half of `stream`, after the messages queued on it. Does
    /// nothing if it is closed already.
    pub fn close_send(&mut self, now: Instant, stream: u64) -> Result<(), SessionError> {
        self.end_stream(now, stream, |state| {
            if state.send_closed {
                return;
            }
            state.enqueue(Kind::CLOSE_SEND, Bytes::new());
            state.send_closed = true;
            if state.recv_closed {
                state.terminate(End::Completed);
            }
        })
    }

    /// Close `stream` in both directions, after the messages queued on it; unread messages are
    /// dropped. Does nothing if it is terminated already (as after both sides closed their send
    /// halves), as Go's `Close`.
    pub fn close(&mut self, now: Instant, stream: u64) -> Result<(), SessionError> {
        self.end_stream(now, stream, |state| {
            state.enqueue(Kind::CLOSE, Bytes::new());
            state.terminate(End::Local);
        })
    }

    /// Fail `stream` with an error `code` and `message` for the peer, after the messages
    /// queued on it.
    pub fn send_error(
        &mut self,
        now: Instant,
        stream: u64,
        code: u64,
        message: impl Into<Bytes>,
    ) -> Result<(), SessionError> {
        let body = ErrorBody::new(code, message);
        self.end_stream(now, stream, |state| {
            let mut data = BytesMut::with_capacity(body.encoded_len());
            // A BytesMut grows as needed, so encoding cannot fail.
            let encoded = body.encode(&mut data);
            debug_assert!(encoded.is_ok());
            state.enqueue(Kind::ERROR, data.freeze());
            state.terminate(End::Local);
        })
    }

    /// Cancel `stream` at once: queued and unread messages are dropped and a Cancel frame (Go's
    /// soft cancel, with the control bit) goes out ahead of everything else.
    pub fn cancel(&mut self, now: Instant, stream: u64) -> Result<(), SessionError> {
        self.check_open()?;
        self.tick(now);
        let Some(state) = self.streams.get_mut(&stream) else {
            return self.missing(stream).map(|_| ());
        };
        if state.end.is_some() {
            return Ok(());
        }
        state.outbox.clear();
        state.head_sent = 0;
        state.queued = 0;
        state.terminate(End::Local);
        let id = Id::new(stream, state.take_message_id());
        self.discard_unread(stream);
        self.encode_now(&Packet {
            kind: Kind::CANCEL,
            control: true,
            id,
            data: Bytes::new(),
        });
        self.finish_if_done(stream);
        Ok(())
    }

    /// The next message of `stream`, or how it ended. Reading a message gives its credit back to
    /// the peer; reading the end of a finished stream frees it ([`Event::Finished`]). A stream
    /// that finished earlier reads as [`Recv::Eof`].
    pub fn read(&mut self, stream: u64) -> Result<Recv, SessionError> {
        if stream != 0 && stream <= self.highest_stream && !self.streams.contains_key(&stream) {
            return Ok(Recv::Eof);
        }
        let state = self
            .streams
            .get_mut(&stream)
            .ok_or(SessionError::UnknownStream(stream))?;
        let recv = state.read();
        if let Recv::Message(message) = &recv {
            let len = message.len() as u64;
            self.release_stream(stream, len);
        }
        self.finish_if_done(stream);
        Ok(recv)
    }

    /// The application will read no more from `stream`: unread messages are dropped now and
    /// later ones on arrival, and their credit goes back to the peer. Nothing is sent (close or
    /// cancel the stream for that); the stream is forgotten as soon as it has terminated.
    pub fn drop_stream(&mut self, stream: u64) {
        if let Some(state) = self.streams.get_mut(&stream) {
            state.dropped = true;
        }
        self.discard_unread(stream);
        self.finish_if_done(stream);
    }

    /// Drop what `stream` holds for the application and give its credit back.
    fn discard_unread(&mut self, stream: u64) {
        if let Some(state) = self.streams.get_mut(&stream) {
            state.inbox.clear();
            let unread = core::mem::take(&mut state.unread) as u64;
            self.release_stream(stream, unread);
        }
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When `handle_timeout` wants to be called next: never, as no timer runs inside.
    pub fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    // ---- internals ---------------------------------------------------------------------------

    fn new_stream(&mut self, invoked: bool) -> Stream {
        self.stream_windows += self.config.initial_stream_window;
        let window = RecvWindow::new(
            self.config.initial_stream_window,
            self.config.max_stream_window,
            self.now,
        );
        Stream::new(invoked, self.config.initial_stream_window, window)
    }

    /// (Mux) No new stream may start: `max_concurrent_streams` are open, or twice that many
    /// are held (open ones plus ended ones the application has not read to the end).
    ///
    /// A stream the peer has terminated stops counting as open even before the application
    /// reads its end, so both sides agree on the count once they have seen the same frames.
    fn at_stream_limit(&self) -> bool {
        let max = self.config.max_concurrent_streams;
        let open = self.streams.values().filter(|s| s.is_active()).count();
        open >= max || self.streams.len() >= max.saturating_mul(2)
    }

    fn check_open(&self) -> Result<(), SessionError> {
        if self.failed {
            Err(SessionError::ConnectionClosed)
        } else {
            Ok(())
        }
    }

    /// Fail the connection: report once, refuse everything after.
    fn fail(&mut self, error: SessionError) -> SessionError {
        self.failed = true;
        self.events.push_back(Event::Failed(error.clone()));
        error
    }

    /// Why a stream is not in the map: finished (its close calls are no-ops) or never opened.
    fn missing(&self, stream: u64) -> Result<(), SessionError> {
        if stream != 0 && stream <= self.highest_stream {
            Ok(())
        } else {
            Err(SessionError::UnknownStream(stream))
        }
    }

    fn live_stream(&mut self, stream: u64) -> Result<&mut Stream, SessionError> {
        if !self.streams.contains_key(&stream) {
            self.missing(stream)?;
            return Err(SessionError::SendClosed(stream));
        }
        self.streams
            .get_mut(&stream)
            .ok_or(SessionError::UnknownStream(stream))
    }

    /// Apply a closing `action` to a stream that has not terminated; on a finished or
    /// terminated one it is a no-op, as Go's close calls are.
    fn end_stream(
        &mut self,
        now: Instant,
        stream: u64,
        action: impl FnOnce(&mut Stream),
    ) -> Result<(), SessionError> {
        self.check_open()?;
        self.tick(now);
        let Some(state) = self.streams.get_mut(&stream) else {
            return self.missing(stream);
        };
        if state.end.is_none() {
            action(state);
            if state.end == Some(End::Local) {
                // As in Go, reads after a local Close or Error return the end, not messages.
                self.discard_unread(stream);
            }
            self.schedule(stream);
        }
        self.finish_if_done(stream);
        Ok(())
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
    }

    /// `len` message bytes of `stream` left the session (read or discarded): give the stream's
    /// credit back while it lives (mux). The connection's credit went back on arrival.
    fn release_stream(&mut self, stream: u64, len: u64) {
        if self.config.mode != Mode::Mux || len == 0 {
            return;
        }
        let budget = self.config.max_buffered_per_connection;
        let may_grow = budget.saturating_sub(self.stream_windows);
        let (now, tune) = (self.now, self.config.autotune_interval);
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
    fn release_connection(&mut self, len: u64) {
        // Until a pong comes back (a peer that predates pings never sends one), the window
        // grows by the time it takes to fill.
        let autotune = if self.rtt_sized {
            Duration::ZERO
        } else {
            self.config.autotune_interval
        };
        let (grant, _) = self.window.release(len, self.now, autotune, u64::MAX);
        if let Some(credit) = grant {
            self.send_window_update(0, credit);
        }
        if let Some(token) = self.bdp.on_data(len, self.now) {
            self.send_control(Kind::PING, 0, token);
            self.metrics.pings_sent += 1;
        }
    }

    fn send_window_update(&mut self, stream: u64, credit: u64) {
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
        self.metrics.streams_finished += 1;
        self.events.push_back(Event::Finished { stream });
    }
}

fn packet(kind: Kind, id: Id, data: Bytes) -> Packet {
    Packet {
        kind,
        control: false,
        id,
        data,
    }
}
