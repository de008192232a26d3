//! The connection task: it owns the session and the transport, and serves the handles.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::mpsc;
use tokio::time::sleep_until;
use tracing::Instrument;
use weir::mux::session::{Config, Mode, Output, Recv, Role, Session, SessionError};
use weir::mux::wire::Metadata;
use weir::time::Instant;

use crate::budget::{Account, Allowance, Gauge};
use crate::handle::{Command, Handle, Op, Reply, ReplyTx, Stream};
use crate::incoming::IncomingStream;
use crate::Error;

/// Commands waiting in the channel to the task at most.
const COMMAND_QUEUE: usize = 64;
/// Bytes read from the transport at a time at most.
const READ_CHUNK: usize = 256 << 10;
/// Chunks one vectored write takes at most.
const WRITE_SLICES: usize = 32;
/// Bytes read and written after which the task lets the others on its worker run. The socket
/// is often ready again at once during bulk transfers, and tokio's own budget (128 operations)
/// would let one poll move 32 MiB and last 20 ms while the tasks of a small call wait.
const YIELD_AFTER: usize = 256 << 10;

/// A stream's parked requests: a `recv` waiting for data, a `send` waiting for room.
#[derive(Default)]
struct Waiters {
    recv: Option<ReplyTx>,
    send: Option<ParkedSend>,
    /// The stream belongs to a unary call (`Op::Call`): release it once `recv` is answered.
    call: bool,
}

struct ParkedSend {
    message: Bytes,
    /// Close the send side once the message is queued (`Op::SendLast`).
    last: bool,
    reply: ReplyTx,
}

/// A stream to open once the session allows it; with `call`, the request of a unary call.
struct PendingOpen {
    rpc: Bytes,
    metadata: Metadata,
    call: Option<Bytes>,
    reply: ReplyTx,
}

/// Start a connection task for `role` on `io`; returns the handle to it and, for a server,
/// the queue of incoming streams.
///
/// Unless `config` bounds them already, the bytes framed ahead of the transport are bounded to
/// one `max_transmit`: messages wait in the session, where the streams' send queues push back
/// on `send` and the scheduler interleaves the streams, rather than in the write buffer.
///
/// With `budget`, the task accounts what it buffers into the server's total and reads no
/// more while that total is over the budget (see [`Account::may_read`]).
pub(crate) fn spawn<IO>(
    io: IO,
    role: Role,
    mut config: Config,
    budget: Option<Account>,
) -> (Handle, Option<mpsc::Receiver<IncomingStream>>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    config.max_unwritten.get_or_insert(config.max_transmit);
    let span = tracing::info_span!("weir.connection", ?role, mode = ?config.mode);
    let (commands_tx, commands) = mpsc::channel(COMMAND_QUEUE);
    let (releases_tx, releases) = mpsc::unbounded_channel();
    let failure = Arc::new(OnceLock::new());
    let handle = Handle {
        commands: commands_tx,
        releases: releases_tx,
        failure: failure.clone(),
        span: span.clone(),
    };
    // Streams can be open and ended-but-unread up to twice the limit; one more for compat.
    let (incoming_tx, incoming) = match role {
        Role::Server => {
            let (tx, rx) = mpsc::channel(config.max_concurrent_streams.saturating_mul(2).max(1));
            (Some(tx), Some(rx))
        }
        Role::Client => (None, None),
    };
    let (reader, writer) = tokio::io::split(io);
    let driver = Driver {
        session: Session::new(role, config),
        epoch: tokio::time::Instant::now(),
        reader,
        writer,
        input: BytesMut::with_capacity(READ_CHUNK),
        out: Vec::new(),
        out_pos: 0,
        commands,
        releases,
        weak: (handle.commands.downgrade(), handle.releases.downgrade()),
        incoming: incoming_tx,
        span: span.clone(),
        waiters: BTreeMap::new(),
        opens: VecDeque::new(),
        handles_gone: false,
        eof: false,
        held: false,
        failure,
        budget,
    };
    tokio::spawn(driver.run().instrument(span));
    (handle, incoming)
}

