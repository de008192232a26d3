//! One stream's state, with Go DRPC's lifecycle: each side closes its sending half, and the
//! stream terminates when both have, or at once on a Close, Cancel or Error from either side.

use alloc::collections::VecDeque;

use bytes::Bytes;

use crate::mux::wire::{ErrorBody, Metadata};

/// What `Session::read` found on a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recv {
    /// The next message.
    Message(Bytes),
    /// Nothing yet: wait for an `Event::Readable` (or the stream's end).
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
    pub inbox: VecDeque<Bytes>,
    pub unread: usize,
    /// (Server) metadata received ahead of the Invoke; `None` once invoked.
    pub metadata: Option<Metadata>,
    pub invoked: bool,
}

impl Stream {
    pub fn new(invoked: bool) -> Stream {
        Stream {
            next_message: 1,
            send_closed: false,
            recv_closed: false,
            end: None,
            end_seen: false,
            dropped: false,
            inbox: VecDeque::new(),
            unread: 0,
            metadata: None,
            invoked,
        }
    }

    /// The id for the next packet sent, counting it.
    pub fn take_message_id(&mut self) -> u64 {
        let id = self.next_message;
        self.next_message = self.next_message.wrapping_add(1);
        id
    }

    pub fn can_send(&self) -> bool {
        !self.send_closed && self.end.is_none()
    }

    pub fn terminate(&mut self, end: End) {
        if self.end.is_none() {
            self.end_seen = end == End::Local;
            self.end = Some(end);
        }
    }

    /// Over, and nothing left for the application: the id can be forgotten.
    pub fn is_finished(&self) -> bool {
        self.end.is_some() && (self.end_seen || self.dropped) && self.inbox.is_empty()
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
            None if self.recv_closed => Recv::Eof,
            None => Recv::Pending,
        }
    }
}
