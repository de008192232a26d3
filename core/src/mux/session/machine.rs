//! The session machine.

use alloc::collections::{BTreeMap, VecDeque};

use bytes::{Bytes, BytesMut};

use super::stream::{End, Stream};
use super::{Config, Event, Metrics, Recv, Role, SessionError};
use crate::mux::wire::{ErrorBody, Id, Kind, Metadata, Packet, PacketLimit, PacketReader};
use crate::time::Instant;

/// One DRPC connection, client or server side, with no IO inside.
///
/// Feed it the peer's bytes with [`Session::handle_input`] and the application's calls with the
/// stream methods; then drain [`Session::poll_transmit`] (bytes to write, many frames in one
/// buffer) and [`Session::poll_event`] until they return `None`.
#[derive(Debug)]
pub struct Session {
    role: Role,
    config: Config,
    reader: PacketReader,
    input: BytesMut,
    output: BytesMut,
    streams: BTreeMap<u64, Stream>,
    /// The highest stream id this connection has used: ids at or below it that are not in
    /// `streams` are finished, and late packets for them are dropped.
    highest_stream: u64,
    events: VecDeque<Event>,
    failed: bool,
    metrics: Metrics,
}

impl Session {
    /// A session for `role` with `config`.
    pub fn new(role: Role, config: Config) -> Session {
        let limit = PacketLimit::AtMost(config.max_packet_len);
        Session {
            role,
            config,
            reader: PacketReader::compat(limit),
            input: BytesMut::new(),
            output: BytesMut::new(),
            streams: BTreeMap::new(),
            highest_stream: 0,
            events: VecDeque::new(),
            failed: false,
            metrics: Metrics::default(),
        }
    }

    /// The role this session plays.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The counters so far.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Streams open or not yet finished.
    pub fn active_streams(&self) -> usize {
        self.streams.len()
    }

    // ---- input -------------------------------------------------------------------------------

    /// Bytes from the peer, in any chunking.
    ///
    /// A peer violation or a limit fails the connection: the error is returned, reported once as
    /// [`Event::Failed`], and every later call returns [`SessionError::ConnectionClosed`].
    pub fn handle_input(&mut self, _now: Instant, bytes: &[u8]) -> Result<(), SessionError> {
        self.check_open()?;
        self.metrics.bytes_received += bytes.len() as u64;
        self.input.extend_from_slice(bytes);
        loop {
            let packet = match self.reader.read(&mut self.input) {
                Ok(Some(packet)) => packet,
                Ok(None) => return Ok(()),
                Err(e) => return Err(self.fail(e.into())),
            };
            self.metrics.packets_received += 1;
            if let Err(e) = self.handle_packet(packet) {
                return Err(self.fail(e));
            }
        }
    }

    /// Time has passed. Compat sessions keep no timers; this is here so adapters drive every
    /// machine the same way.
    pub fn handle_timeout(&mut self, _now: Instant) {}

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
        let Some(state) = self.streams.get_mut(&stream) else {
            return Ok(());
        };
        if state.end.is_some() {
            // Go drops what arrives for a terminated stream (the rest of a call the server has
            // already failed, say).
            return Ok(());
        }
        match packet.kind {
            Kind::INVOKE_METADATA | Kind::INVOKE if self.role == Role::Server && !state.invoked => {
                return self.handle_invoke(packet);
            }
            Kind::MESSAGE if state.dropped => {}
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
        self.finish_if_done(stream);
        Ok(())
    }

    /// A packet for a stream the session does not hold: a late one for a finished stream, or
    /// (server) the start of a new one.
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
        // One active stream at a time: a new call replaces an unfinished one.
        let replaced: alloc::vec::Vec<u64> = self.streams.keys().copied().collect();
        for old in replaced {
            if let Some(state) = self.streams.get_mut(&old) {
                if state.end.is_none() {
                    state.terminate(End::RemoteCancel);
                    self.events.push_back(Event::RemoteCanceled { stream: old });
                }
            }
        }
        self.highest_stream = stream;
        self.streams.insert(stream, Stream::new(false));
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
    /// Returns the new stream's id. In compat mode the previous stream must be finished.
    pub fn open_stream(
        &mut self,
        _now: Instant,
        rpc: impl Into<Bytes>,
        metadata: &Metadata,
    ) -> Result<u64, SessionError> {
        self.check_open()?;
        if self.role != Role::Client {
            return Err(SessionError::WrongRole);
        }
        if !self.streams.is_empty() {
            return Err(SessionError::StreamBusy);
        }
        let stream = self.highest_stream + 1;
        self.highest_stream = stream;
        let mut state = Stream::new(true);
        if !metadata.is_empty() {
            let mut data = BytesMut::with_capacity(metadata.encoded_len());
            metadata.encode(&mut data)?;
            self.write(stream, &mut state, Kind::INVOKE_METADATA, data.freeze());
        }
        self.write(stream, &mut state, Kind::INVOKE, rpc.into());
        self.streams.insert(stream, state);
        self.metrics.streams_opened += 1;
        Ok(stream)
    }

    /// Send one message on `stream`.
    pub fn send(&mut self, _now: Instant, stream: u64, message: Bytes) -> Result<(), SessionError> {
        self.check_open()?;
        let mut state = self.take_stream(stream)?;
        if !state.can_send() {
            self.streams.insert(stream, state);
            return Err(SessionError::SendClosed(stream));
        }
        self.write(stream, &mut state, Kind::MESSAGE, message);
        self.streams.insert(stream, state);
        Ok(())
    }