struct Driver<IO> {
    session: Session,
    epoch: tokio::time::Instant,
    reader: ReadHalf<IO>,
    writer: WriteHalf<IO>,
    input: BytesMut,
    /// Bytes to write, as the session handed them out (message data is not copied);
    /// `out[out_pos..]` is unwritten, the first of them maybe in part (it is advanced).
    out: Vec<Bytes>,
    out_pos: usize,
    commands: mpsc::Receiver<Command>,
    releases: mpsc::UnboundedReceiver<u64>,
    /// To make handles for incoming streams without keeping the task alive by holding one.
    weak: (mpsc::WeakSender<Command>, mpsc::WeakUnboundedSender<u64>),
    incoming: Option<mpsc::Sender<IncomingStream>>,
    span: tracing::Span,
    waiters: BTreeMap<u64, Waiters>,
    /// (Client) Opens waiting for the session to allow another stream.
    opens: VecDeque<PendingOpen>,
    /// Every handle is dropped: finish writing and stop.
    handles_gone: bool,
    /// The peer closed its sending side.
    eof: bool,
    /// `input` may hold whole frames the session did not take, its output being full.
    held: bool,
    failure: Arc<OnceLock<Error>>,
    /// This connection's share of its server's buffered bytes, if the server has a budget.
    budget: Option<Account>,
}

