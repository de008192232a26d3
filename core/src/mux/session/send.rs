//! Framing queued packets: one frame per ready stream per turn, so every stream advances.
//!
//! A stream is listed in the round-robin while it has a packet to frame and may send it. Each
//! turn frames at most `split_size` bytes of its first packet (less if credit is short) and
//! puts the stream back at the end of the line. A small message on one stream therefore waits
//! behind at most one frame of every other stream, however large their messages are.

use super::{Mode, Output, Session};
use crate::mux::wire::{header_len, put_header, Frame, Id, Kind};

/// Frame data of this many bytes or more is handed out in an [`Output::Transmit`] of its own, a
/// slice of the application's message instead of a copy (4 KiB).
pub const ZERO_COPY_MIN: usize = 4096;

/// What one turn of a stream did.
enum Turn {
    /// Framed something; more may follow.
    Framed,
    /// Nothing framed: the queue is empty, or the next message waits for credit.
    Idle,
}

impl Session {
    /// Frame up to `max_transmit` bytes, one frame per ready stream per turn, and queue them as
    /// one batch of [`Output::Transmit`]: small frames and the control frames encoded before
    /// them share a buffer; the data of a frame of [`ZERO_COPY_MIN`] bytes or more is a slice
    /// of the message the application sent, in a `Transmit` of its own. No message is framed
    /// while `max_unwritten`, or half of `max_queued_output`, bytes wait for the transport.
    pub(super) fn fill_transmit(&mut self) {
        if let Some(token) = self.pong_due.take() {
            self.send_control(Kind::PONG, 0, token);
        }
        let mut appended = 0;
        let half = self.config.max_queued_output / 2;
        let cap = self.config.max_unwritten.map_or(half, |max| max.min(half));
        let room = (cap as u64).saturating_sub(self.outputs.unwritten);
        let limit = self
            .config
            .max_transmit
            .min(usize::try_from(room).unwrap_or(usize::MAX));
        while self.output.len() + appended < limit {
            let Some(stream) = self.ready.pop_front() else {
                break;
            };
            let turn = self.take_turn(stream, &mut appended);
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
        if !self.output.is_empty() {
            let bytes = self.output.split().freeze();
            self.push_transmit(bytes);
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

    /// Frame one piece of `stream`'s first queued packet, into the output or (large data) into
    /// a `Transmit` of its own, counting what went there in `appended`.
    fn take_turn(&mut self, stream: u64, appended: &mut usize) -> Turn {
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
        if frame.data.len() >= ZERO_COPY_MIN {
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
            let head = self.output.split().freeze();
            self.push_transmit(head);
            self.push_transmit(frame.data.clone());
        } else {
            self.output.reserve(frame.encoded_len());
            // The room was just reserved, so encoding cannot fail.
            let encoded = frame.encode(&mut self.output);
            debug_assert!(encoded.is_ok());
            self.note_queued();
        }
        self.metrics.bytes_sent += frame.encoded_len() as u64;
        if done {
            self.metrics.packets_sent += 1;
        }
        if writable {
            self.report(Output::Writable(stream));
        }
        Turn::Framed
    }
}
