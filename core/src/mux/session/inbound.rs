//! The peer's bytes: frames decoded, packets assembled, and what each packet does to its
//! stream, its credit and the connection.

use alloc::vec::Vec;

use bytes::BytesMut;

use super::output::{CloseReason, Output};
use super::stream::End;
use super::{Mode, Role, Session, SessionError};
use crate::mux::wire::{read_varint, ErrorBody, Frame, Id, Kind, Metadata, Packet};
use crate::time::Instant;

impl Session {
    /// Bytes from the peer, in any chunking.
    ///
    /// Refused only with [`SessionError::Closed`], once the connection has failed. A peer
    /// violation or a limit its data passes fails the connection: the session reports it once
    /// as [`Output::Closed`], after the reports of the packets before it, and every later call
    /// returns [`SessionError::Closed`].
    ///
    /// Frames are handled while [`Session::wants_input`] holds; once `max_queued_output` bytes
    /// wait for the transport, the rest stay in the session until [`Session::handle_written`]
    /// makes room. Bytes passed while `wants_input` is false fail the connection with
    /// [`CloseReason::OutputLimit`].
    pub fn handle_input(&mut self, now: Instant, bytes: &[u8]) -> Result<(), SessionError> {
        self.check_open()?;
        self.tick(now);
        if !bytes.is_empty() && !self.wants_input() {
            self.refuse_input();
            return Ok(());
        }
        self.metrics.bytes_received += bytes.len() as u64;
        self.input.extend_from_slice(bytes);
        let mut input = core::mem::take(&mut self.input);
        self.decode_from(&mut input);
        self.input = input;
        Ok(())
    }

