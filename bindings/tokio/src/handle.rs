//! The application's side of a connection: commands to the connection task, and stream handles.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;
use weir::mux::session::Metrics;
use weir::mux::wire::Metadata;

use crate::Error;

/// What a handle asks the connection task to do on a stream.
#[derive(Debug)]
pub(crate) enum Op {
    Open {
        rpc: Bytes,
        metadata: Metadata,
    },
    /// A whole unary call in one request: open, send, close the send side, read the reply and
    /// close the stream.
    Call {
        rpc: Bytes,
        metadata: Metadata,
        request: Bytes,
    },
    Send(Bytes),
    /// Send, then close the send side.
    SendLast(Bytes),
    Recv,
    CloseSend,
    Close,
    Cancel,
    SendError {
        code: u64,
        message: String,
    },
    /// The session's counters (`stream` is 0).
    Metrics,
}

/// The connection task's answer.
#[derive(Debug)]
pub(crate) enum Reply {
    Opened(u64),
    Done,
    Message(Option<Bytes>),
    Metrics(Box<Metrics>),
}

pub(crate) type ReplyTx = oneshot::Sender<Result<Reply, Error>>;

/// One request to the connection task. `stream` is 0 for `Op::Open`.
#[derive(Debug)]
pub(crate) struct Command {
    pub stream: u64,
    pub op: Op,
    pub reply: ReplyTx,
}

/// A way to reach the connection task.
#[derive(Clone, Debug)]
pub(crate) struct Handle {
    pub commands: mpsc::Sender<Command>,
    pub releases: mpsc::UnboundedSender<u64>,
    /// Why the task ended, once it has.
    pub failure: Arc<OnceLock<Error>>,
    pub span: tracing::Span,
}

impl Handle {
    fn gone(&self) -> Error {
        self.failure
            .get()
            .cloned()
            .unwrap_or(Error::ConnectionClosed)
    }

    pub async fn request(&self, stream: u64, op: Op) -> Result<Reply, Error> {
        let (reply, answer) = oneshot::channel();
        let command = Command { stream, op, reply };
        if self.commands.send(command).await.is_err() {
            return Err(self.gone());
        }
        answer.await.unwrap_or_else(|_| Err(self.gone()))
    }

    /// A unary call, answered with the reply message (or why there is none).
    pub async fn call(
        &self,
        rpc: Bytes,
        metadata: Metadata,
        request: Bytes,
    ) -> Result<Bytes, Error> {
        let span =
            tracing::debug_span!(parent: &self.span, "call", rpc = %String::from_utf8_lossy(&rpc));
        let op = Op::Call {
            rpc,
            metadata,
            request,
        };
        match self.request(0, op).instrument(span).await? {
            Reply::Message(Some(message)) => Ok(message),
            Reply::Message(None) => Err(Error::PeerClosed),
            other => unreachable_reply(other),
        }
    }

    /// A snapshot of the session's counters, taken by the connection task.
    pub async fn metrics(&self) -> Result<Metrics, Error> {
        match self.request(0, Op::Metrics).await? {
            Reply::Metrics(metrics) => Ok(*metrics),
            other => unreachable_reply(other),
        }
    }

    pub async fn open(&self, rpc: Bytes, metadata: Metadata) -> Result<Stream, Error> {
        let span = tracing::debug_span!(parent: &self.span, "stream", rpc = %String::from_utf8_lossy(&rpc), id = tracing::field::Empty);
        match self
            .request(0, Op::Open { rpc, metadata })
            .instrument(span.clone())
            .await?
        {
            Reply::Opened(id) => {
                span.record("id", id);
                Ok(Stream::new(id, self.clone(), span))
            }
            other => unreachable_reply(other),
        }
    }
}