    /// Close this side's sending half of `stream`. Does nothing if it is closed already.
    pub fn close_send(&mut self, _now: Instant, stream: u64) -> Result<(), SessionError> {
        self.end_stream(stream, |session, id, state| {
            if state.send_closed {
                return;
            }
            session.write(id, state, Kind::CLOSE_SEND, Bytes::new());
            state.send_closed = true;
            if state.recv_closed {
                state.terminate(End::Completed);
            }
        })
    }

    /// Close `stream` in both directions. Does nothing if it is terminated already (as after
    /// both sides closed their send halves), exactly as Go's `Close`.
    pub fn close(&mut self, _now: Instant, stream: u64) -> Result<(), SessionError> {
        self.end_stream(stream, |session, id, state| {
            session.write(id, state, Kind::CLOSE, Bytes::new());
            state.terminate(End::Local);
        })
    }

    /// Cancel `stream`: Go's soft cancel, a Cancel frame with the control bit.
    pub fn cancel(&mut self, _now: Instant, stream: u64) -> Result<(), SessionError> {
        self.end_stream(stream, |session, id, state| {
            let packet = Packet {
                kind: Kind::CANCEL,
                control: true,
                id: Id::new(id, state.take_message_id()),
                data: Bytes::new(),
            };
            session.encode(&packet);
            state.terminate(End::Local);
        })
    }

    /// Fail `stream` with an error `code` and `message` for the peer.
    pub fn send_error(
        &mut self,
        _now: Instant,
        stream: u64,
        code: u64,
        message: impl Into<Bytes>,
    ) -> Result<(), SessionError> {
        let body = ErrorBody::new(code, message);
        self.end_stream(stream, |session, id, state| {
            let mut data = BytesMut::with_capacity(body.encoded_len());
            // A BytesMut grows as needed, so encoding cannot fail.
            let encoded = body.encode(&mut data);
            debug_assert!(encoded.is_ok());
            session.write(id, state, Kind::ERROR, data.freeze());
            state.terminate(End::Local);
        })
    }

    /// The next message of `stream`, or how it ended. Reading the end of a finished stream
    /// frees it ([`Event::Finished`]); a stream that finished earlier reads as [`Recv::Eof`].
    pub fn read(&mut self, stream: u64) -> Result<Recv, SessionError> {
        if stream <= self.highest_stream && !self.streams.contains_key(&stream) {
            return Ok(Recv::Eof);
        }
        let state = self
            .streams
            .get_mut(&stream)
            .ok_or(SessionError::UnknownStream(stream))?;
        let recv = state.read();
        self.finish_if_done(stream);
        Ok(recv)
    }

    /// The application will read no more from `stream`: unread messages are dropped now and
    /// later ones on arrival. Nothing is sent (close or cancel the stream for that); the stream
    /// is forgotten as soon as it has terminated.
    pub fn drop_stream(&mut self, stream: u64) {
        if let Some(state) = self.streams.get_mut(&stream) {
            state.dropped = true;
            state.inbox.clear();
            state.unread = 0;
        }
        self.finish_if_done(stream);
    }

    // ---- output ------------------------------------------------------------------------------

    /// Bytes to write to the peer: everything pending, in one buffer.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        if self.output.is_empty() {
            None
        } else {
            Some(self.output.split().freeze())
        }
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When `handle_timeout` wants to be called next: never, in compat mode.
    pub fn poll_timeout(&self) -> Option<Instant> {
        None
    }

    // ---- internals ---------------------------------------------------------------------------

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

    /// Take a live stream out of the map, or say why not.
    fn take_stream(&mut self, stream: u64) -> Result<Stream, SessionError> {
        match self.streams.remove(&stream) {
            Some(state) => Ok(state),
            None if stream <= self.highest_stream && stream > 0 => {
                Err(SessionError::SendClosed(stream))
            }
            None => Err(SessionError::UnknownStream(stream)),
        }
    }

    /// Run `action` on a stream that has not terminated; a finished or terminated one is left
    /// alone, as Go's close calls are no-ops then.
    fn end_stream(
        &mut self,
        stream: u64,
        action: impl FnOnce(&mut Session, u64, &mut Stream),
    ) -> Result<(), SessionError> {
        self.check_open()?;
        let mut state = match self.take_stream(stream) {
            Ok(state) => state,
            Err(SessionError::SendClosed(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        if state.end.is_none() {
            action(self, stream, &mut state);
        }
        self.streams.insert(stream, state);
        self.finish_if_done(stream);
        Ok(())
    }

    /// Encode one packet of `kind` on `stream`, numbering it.
    fn write(&mut self, stream: u64, state: &mut Stream, kind: Kind, data: Bytes) {
        let packet = Packet {
            kind,
            control: false,
            id: Id::new(stream, state.take_message_id()),
            data,
        };
        self.encode(&packet);
    }

    fn encode(&mut self, packet: &Packet) {
        self.output
            .reserve(packet.encoded_len(self.config.split_size));
        // The room was just reserved, so encoding cannot fail.
        let encoded = packet.encode(self.config.split_size, &mut self.output);
        debug_assert!(encoded.is_ok());
        self.metrics.packets_sent += 1;
        self.metrics.bytes_sent += packet.encoded_len(self.config.split_size) as u64;
    }

    fn finish_if_done(&mut self, stream: u64) {
        if self.streams.get(&stream).is_some_and(Stream::is_finished) {
            self.streams.remove(&stream);
            self.metrics.streams_finished += 1;
            self.events.push_back(Event::Finished { stream });
        }
    }
}
