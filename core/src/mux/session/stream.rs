//! One stream's state, with Go DRPC's lifecycle: each side closes its sending half, and the
//! stream terminates when both have, or at once on a Close, Cancel or Error from either side.

use alloc::collections::VecDeque;

use bytes::Bytes;

use super::credit::RecvWindow;
use crate::mux::wire::{ErrorBody, Kind, Metadata};

/// What `Session::read` found on a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recv {
    /// The next message.
    Message(Bytes),
    /// Nothing yet: wait for an `Output::Readable` (or the stream's end).
    Pending,
    /// The peer sent everything it will (it closed its send side or the stream).
    Eof,
    /// The peer failed the stream with this error.
    Failed(ErrorBody),
    /// The stream was canceled: by the peer, or by this side (cancel, close or error).
    Canceled,
}

/// Why a stream terminated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum End {
    /// Both sides closed their send halves.
    Completed,
    /// The peer sent Close.
    RemoteClose,
    /// The peer sent Error.
    RemoteError(ErrorBody),
    /// The peer sent Cancel.
    RemoteCancel,
    /// This side sent Close, Cancel or Error.
    Local,
}

impl End {
    /// What a read returns once the queued messages are gone.
    pub(super) fn recv(&self) -> Recv {
        match self {
            End::Completed | End::RemoteClose => Recv::Eof,
            End::RemoteError(error) => Recv::Failed(error.clone()),
            End::RemoteCancel | End::Local => Recv::Canceled,
        }
    }
}

/// A packet waiting for its turn to be framed: a Message, or a CloseSend, Close or Error that
/// must follow the messages queued before it.
#[derive(Debug)]
pub(super) struct Outgoing {
    pub kind: Kind,
    pub message: u64,
    pub data: Bytes,
}

#[derive(Debug)]
pub(super) struct Stream {
    /// The message id of the next packet this side sends on the stream.
    pub next_message: u64,
    pub send_closed: bool,
    pub recv_closed: bool,
    pub end: Option<End>,
    /// The application has seen how the stream ended (a read returned it, or it ended it).
    pub end_seen: bool,
    /// The application will not read any more: messages are dropped on arrival.
    pub dropped: bool,
    /// A read returned the end of the peer's messages.
    pub eof_seen: bool,
    pub inbox: VecDeque<Bytes>,
    pub unread: usize,
    /// (Server) metadata received ahead of the Invoke; taken when the Invoke arrives.
    pub metadata: Option<Metadata>,
    pub invoked: bool,

    /// Packets waiting to be framed, oldest first, and how much of the first one went out.
    pub outbox: VecDeque<Outgoing>,
    pub head_sent: usize,
    /// Message bytes in `outbox` not yet framed.
    pub queued: usize,
    /// `send` was refused for a full queue: report `Writable` when there is room.
    pub writer_waiting: bool,
    /// Listed in the session's round-robin of streams with something to frame.
    pub scheduled: bool,
    /// (Mux) Bytes the peer lets this side send.
    pub send_credit: u64,
    /// (Mux) What the peer may send on this stream.
    pub window: RecvWindow,
    /// (Mux) Message bytes received in frames of packets not complete yet.
    pub in_partial: u64,
}

impl Stream {
    pub fn new(invoked: bool, send_credit: u64, window: RecvWindow) -> Stream {
        Stream {
            next_message: 1,
            send_closed: false,
            recv_closed: false,
            end: None,
            end_seen: false,
            dropped: false,
            eof_seen: false,
            inbox: VecDeque::new(),
            unread: 0,
            metadata: None,
            invoked,
            outbox: VecDeque::new(),
            head_sent: 0,
            queued: 0,
            writer_waiting: false,
            scheduled: false,
            send_credit,
            window,
            in_partial: 0,
        }
    }

    /// The id for the next packet sent, counting it.
    pub fn take_message_id(&mut self) -> u64 {
        let id = self.next_message;
        self.next_message = self.next_message.wrapping_add(1);
        id
    }

    /// Still counts against the concurrency limit: not terminated, or (on the sending side)
    /// with packets that must reach the peer before a new stream's Invoke.
    pub fn is_active(&self) -> bool {
        self.end.is_none() || !self.outbox.is_empty()
    }

    pub fn can_send(&self) -> bool {
        !self.send_closed && self.end.is_none()
    }

    pub fn terminate(&mut self, end: End) {
        if self.end.is_none() {
            if matches!(
                end,
                End::RemoteClose | End::RemoteCancel | End::RemoteError(_)
            ) {
                // The peer takes nothing more on this stream: what waits to be sent never will.
                self.outbox.clear();
                self.head_sent = 0;
                self.queued = 0;
            }
            // The application knows how the stream ended if it ended it, or if it had read the
            // peer's end and then closed its own side.
            self.end_seen = end == End::Local || (end == End::Completed && self.eof_seen);
            self.end = Some(end);
        }
    }

    /// Queue a packet behind the ones already waiting.
    pub fn enqueue(&mut self, kind: Kind, data: Bytes) {
        let message = self.take_message_id();
        if kind == Kind::MESSAGE {
            self.queued += data.len();
        }
        self.outbox.push_back(Outgoing {
            kind,
            message,
            data,
        });
    }

    /// Over, sent, and nothing left for the application: the id can be forgotten.
    pub fn is_finished(&self) -> bool {
        self.end.is_some()
            && (self.end_seen || self.dropped)
            && self.inbox.is_empty()
            && self.outbox.is_empty()
    }

    pub fn read(&mut self) -> Recv {
        if let Some(message) = self.inbox.pop_front() {
            self.unread -= message.len();
            return Recv::Message(message);
        }
        match &self.end {
            Some(end) => {
                self.end_seen = true;
                end.recv()
            }
            None if self.recv_closed => {
                self.eof_seen = true;
                Recv::Eof
            }
            None => Recv::Pending,
        }
    }
}