    /// Bytes from the peer in a buffer the caller read them into, without copying them: whole
    /// frames are split off the front of `buf` and their data shared with it, and what is left
    /// the caller keeps in `buf` and reads more bytes after: the start of an unfinished frame
    /// (`buf` has room reserved for the rest of it, up to the frame bound), and the frames the
    /// session did not take because [`Session::wants_input`] turned false. Pass `buf` again
    /// once `wants_input` is true, even with no new bytes.
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
        if !buf.is_empty() && !self.wants_input() {
            self.refuse_input();
            return Ok(());
        }
        if !self.input.is_empty() {
            self.metrics.bytes_received += buf.len() as u64;
            self.input.extend_from_slice(buf);
            buf.clear();
            let mut input = core::mem::take(&mut self.input);
            self.decode_from(&mut input);
            self.input = input;
            return Ok(());
        }
        let before = buf.len();
        self.decode_from(buf);
        self.metrics.bytes_received += (before - buf.len()) as u64;
        Ok(())
    }

    /// Input past `max_queued_output`: fail the connection.
    fn refuse_input(&mut self) {
        let max = self.config.max_queued_output;
        self.close_with(CloseReason::OutputLimit { max });
    }

    /// Decode and handle every whole frame at the front of `input`, until one breaks the rules
    /// or the output reaches `max_queued_output`.
    pub(super) fn decode_from(&mut self, input: &mut BytesMut) {
        while self.wants_input() {
            let frame = match self.decoder.decode(input) {
                Ok(Some(frame)) => frame,
                Ok(None) => return,
                Err(e) => return self.close_with(e.into()),
            };
            self.frame_arrived();
            let result = match self.config.mode {
                Mode::Compat => self.assemble(frame),
                Mode::Mux => self.handle_mux_frame(frame),
            };
            if let Err(reason) = result {
                return self.close_with(reason);
            }
        }
    }

    fn assemble(&mut self, frame: Frame) -> Result<(), CloseReason> {
        match self.assembler.push(frame)? {
            Some(packet) => {
                self.metrics.packets_received += 1;
                self.handle_packet(packet)
            }
            None => Ok(()),
        }
    }

    /// Mux rules at the frame level: credit, window updates, and which streams exist.
    fn handle_mux_frame(&mut self, frame: Frame) -> Result<(), CloseReason> {
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
                return Err(CloseReason::UnexpectedPacket {
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
                return Err(CloseReason::FlowControl(stream));
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
    pub(super) fn stretch_if_stuck(&mut self, stream: u64) {
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
    pub(super) fn end_stretch(&mut self, stream: u64) {
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

    fn consume_connection(&mut self, stream: u64, len: u64) -> Result<(), CloseReason> {
        if self.window.consume(len) {
            Ok(())
        } else {
            Err(CloseReason::FlowControl(stream))
        }
    }

    /// Credit from the peer: stream 0 for the connection, else for one stream.
    fn handle_window_update(&mut self, stream: u64, data: &[u8]) -> Result<(), CloseReason> {
        let credit = match read_varint(data) {
            Ok(Some((credit, used))) if used == data.len() => credit,
            _ => return Err(CloseReason::BadWindowUpdate(stream)),
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
    fn handle_ping(&mut self, kind: Kind, stream: u64, data: &[u8]) -> Result<(), CloseReason> {
        let token = match read_varint(data) {
            Ok(Some((token, used))) if used == data.len() && stream == 0 => token,
            _ => return Err(CloseReason::BadPing(stream)),
        };
        if kind == Kind::PING {
            self.pong_due = Some(token);
            return Ok(());
        }
        let floor = self.config.min_connection_window;
        let drained = self.window.target() <= floor;
        let limits = (floor, self.config.max_connection_window);
        let aimed = self.window.aimed();
        if let Some(rtt) = self.bdp.round_trip(token, self.now()) {
            self.metrics.round_trips.record_duration(rtt);
        }
        if let Some(size) = self.bdp.on_pong(token, self.now(), aimed, drained, limits) {
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

    fn handle_packet(&mut self, packet: Packet) -> Result<(), CloseReason> {
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
            kind => return Err(CloseReason::UnknownKind(kind)),
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
                    return Err(CloseReason::UnreadLimit {
                        stream,
                        max: self.config.max_unread_per_stream,
                    });
                }
                state.inbox.push_back(packet.data);
                self.report(Output::Readable(stream));
            }
            Kind::CLOSE_SEND => {
                state.recv_closed = true;
                if state.send_closed {
                    state.terminate(End::Completed);
                }
                self.report(Output::RemoteClosedSend(stream));
            }
            Kind::CLOSE => {
                state.terminate(End::RemoteClose);
                self.report(Output::RemoteClosed(stream));
            }
            Kind::CANCEL => {
                state.terminate(End::RemoteCancel);
                self.report(Output::RemoteCanceled(stream));
            }
            Kind::ERROR => {
                let error = ErrorBody::decode(packet.data);
                state.terminate(End::RemoteError(error.clone()));
                self.report(Output::RemoteError { stream, error });
            }
            kind => return Err(CloseReason::UnexpectedPacket { kind, stream }),
        }
        self.release_stream(stream, release);
        self.finish_if_done(stream);
        Ok(())
    }

    /// A packet for a stream the session does not hold: a late one for a finished stream, or
    /// (compat server) the start of a new one.
    fn handle_new_stream_packet(&mut self, packet: Packet) -> Result<(), CloseReason> {
        let stream = packet.id.stream;
        if stream <= self.highest_stream {
            return Ok(());
        }
        let starts_stream = matches!(packet.kind, Kind::INVOKE | Kind::INVOKE_METADATA);
        if self.role == Role::Client || !starts_stream {
            return Err(CloseReason::UnexpectedPacket {
                kind: packet.kind,
                stream,
            });
        }
        // One active stream at a time: a new call replaces an unfinished one. Replaced streams
        // lose the messages the application has not read, so an application that never reads
        // holds no data for them, but keep how they ended until it is read (a Cancel and the
        // next Invoke can arrive in one read); past the stream limit new calls are refused.
        let older: Vec<u64> = self.streams.keys().copied().collect();
        for old in older {
            if let Some(state) = self.streams.get_mut(&old) {
                if state.end.is_none() {
                    state.terminate(End::RemoteCancel);
                    self.report(Output::RemoteCanceled(old));
                }
            }
            self.discard_unread(old);
            self.finish_if_done(old);
        }
        self.highest_stream = stream;
        if self.at_stream_limit() {
            self.refuse(stream);
            return Ok(());
        }
        let state = self.new_stream(false);
        self.streams.insert(stream, state);
        self.metrics.streams_opened += 1;
        self.handle_invoke(packet)
    }

    /// (Server) InvokeMetadata or Invoke on a stream not yet invoked.
    fn handle_invoke(&mut self, packet: Packet) -> Result<(), CloseReason> {
        let stream = packet.id.stream;
        let Some(state) = self.streams.get_mut(&stream) else {
            return Ok(());
        };
        if packet.kind == Kind::INVOKE_METADATA {
            let len = packet.data.len();
            if len > self.config.max_metadata_len {
                return Err(CloseReason::MetadataLimit {
                    len,
                    max: self.config.max_metadata_len,
                });
            }
            state.metadata = Some(Metadata::decode(&packet.data)?);
            return Ok(());
        }
        state.invoked = true;
        let metadata = state.metadata.take().unwrap_or_default();
        self.busy();
        self.report(Output::Opened {
            stream,
            rpc: packet.data,
            metadata,
        });
        Ok(())
    }
}