impl<IO: AsyncRead + AsyncWrite + Unpin + Send + 'static> Driver<IO> {
    async fn run(mut self) {
        let error = match self.serve().await {
            Ok(()) => {
                // Best effort: the peer sees the end of the stream; nothing waits on it.
                let _ = self.writer.shutdown().await;
                Error::ConnectionClosed
            }
            Err(e) => {
                tracing::debug!(error = %e, "connection failed");
                e
            }
        };
        let _ = self.failure.set(error.clone());
        for (_, waiters) in std::mem::take(&mut self.waiters) {
            if let Some(tx) = waiters.recv {
                let _ = tx.send(Err(error.clone()));
            }
            if let Some(send) = waiters.send {
                let _ = send.reply.send(Err(error.clone()));
            }
        }
        for open in self.opens.drain(..) {
            let _ = open.reply.send(Err(error.clone()));
        }
    }

    fn now(&self) -> Instant {
        Instant::from_nanos(self.epoch.elapsed().as_nanos() as u64)
    }

    async fn serve(&mut self) -> Result<(), Error> {
        // The session's timers start at the first time it sees.
        let now = self.now();
        self.session.handle_timeout(now);
        let mut moved = 0;
        loop {
            if moved >= YIELD_AFTER {
                moved = 0;
                tokio::task::yield_now().await;
            }
            if self.held && self.wants_input() {
                self.feed()?;
            }
            self.pump()?;
            if self.handles_gone && self.out_pos == self.out.len() {
                return Ok(());
            }
            let mut allowance = self.allowance();
            // Over the budget: wait for a change, registered before asking again so that none
            // between the two is missed.
            let gauge = match allowance {
                Allowance::None => self.budget.as_ref().map(Account::gauge),
                Allowance::Any | Allowance::UpTo(_) => None,
            };
            let mut changed = std::pin::pin!(gauge.as_deref().map(Gauge::changed));
            if let Some(changed) = changed.as_mut().as_pin_mut() {
                changed.enable();
                allowance = self.allowance();
            }
            let ready = !self.eof && self.wants_input();
            let read = ready && allowance != Allowance::None;
            let over_budget = ready && allowance == Allowance::None;
            let limit = match allowance {
                Allowance::UpTo(n) => n.min(READ_CHUNK as u64),
                Allowance::Any | Allowance::None => READ_CHUNK as u64,
            };
            let writing = self.out_pos < self.out.len();
            let timer = self
                .session
                .poll_timeout()
                .map(|at| self.epoch + Duration::from_nanos(at.as_nanos()));
            self.input.reserve(READ_CHUNK);
            let mut slices = [std::io::IoSlice::new(&[]); WRITE_SLICES];
            let mut count = 0;
            for (slice, chunk) in slices.iter_mut().zip(&self.out[self.out_pos..]) {
                *slice = std::io::IoSlice::new(chunk);
                count += 1;
            }
            // Not biased: a socket that always takes more bytes must not starve the commands
            // and reads (a small call's request and reply would wait behind the bulk).
            tokio::select! {
                written = self.writer.write_vectored(&slices[..count]), if writing => {
                    match written? {
                        0 => return Err(std::io::Error::from(std::io::ErrorKind::WriteZero).into()),
                        n => {
                            moved += n;
                            self.written(n);
                        }
                    }
                }
                Some(id) = self.releases.recv() => self.release(id),
                command = self.commands.recv(), if !self.handles_gone => match command {
                    Some(command) => self.command(command),
                    None => self.handles_gone = true,
                },
                () = async { changed.as_mut().as_pin_mut().expect("guarded").await }, if over_budget => {}
                got = async { (&mut self.reader).take(limit).read_buf(&mut self.input).await }, if read => {
                    let got = got?;
                    moved += got;
                    if got == 0 {
                        self.peer_closed();
                    } else {
                        self.feed()?;
                    }
                }
                () = sleep_until(timer.unwrap_or(self.epoch)), if timer.is_some() => {
                    let now = self.now();
                    self.session.handle_timeout(now);
                }
            }
        }
    }

    /// Hand the session what `input` holds. While its output waits for a peer that does not
    /// read, the session takes no more: the rest stays in `input` and nothing more is read.
    fn feed(&mut self) -> Result<(), Error> {
        let now = self.now();
        self.session
            .handle_input_buf(now, &mut self.input)
            .map_err(Error::from_session)?;
        self.held = !self.session.wants_input();
        Ok(())
    }

    /// Stop reading while the peer leaves `max_queued_output` bytes unread. Compat mode has no
    /// credit: stop reading too while the application is behind, unless it waits for data (a
    /// partly received message must be able to complete).
    fn wants_input(&self) -> bool {
        let config = self.session.config();
        self.session.wants_input()
            && (config.mode == Mode::Mux
                || self.session.buffered_bytes() < (config.max_unread_per_stream / 2) as u64
                || self.waiters.values().any(|w| w.recv.is_some()))
    }

    /// Account what the connection holds now (the session's unread messages and unfinished
    /// packets, and the bytes read but not taken) and say how much the server's budget lets it read. A
    /// connection whose application waits for a message may be the one that reads past the
    /// budget, so that it can complete.
    fn allowance(&mut self) -> Allowance {
        let Some(account) = self.budget.as_mut() else {
            return Allowance::Any;
        };
        account.set(self.session.held_input_bytes() + self.input.len() as u64);
        account.may_read(self.waiters.values().any(|w| w.recv.is_some()))
    }

    /// Handle every output and retry parked requests, until nothing moves.
    fn pump(&mut self) -> Result<(), Error> {
        loop {
            let mut moved = false;
            while let Some(output) = self.session.poll_output() {
                moved = true;
                self.output(output)?;
            }
            moved |= self.retry_opens();
            if !moved {
                return Ok(());
            }
        }
    }

    /// `n` bytes of `out` went to the transport.
    fn written(&mut self, mut n: usize) {
        self.session.handle_written(n);
        while n > 0 {
            let Some(chunk) = self.out.get_mut(self.out_pos) else {
                return;
            };
            if n < chunk.len() {
                chunk.advance(n);
                return;
            }
            n -= chunk.len();
            self.out_pos += 1;
        }
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        }
    }

    fn output(&mut self, output: Output) -> Result<(), Error> {
        match output {
            Output::Transmit(bytes) => self.out.push(bytes),
            Output::Opened {
                stream,
                rpc,
                metadata,
            } => self.opened(stream, rpc, metadata),
            Output::Readable(stream)
            | Output::RemoteClosedSend(stream)
            | Output::RemoteError { stream, .. }
            | Output::RemoteCanceled(stream)
            | Output::RemoteClosed(stream)
            | Output::Writable(stream) => self.retry(stream),
            Output::Finished(stream) => {
                self.retry(stream);
                tracing::trace!(stream, "finished");
            }
            Output::Closed(reason) => return Err(Error::Protocol(reason)),
        }
        Ok(())
    }

    /// (Server) A new stream: hand it to `accept`, or refuse it if nobody accepts.
    fn opened(&mut self, stream: u64, rpc: Bytes, metadata: Metadata) {
        let rpc = String::from_utf8_lossy(&rpc).into_owned();
        tracing::debug!(stream, %rpc, "incoming stream");
        let handle = match (self.weak.0.upgrade(), self.weak.1.upgrade()) {
            (Some(commands), Some(releases)) => Some(Handle {
                commands,
                releases,
                failure: self.failure.clone(),
                span: self.span.clone(),
            }),
            _ => None,
        };
        let accepted = match (handle, &self.incoming) {
            (Some(handle), Some(incoming)) => {
                let span =
                    tracing::debug_span!(parent: &self.span, "stream", id = stream, rpc = %rpc);
                let handle = Stream::new(stream, handle, span);
                incoming
                    .try_send(IncomingStream::new(rpc, metadata, handle))
                    .is_ok()
            }
            _ => false,
        };
        if !accepted {
            let now = self.now();
            let _ = self
                .session
                .send_error(now, stream, 0, "the server is not accepting streams");
            self.session.drop_stream(stream);
        }
    }

    fn command(&mut self, Command { stream, op, reply }: Command) {
        let now = self.now();
        let last = matches!(op, Op::SendLast(_));
        let result = match op {
            Op::Open { rpc, metadata } => {
                self.opens.push_back(PendingOpen {
                    rpc,
                    metadata,
                    call: None,
                    reply,
                });
                self.retry_opens();
                return;
            }
            Op::Call {
                rpc,
                metadata,
                request,
            } => {
                self.opens.push_back(PendingOpen {
                    rpc,
                    metadata,
                    call: Some(request),
                    reply,
                });
                self.retry_opens();
                return;
            }
            Op::Recv => {
                self.waiters.entry(stream).or_default().recv = Some(reply);
                self.retry(stream);
                return;
            }
            Op::Send(message) | Op::SendLast(message) => {
                self.waiters.entry(stream).or_default().send = Some(ParkedSend {
                    message,
                    last,
                    reply,
                });
                self.retry(stream);
                return;
            }
            Op::CloseSend => self.session.close_send(now, stream),
            Op::Close => self.session.close(now, stream),
            Op::Cancel => self.session.cancel(now, stream),
            Op::SendError { code, message } => self.session.send_error(now, stream, code, message),
            Op::Metrics => {
                let _ = reply.send(Ok(Reply::Metrics(Box::new(self.session.metrics()))));
                return;
            }
        };
        let _ = reply.send(result.map(|()| Reply::Done).map_err(Error::from_session));
        // Ending a stream locally ends its parked requests too.
        self.retry(stream);
    }

    /// Answer `stream`'s parked requests that can be answered now.
    fn retry(&mut self, stream: u64) {
        let now = self.now();
        let mux = self.is_mux();
        let Some(waiters) = self.waiters.get_mut(&stream) else {
            return;
        };
        if let Some(tx) = waiters.recv.take() {
            let answer = match self.session.read(stream) {
                Ok(Recv::Pending) if self.eof => Some(Err(Error::PeerClosed)),
                Ok(Recv::Pending) => None,
                Ok(Recv::Message(m)) => Some(Ok(Reply::Message(Some(m)))),
                Ok(Recv::Eof) => Some(Ok(Reply::Message(None))),
                Ok(Recv::Failed(body)) => Some(Err(Error::Remote {
                    code: body.code,
                    message: String::from_utf8_lossy(&body.message).into_owned(),
                })),
                Ok(Recv::Canceled) => Some(Err(Error::Canceled)),
                Err(e) => Some(Err(Error::from_session(e))),
            };
            match answer {
                Some(answer) => {
                    let _ = tx.send(answer);
                    if waiters.call {
                        // The call is over: what `Client::call` did with `close` and a drop.
                        self.waiters.remove(&stream);
                        self.release(stream);
                        return;
                    }
                }
                None => waiters.recv = Some(tx),
            }
        }
        if let Some(send) = waiters.send.take() {
            match self.session.send(now, stream, send.message.clone()) {
                Err(SessionError::SendBufferFull(_)) if self.eof && mux => {
                    let _ = send.reply.send(Err(Error::PeerClosed));
                }
                Err(SessionError::SendBufferFull(_)) => waiters.send = Some(send),
                result => {
                    let result = match result {
                        Ok(()) if send.last => self.session.close_send(now, stream),
                        other => other,
                    };
                    let _ = send
                        .reply
                        .send(result.map(|()| Reply::Done).map_err(Error::from_session));
                }
            }
        }
        if waiters.recv.is_none() && waiters.send.is_none() {
            self.waiters.remove(&stream);
        }
    }

    /// (Client) Run the unary call on the `stream` just opened: send `request`, close the send
    /// side and wait for the reply.
    fn start_call(&mut self, stream: u64, request: Bytes, reply: ReplyTx) {
        let now = self.now();
        let sent = self
            .session
            .send(now, stream, request)
            .and_then(|()| self.session.close_send(now, stream))
            .map_err(Error::from_session);
        match sent {
            // The server may answer before reading the request (an unknown rpc, say): its
            // reply says why.
            Ok(()) | Err(Error::SendClosed) => {
                let waiters = self.waiters.entry(stream).or_default();
                waiters.recv = Some(reply);
                waiters.call = true;
                self.retry(stream);
            }
            Err(e) => {
                let _ = reply.send(Err(e));
                self.release(stream);
            }
        }
    }

    fn is_mux(&self) -> bool {
        self.session.config().mode == Mode::Mux
    }

    /// Open the parked streams the session allows now, in order; true if any opened.
    fn retry_opens(&mut self) -> bool {
        let mut opened = false;
        while let Some(open) = self.opens.pop_front() {
            if self.eof {
                let _ = open.reply.send(Err(Error::PeerClosed));
                continue;
            }
            let now = self.now();
            match self
                .session
                .open_stream(now, open.rpc.clone(), &open.metadata)
            {
                Err(SessionError::StreamBusy | SessionError::TooManyStreams(_)) => {
                    self.opens.push_front(open);
                    break;
                }
                result => {
                    opened = true;
                    if let Ok(stream) = result {
                        tracing::debug!(stream, "opened");
                    }
                    match (result, open.call) {
                        (Ok(stream), Some(request)) => self.start_call(stream, request, open.reply),
                        (result, _) => {
                            let _ = open
                                .reply
                                .send(result.map(Reply::Opened).map_err(Error::from_session));
                        }
                    }
                }
            }
        }
        opened
    }

    /// No handle refers to `stream` any more.
    fn release(&mut self, stream: u64) {
        let now = self.now();
        // Either may find the stream over already; that is fine.
        let _ = match self.session.role() {
            Role::Client => self.session.close(now, stream),
            Role::Server => self.session.close_send(now, stream),
        };
        self.session.drop_stream(stream);
        self.waiters.remove(&stream);
    }

    /// The peer will send nothing more: requests that need its data fail; the rest go on.
    fn peer_closed(&mut self) {
        tracing::debug!("peer closed its side");
        self.eof = true;
        self.incoming = None;
        let streams: Vec<u64> = self.waiters.keys().copied().collect();
        for stream in streams {
            self.retry(stream);
        }
        self.retry_opens();
    }
}
