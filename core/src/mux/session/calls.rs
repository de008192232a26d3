//! The application's calls: open, send, close, cancel and read streams.

use bytes::{Bytes, BytesMut};

use super::machine::packet;
use super::stream::{End, Stream};
use super::{Mode, Recv, Role, Session, SessionError};
use crate::mux::wire::{ErrorBody, Id, Kind, Metadata, Packet};
use crate::time::Instant;

impl Session {
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
        self.tick(now);
        let stream = self.highest_stream + 1;
        self.highest_stream = stream;
        let mut state = self.new_stream(true);
        // Invokes go out at once, ahead of any queued data, so the peer sees streams open in
        // the order of their ids.
        if !metadata.is_empty() {
            let mut data = BytesMut::with_capacity(metadata.encoded_len());
            // A BytesMut grows as needed, so encoding cannot fail.
            let encoded = metadata.encode(&mut data);
            debug_assert!(encoded.is_ok());
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
    /// [`Output::Writable`](super::Output::Writable) follows when there is room again.
    pub fn send(&mut self, now: Instant, stream: u64, message: Bytes) -> Result<(), SessionError> {
        self.check_open()?;
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
        self.tick(now);
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
        if !self.streams.contains_key(&stream) {
            return self.missing(stream);
        }
        self.tick(now);
        let Some(state) = self.streams.get_mut(&stream) else {
            return Ok(());
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
    /// the peer; reading the end of a finished stream frees it
    /// ([`Output::Finished`](super::Output::Finished)). A stream
    /// that finished earlier reads as [`Recv::Eof`].
    pub fn read(&mut self, stream: u64) -> Result<Recv, SessionError> {
        self.check_open()?;
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
    /// Does nothing once the connection has failed.
    pub fn drop_stream(&mut self, stream: u64) {
        if self.outputs.closed {
            return;
        }
        if let Some(state) = self.streams.get_mut(&stream) {
            state.dropped = true;
        }
        self.discard_unread(stream);
        self.finish_if_done(stream);
    }

    /// Drop what `stream` holds for the application and give its credit back.
    pub(super) fn discard_unread(&mut self, stream: u64) {
        if let Some(state) = self.streams.get_mut(&stream) {
            state.inbox.clear();
            let unread = core::mem::take(&mut state.unread) as u64;
            self.release_stream(stream, unread);
        }
    }

    /// Apply a closing `action` to a stream that has not terminated; on a finished or
    /// terminated one it is a no-op, as Go's close calls are.
    pub(super) fn end_stream(
        &mut self,
        now: Instant,
        stream: u64,
        action: impl FnOnce(&mut Stream),
    ) -> Result<(), SessionError> {
        self.check_open()?;
        if !self.streams.contains_key(&stream) {
            return self.missing(stream);
        }
        self.tick(now);
        let Some(state) = self.streams.get_mut(&stream) else {
            return Ok(());
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
}