/// The connection task answers `Op::Open` with `Reply::Opened`, `Op::Recv` with
/// `Reply::Message` and `Op::Metrics` with `Reply::Metrics`; anything else would be a bug in this crate, reported as a closed
/// connection rather than a panic.
fn unreachable_reply<T>(reply: Reply) -> Result<T, Error> {
    debug_assert!(false, "unexpected reply {reply:?}");
    Err(Error::ConnectionClosed)
}

/// Tells the connection task that no handle refers to a stream any more.
#[derive(Debug)]
struct Release {
    id: u64,
    releases: mpsc::UnboundedSender<u64>,
}

impl Drop for Release {
    fn drop(&mut self) {
        // The task may have ended already; then there is nothing to release.
        let _ = self.releases.send(self.id);
    }
}

/// One stream of a connection, client or server side.
///
/// Dropping the last handle to a stream releases it: a client closes it (Go's `Close`), a
/// server closes its send side; unread messages are dropped and their credit returned.
#[derive(Debug)]
pub struct Stream {
    id: u64,
    handle: Handle,
    span: tracing::Span,
    release: Arc<Release>,
    /// This handle canceled the stream: the session forgets it at once, so the handle
    /// remembers why it ended.
    canceled: bool,
}

impl Stream {
    pub(crate) fn new(id: u64, handle: Handle, span: tracing::Span) -> Stream {
        let release = Arc::new(Release {
            id,
            releases: handle.releases.clone(),
        });
        Stream {
            id,
            handle,
            span,
            release,
            canceled: false,
        }
    }

    /// A second handle on the same stream; the stream is released when both are dropped.
    pub(crate) fn share(&self) -> Stream {
        Stream {
            id: self.id,
            handle: self.handle.clone(),
            span: self.span.clone(),
            release: self.release.clone(),
            canceled: self.canceled,
        }
    }

    /// The stream's id on the connection.
    pub fn id(&self) -> u64 {
        self.id
    }

    async fn request(&self, op: Op) -> Result<Reply, Error> {
        if self.canceled {
            return Err(Error::Canceled);
        }
        self.handle
            .request(self.id, op)
            .instrument(self.span.clone())
            .await
    }

    async fn done(&self, op: Op) -> Result<(), Error> {
        self.request(op).await.map(|_| ())
    }

    /// Send one message. Waits while the stream's send queue is full (a slow receiver slows
    /// the sender down instead of growing a buffer).
    pub async fn send(&mut self, message: impl Into<Bytes>) -> Result<(), Error> {
        self.done(Op::Send(message.into())).await
    }

    /// Send one message and close the send side after it, in one request to the task.
    pub(crate) async fn send_last(&mut self, message: Bytes) -> Result<(), Error> {
        self.done(Op::SendLast(message)).await
    }

    /// The next message, or `None` once the peer has closed its send side.
    /// [`Error::Remote`] carries the peer's error code and message.
    ///
    /// Not cancel-safe: a message read while the future is dropped is lost.
    pub async fn recv(&mut self) -> Result<Option<Bytes>, Error> {
        match self.request(Op::Recv).await? {
            Reply::Message(message) => Ok(message),
            other => unreachable_reply(other),
        }
    }

    /// Close this side's sending half, after the messages already sent.
    pub async fn close_send(&mut self) -> Result<(), Error> {
        self.done(Op::CloseSend).await
    }

    /// Close the stream in both directions (Go's `Close`); unread messages are dropped.
    pub async fn close(&mut self) -> Result<(), Error> {
        self.done(Op::Close).await
    }

    /// Cancel the stream at once: queued and unread messages are dropped, and every later call
    /// on this handle fails with [`Error::Canceled`].
    pub async fn cancel(&mut self) -> Result<(), Error> {
        if self.canceled {
            return Ok(());
        }
        self.done(Op::Cancel).await?;
        self.canceled = true;
        Ok(())
    }

    /// End the stream with an error `code` and `message` for the peer.
    pub async fn send_error(&mut self, code: u64, message: impl Into<String>) -> Result<(), Error> {
        self.done(Op::SendError {
            code,
            message: message.into(),
        })
        .await
    }
}
