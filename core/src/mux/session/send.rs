//! Framing queued packets: one frame per ready stream per turn, so every stream advances.
//!
//! A stream is listed in the round-robin while it has a packet to frame and may send it. Each
//! turn frames at most `split_size` bytes of its first packet (less if credit is short) and
//! puts the stream back at the end of the line. A small message on one stream therefore waits
//! behind at most one frame of every other stream, however large their messages are.

use alloc::vec::Vec;

use bytes::Bytes;

use super::{Event, Mode, Session};
use crate::mux::wire::{header_len, put_header, Frame, Id, Kind};

/// Frame data of this many bytes or more is handed to [`Session::poll_transmit_chunks`]'s
/// caller as a slice of the application's message instead of being copied (4 KiB).
pub const ZERO_COPY_MIN: usize = 4096;

/// What one turn of a stream did.
enum Turn {
    /// Framed something; more may follow.
    Framed,
    /// Nothing framed: the queue is empty, or the next message waits for credit.
    Idle,
}

impl Session {
    /// Bytes to write to the peer: everything pending, up to `max_transmit` bytes, in one
    /// buffer. Drain until `None`.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        self.fill_transmit(None);
        if self.output.is_empty() {
            None
        } else {
            Some(self.output.split().freeze())
        }
    }

    /// [`Session::poll_transmit`] without copying large message data: appends the bytes to
    /// write to `chunks`, in order, and returns how many bytes it appended (0 once nothing is
    /// pending). Frame headers and small frames share buffers; the data of a frame of
    /// [`ZERO_COPY_MIN`] bytes or more is a slice of the message the application sent. Write
    /// the chunks in order, with vectored writes for instance.
    pub fn poll_transmit_chunks(&mut self, chunks: &mut Vec<Bytes>) -> usize {
        let before = chunks.len();
        self.fill_transmit(Some(chunks));
        if !self.output.is_empty() {
            chunks.push(self.output.split().freeze());
        }
        chunks[before..].iter().map(Bytes::len).sum()
    }

    /// Frame up to `max_transmit` bytes into the output, one frame per ready stream per turn.
    /// With `chunks`, large frame data goes there, uncopied, and the output before it with it.
    fn fill_transmit(&mut self, mut chunks: Option<&mut Vec<Bytes>>) {
        if let Some(token) = self.pong_due.take() {
            self.send_control(Kind::PONG, 0, token);
        }
        let mut appended = 0;
        while self.output.len() + appended < self.config.max_transmit {
            let Some(stream) = self.ready.pop_front() else {
                break;
            };
            let turn = self.take_turn(stream, chunks.as_deref_mut(), &mut appended);
            let state = self.streams.get_mut(&stream);
            match (turn, state) {
                (Turn::Framed, Some(state)) if !state.outbox.is_empty() => {
                    self.ready.push_back(stream);
                }
                (_, Some(state)) => state.scheduled = false,
                (_, None) => {}
            }
            self.finish_if_done(stream);
        }
    }

    /// List `stream` in the round-robin if it has something to frame.
    pub(super) fn schedule(&mut self, stream: u64) {
        if let Some(state) = self.streams.get_mut(&stream) {
            if !state.scheduled && !state.outbox.is_empty() {
                state.scheduled = true;
                self.ready.push_back(stream);
            }
        }
    }

    /// List every stream with something to frame (after connection credit came back).
    pub(super) fn schedule_all(&mut self) {
        let waiting: alloc::vec::Vec<u64> = self
            .streams
            .iter()
            .filter(|(_, s)| !s.scheduled && !s.outbox.is_empty())
            .map(|(id, _)| *id)
            .collect();
        for stream in waiting {
            self.schedule(stream);
        }
    }

    /// Frame one piece of `stream`'s first queued packet, into the output or (large data,
    /// with `chunks`) into `chunks`, counting what went there in `appended`.
    fn take_turn(
        &mut self,
        stream: u64,
        chunks: Option<&mut Vec<Bytes>>,
        appended: &mut usize,
    ) -> Turn {
        let mux = self.config.mode == Mode::Mux;
        let split = self.config.split_size.get();
        let limit = self.config.send_buffer_per_stream;
        let connection_credit = self.send_credit;
        let Some(state) = self.streams.get_mut(&stream) else {
            return Turn::Idle;
        };
        let Some(head) = state.outbox.front() else {
            return Turn::Idle;
        };
        let (kind, message) = (head.kind, head.message);
        let remaining = head.data.len() - state.head_sent;
        let mut len = remaining.min(split);
        if mux && kind == Kind::MESSAGE {
            let credit = state.send_credit.min(connection_credit);
            len = len.min(usize::try_from(credit).unwrap_or(usize::MAX));
            if len == 0 && remaining > 0 {
                return Turn::Idle;
            }
        }
        let start = state.head_sent;
        let data = head.data.slice(start..start + len);
        let done = start + len == head.data.len();
        let frame = Frame {
            kind,
            done,
            control: false,
            id: Id::new(stream, message),
            data,
        };
        if kind == Kind::MESSAGE {
            state.queued -= len;
            if mux {
                state.send_credit -= len as u64;
                self.send_credit -= len as u64;
            }
        }
        if done {
            state.outbox.pop_front();
            state.head_sent = 0;
        } else {
            state.head_sent += len;
        }
        let writable = state.writer_waiting && state.queued < limit;
        if writable {
            state.writer_waiting = false;
        }
        match chunks {
            Some(chunks) if frame.data.len() >= ZERO_COPY_MIN => {
                let data_len = frame.data.len();
                self.output.reserve(header_len(frame.id, data_len));
                put_header(
                    &mut self.output,
                    frame.kind,
                    frame.done,
                    frame.control,
                    frame.id,
                    data_len,
                );
                *appended += self.output.len() + data_len;
                chunks.push(self.output.split().freeze());
                chunks.push(frame.data.clone());
            }
            _ => {
                self.output.reserve(frame.encoded_len());
                // The room was just reserved, so encoding cannot fail.
                let encoded = frame.encode(&mut self.output);
                debug_assert!(encoded.is_ok());
            }
        }
        self.metrics.bytes_sent += frame.encoded_len() as u64;
        if done {
            self.metrics.packets_sent += 1;
        }
        if writable {
            self.events.push_back(Event::Writable { stream });
        }
        Turn::Framed
    }
}
