//! `mux`: the DRPC connection machine.
//!
//! ```js
//! const { mux } = require('weir')
//! const client = new mux.Session('client')                 // compat mode: new mux.Config()
//! const server = new mux.Session('server')
//! const stream = client.openStream(0n, '/echo.Echo/Unary')
//! client.send(0n, stream, Buffer.from('hi'))
//! const wire = client.pollOutput()                         // { type: 'transmit', data }
//! server.handleInput(0n, wire.data)
//! console.log(server.pollOutput())                         // { type: 'opened', stream: 1n, rpc, metadata }
//! ```

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use napi::bindgen_prelude::{BigInt, Either};
use napi_derive::napi;
use weir::mux::session as core;
use weir::mux::wire::{Metadata, SplitSize};
use weir::time::Instant;

use crate::buffer::Buffer;
use crate::errors::{refused, to_u64, to_usize, usage, Result};

/// The nanoseconds of a `Duration` as a `bigint`, saturating.
fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// A session's configuration. Sizes are bytes (`number`), times nanoseconds (`bigint`; `null`
/// for a timeout: no limit). `new Config()` holds the core's defaults (compat mode) and
/// `Config.mux()` the mux preset; either takes options that override single fields.
#[napi(namespace = "mux")]
#[derive(Clone)]
pub struct Config {
    /// `'compat'` (one stream at a time, byte for byte as Go DRPC) or `'mux'`.
    #[napi(readonly, ts_type = "'compat' | 'mux'")]
    pub mode: String,
    /// The largest frame data this session writes.
    #[napi(readonly)]
    pub split_size: f64,
    /// The largest packet accepted from the peer.
    #[napi(readonly)]
    pub max_packet_len: f64,
    /// Message bytes received on one stream and not yet read, past which the connection fails.
    #[napi(readonly)]
    pub max_unread_per_stream: f64,
    /// The largest metadata accepted with an Invoke.
    #[napi(readonly)]
    pub max_metadata_len: f64,
    /// Message bytes a stream queues before `send` refuses more.
    #[napi(readonly)]
    pub send_buffer_per_stream: f64,
    /// Bytes of one `transmit` output at most.
    #[napi(readonly)]
    pub max_transmit: f64,
    /// Bytes handed out and not confirmed written past which messages stay queued (`null`: no
    /// bound).
    #[napi(readonly)]
    pub max_unwritten: Option<f64>,
    /// Bytes produced for the peer and not confirmed written past which the session takes no
    /// input (`wantsInput()` is false).
    #[napi(readonly)]
    pub max_queued_output: f64,
    /// (Server) Time to the peer's first whole frame.
    #[napi(readonly)]
    pub handshake_timeout_ns: Option<u64>,
    /// (Server) Time the connection may hold no stream.
    #[napi(readonly)]
    pub idle_timeout_ns: Option<u64>,
    /// Streams open at once.
    #[napi(readonly)]
    pub max_concurrent_streams: f64,
    /// Mux: a stream's receive window before any WindowUpdate (must match the peer's).
    #[napi(readonly)]
    pub initial_stream_window: f64,
    /// Mux: the largest a stream's window grows to.
    #[napi(readonly)]
    pub max_stream_window: f64,
    /// Mux: what stream windows may grow to together.
    #[napi(readonly)]
    pub max_buffered_per_connection: f64,
    /// Mux: the connection's receive window before any WindowUpdate (must match the peer's).
    #[napi(readonly)]
    pub initial_connection_window: f64,
    /// Mux: the largest the connection's window grows to.
    #[napi(readonly)]
    pub max_connection_window: f64,
    /// Mux: the smallest the connection's window shrinks to.
    #[napi(readonly)]
    pub min_connection_window: f64,
    /// Mux: a window doubles when a whole window is read in less than this.
    #[napi(readonly)]
    pub autotune_interval_ns: u64,
}

/// Fields of a `Config` to set; the others keep the preset's value.
#[napi(object, namespace = "mux")]
pub struct ConfigOptions {
    #[napi(ts_type = "'compat' | 'mux'")]
    pub mode: Option<String>,
    pub split_size: Option<f64>,
    pub max_packet_len: Option<f64>,
    pub max_unread_per_stream: Option<f64>,
    pub max_metadata_len: Option<f64>,
    pub send_buffer_per_stream: Option<f64>,
    pub max_transmit: Option<f64>,
    #[napi(ts_type = "number | null")]
    pub max_unwritten: Option<Either<f64, napi::bindgen_prelude::Null>>,
    pub max_queued_output: Option<f64>,
    #[napi(ts_type = "bigint | null")]
    pub handshake_timeout_ns: Option<Either<BigInt, napi::bindgen_prelude::Null>>,
    #[napi(ts_type = "bigint | null")]
    pub idle_timeout_ns: Option<Either<BigInt, napi::bindgen_prelude::Null>>,
    pub max_concurrent_streams: Option<f64>,
    pub initial_stream_window: Option<f64>,
    pub max_stream_window: Option<f64>,
    pub max_buffered_per_connection: Option<f64>,
    pub initial_connection_window: Option<f64>,
    pub max_connection_window: Option<f64>,
    pub min_connection_window: Option<f64>,
    pub autotune_interval_ns: Option<BigInt>,
}

/// `Some(null)` is `None`, `Some(value)` is `Some(value)`, `None` keeps `old`.
fn nullable<T>(new: Option<Either<T, napi::bindgen_prelude::Null>>, old: Option<T>) -> Option<T> {
    match new {
        None => old,
        Some(Either::A(value)) => Some(value),
        Some(Either::B(_)) => None,
    }
}

/// A nullable time option as nanoseconds: `None` keeps `old`, `null` clears it.
fn nullable_time(
    what: &str,
    new: Option<Either<BigInt, napi::bindgen_prelude::Null>>,
    old: Option<u64>,
) -> Result<Option<u64>> {
    match new {
        None => Ok(old),
        Some(Either::A(n)) => to_u64(what, &n).map(Some),
        Some(Either::B(_)) => Ok(None),
    }
}

#[napi(namespace = "mux")]
impl Config {
    /// The core's defaults (compat mode), with `options` over them. Throws `WEIR_USAGE` for a
    /// bad value.
    #[napi(constructor)]
    pub fn new(options: Option<ConfigOptions>) -> Result<Config> {
        Config::from_core(&core::Config::default()).with(options)
    }

    /// The defaults in mux mode (many streams, credit, fair scheduling), with `options` over
    /// them.
    #[napi]
    pub fn mux(options: Option<ConfigOptions>) -> Result<Config> {
        Config::from_core(&core::Config::mux()).with(options)
    }
}

impl Config {
    fn with(mut self, options: Option<ConfigOptions>) -> Result<Config> {
        if let Some(o) = options {
            self.mode = o.mode.unwrap_or(self.mode);
            self.split_size = o.split_size.unwrap_or(self.split_size);
            self.max_packet_len = o.max_packet_len.unwrap_or(self.max_packet_len);
            self.max_unread_per_stream = o
                .max_unread_per_stream
                .unwrap_or(self.max_unread_per_stream);
            self.max_metadata_len = o.max_metadata_len.unwrap_or(self.max_metadata_len);
            self.send_buffer_per_stream = o
                .send_buffer_per_stream
                .unwrap_or(self.send_buffer_per_stream);
            self.max_transmit = o.max_transmit.unwrap_or(self.max_transmit);
            self.max_unwritten = nullable(o.max_unwritten, self.max_unwritten);
            self.max_queued_output = o.max_queued_output.unwrap_or(self.max_queued_output);
            self.handshake_timeout_ns = nullable_time(
                "handshakeTimeoutNs",
                o.handshake_timeout_ns,
                self.handshake_timeout_ns,
            )?;
            self.idle_timeout_ns =
                nullable_time("idleTimeoutNs", o.idle_timeout_ns, self.idle_timeout_ns)?;
            self.max_concurrent_streams = o
                .max_concurrent_streams
                .unwrap_or(self.max_concurrent_streams);
            self.initial_stream_window = o
                .initial_stream_window
                .unwrap_or(self.initial_stream_window);
            self.max_stream_window = o.max_stream_window.unwrap_or(self.max_stream_window);
            self.max_buffered_per_connection = o
                .max_buffered_per_connection
                .unwrap_or(self.max_buffered_per_connection);
            self.initial_connection_window = o
                .initial_connection_window
                .unwrap_or(self.initial_connection_window);
            self.max_connection_window = o
                .max_connection_window
                .unwrap_or(self.max_connection_window);
            self.min_connection_window = o
                .min_connection_window
                .unwrap_or(self.min_connection_window);
            if let Some(interval) = o.autotune_interval_ns {
                self.autotune_interval_ns = to_u64("autotuneIntervalNs", &interval)?;
            }
        }
        self.to_core()?;
        Ok(self)
    }

    fn from_core(c: &core::Config) -> Config {
        Config {
            mode: match c.mode {
                core::Mode::Mux => "mux",
                core::Mode::Compat => "compat",
            }
            .to_owned(),
            split_size: c.split_size.get() as f64,
            max_packet_len: c.max_packet_len as f64,
            max_unread_per_stream: c.max_unread_per_stream as f64,
            max_metadata_len: c.max_metadata_len as f64,
            send_buffer_per_stream: c.send_buffer_per_stream as f64,
            max_transmit: c.max_transmit as f64,
            max_unwritten: c.max_unwritten.map(|n| n as f64),
            max_queued_output: c.max_queued_output as f64,
            handshake_timeout_ns: c.handshake_timeout.map(nanos),
            idle_timeout_ns: c.idle_timeout.map(nanos),
            max_concurrent_streams: c.max_concurrent_streams as f64,
            initial_stream_window: c.initial_stream_window as f64,
            max_stream_window: c.max_stream_window as f64,
            max_buffered_per_connection: c.max_buffered_per_connection as f64,
            initial_connection_window: c.initial_connection_window as f64,
            max_connection_window: c.max_connection_window as f64,
            min_connection_window: c.min_connection_window as f64,
            autotune_interval_ns: nanos(c.autotune_interval),
        }
    }

    /// The core's configuration; `WEIR_USAGE` for a value it cannot hold.
    pub(crate) fn to_core(&self) -> Result<core::Config> {
        let size = to_usize;
        let wide = |what: &str, n: f64| size(what, n).map(|n| n as u64);
        let split_size = SplitSize::new(size("splitSize", self.split_size)?)
            .ok_or_else(|| usage("splitSize must be at least 1"))?;
        Ok(core::Config {
            mode: parse_mode(&self.mode)?,
            split_size,
            max_packet_len: size("maxPacketLen", self.max_packet_len)?,
            max_unread_per_stream: size("maxUnreadPerStream", self.max_unread_per_stream)?,
            max_metadata_len: size("maxMetadataLen", self.max_metadata_len)?,
            send_buffer_per_stream: size("sendBufferPerStream", self.send_buffer_per_stream)?,
            max_transmit: size("maxTransmit", self.max_transmit)?,
            max_unwritten: self
                .max_unwritten
                .map(|n| size("maxUnwritten", n))
                .transpose()?,
            max_queued_output: size("maxQueuedOutput", self.max_queued_output)?,
            handshake_timeout: self.handshake_timeout_ns.map(Duration::from_nanos),
            idle_timeout: self.idle_timeout_ns.map(Duration::from_nanos),
            max_concurrent_streams: size("maxConcurrentStreams", self.max_concurrent_streams)?,
            initial_stream_window: wide("initialStreamWindow", self.initial_stream_window)?,
            max_stream_window: wide("maxStreamWindow", self.max_stream_window)?,
            max_buffered_per_connection: wide(
                "maxBufferedPerConnection",
                self.max_buffered_per_connection,
            )?,
            initial_connection_window: wide(
                "initialConnectionWindow",
                self.initial_connection_window,
            )?,
            max_connection_window: wide("maxConnectionWindow", self.max_connection_window)?,
            min_connection_window: wide("minConnectionWindow", self.min_connection_window)?,
            autotune_interval: Duration::from_nanos(self.autotune_interval_ns),
        })
    }
}

fn parse_mode(mode: &str) -> Result<core::Mode> {
    match mode {
        "compat" => Ok(core::Mode::Compat),
        "mux" => Ok(core::Mode::Mux),
        _ => Err(usage(format!(
            "mode must be 'compat' or 'mux', not {mode:?}"
        ))),
    }
}

/// A histogram of power-of-two buckets: bucket `i` counts values in `[2**i, 2**(i+1))`.
#[napi(object, namespace = "mux", object_from_js = false)]
pub struct Histogram {
    pub buckets: Vec<u64>,
    pub count: u64,
    pub sum: u64,
    pub max: u64,
}

impl From<weir::histogram::Histogram> for Histogram {
    fn from(h: weir::histogram::Histogram) -> Histogram {
        Histogram {
            buckets: h.buckets,
            count: h.count,
            sum: h.sum,
            max: h.max,
        }
    }
}

/// A session's counters, a snapshot.
#[napi(object, namespace = "mux", object_from_js = false)]
pub struct Metrics {
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub packets_received: u64,
    pub packets_sent: u64,
    pub streams_opened: u64,
    pub streams_finished: u64,
    pub streams_refused: u64,
    pub window_updates_sent: u64,
    pub pings_sent: u64,
    pub round_trips: Histogram,
    pub peak_queued_output: u64,
}

/// One thing a session hands back, told apart by `type`. Stream ids are `bigint`s; names and
/// metadata that are not UTF-8 are decoded with replacement characters.
#[napi(
    namespace = "mux",
    discriminant = "type",
    discriminant_case = "camelCase",
    object_from_js = false
)]
pub enum Output {
    /// Bytes to write to the peer, in order; call `handleWritten(n)` once they are written.
    /// `data` is a copy of the session's buffer under 16 KiB, and shares it above.
    Transmit { data: Buffer },
    /// (Server) The peer opened a stream to call `rpc`, with `metadata` (empty if none).
    Opened {
        stream: u64,
        rpc: String,
        metadata: HashMap<String, String>,
    },
    /// A message arrived on the stream: `read` returns it.
    Readable { stream: u64 },
    /// (Mux) The stream's `send` was refused for a full queue, and it can take messages again.
    Writable { stream: u64 },
    /// The peer will send no more messages on the stream.
    RemoteClosedSend { stream: u64 },
    /// The peer failed the stream with a DRPC error `code` and `message`.
    RemoteError {
        stream: u64,
        code: u64,
        message: String,
    },
    /// The peer canceled the stream.
    RemoteCanceled { stream: u64 },
    /// The peer closed the stream.
    RemoteClosed { stream: u64 },
    /// The stream is over in both directions and everything received was read: its id is free.
    Finished { stream: u64 },
    /// The peer broke the protocol (or passed a configured limit, then `isLimit` is true): the
    /// connection has failed and the caller closes the transport. It comes once, last; every
    /// later call throws `WEIR_CLOSED`.
    Closed { reason: String, is_limit: bool },
}

/// How a stream's reading ended, from `Session.read`.
#[napi(
    namespace = "mux",
    discriminant = "type",
    discriminant_case = "camelCase",
    object_from_js = false
)]
pub enum ReadEnd {
    /// The peer sent everything it will on the stream.
    Eof,
    /// The peer failed the stream with a DRPC error `code` and `message`.
    Failed { code: u64, message: String },
    /// The stream was canceled, by the peer or by this side.
    Canceled,
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A DRPC connection, one side of it: bytes and calls in, outputs out, time passed in as
/// `bigint` nanoseconds (`process.hrtime.bigint()`). Drain `pollOutput()` until `null` after
/// every call, and call `handleTimeout(now)` once `pollTimeout()` has passed.
#[napi(namespace = "mux")]
pub struct Session(core::Session);

fn instant(now: &BigInt) -> Result<Instant> {
    to_u64("now", now).map(Instant::from_nanos)
}

fn stream_id(stream: &BigInt) -> Result<u64> {
    to_u64("stream", stream)
}

#[napi(namespace = "mux")]
impl Session {
    /// A session for `role`; `config` defaults to `new Config()`.
    #[napi(
        constructor,
        ts_args_type = "role: 'client' | 'server', config?: Config"
    )]
    pub fn new(role: String, config: Option<&Config>) -> Result<Session> {
        let role = match role.as_str() {
            "client" => core::Role::Client,
            "server" => core::Role::Server,
            _ => {
                return Err(usage(format!(
                    "role must be 'client' or 'server', not {role:?}"
                )))
            }
        };
        let config = match config {
            Some(config) => config.to_core()?,
            None => core::Config::default(),
        };
        Ok(Session(core::Session::new(role, config)))
    }

    /// Bytes arrived from the peer (read, not kept). A peer that breaks the protocol is
    /// reported by a `closed` output, not thrown.
    #[napi]
    pub fn handle_input(&mut self, now: BigInt, data: &[u8]) -> Result<()> {
        self.0.handle_input(instant(&now)?, data).map_err(refused)
    }

    /// (Client) Opens a stream to call `rpc`, sending `metadata` first; returns the stream id.
    #[napi]
    pub fn open_stream(
        &mut self,
        now: BigInt,
        rpc: String,
        metadata: Option<HashMap<String, String>>,
    ) -> Result<u64> {
        let mut md = Metadata::new();
        for (key, value) in metadata.unwrap_or_default() {
            md.insert(key.into_bytes(), value.into_bytes());
        }
        self.0
            .open_stream(instant(&now)?, rpc.into_bytes(), &md)
            .map_err(refused)
    }

    /// Queues a message on the stream (copied once). Throws `WEIR_LIMIT` when its send queue is
    /// full: a `writable` output follows once it has room.
    #[napi]
    pub fn send(&mut self, now: BigInt, stream: BigInt, data: &[u8]) -> Result<()> {
        self.0
            .send(
                instant(&now)?,
                stream_id(&stream)?,
                Bytes::copy_from_slice(data),
            )
            .map_err(refused)
    }

    /// This side will send no more messages on the stream.
    #[napi]
    pub fn close_send(&mut self, now: BigInt, stream: BigInt) -> Result<()> {
        self.0
            .close_send(instant(&now)?, stream_id(&stream)?)
            .map_err(refused)
    }

    /// Closes the stream in both directions, after the messages queued on it.
    #[napi]
    pub fn close(&mut self, now: BigInt, stream: BigInt) -> Result<()> {
        self.0
            .close(instant(&now)?, stream_id(&stream)?)
            .map_err(refused)
    }

    /// Fails the stream with a DRPC error `code` and `message` for the peer.
    #[napi]
    pub fn send_error(
        &mut self,
        now: BigInt,
        stream: BigInt,
        code: BigInt,
        message: String,
    ) -> Result<()> {
        self.0
            .send_error(
                instant(&now)?,
                stream_id(&stream)?,
                to_u64("code", &code)?,
                message.into_bytes(),
            )
            .map_err(refused)
    }

    /// Cancels the stream: a Cancel frame goes out ahead of everything else.
    #[napi]
    pub fn cancel(&mut self, now: BigInt, stream: BigInt) -> Result<()> {
        self.0
            .cancel(instant(&now)?, stream_id(&stream)?)
            .map_err(refused)
    }

    /// The stream's next message as a `Buffer` (a copy under 16 KiB; above, it shares the
    /// session's bytes); otherwise `null` when nothing has
    /// arrived yet (wait for a `readable` output), or how the stream ended: `{ type: 'eof' }`,
    /// `{ type: 'failed', code, message }` or `{ type: 'canceled' }`.
    #[napi]
    pub fn read(&mut self, stream: BigInt) -> Result<Option<Either<Buffer, ReadEnd>>> {
        Ok(Some(
            match self.0.read(stream_id(&stream)?).map_err(refused)? {
                core::Recv::Message(bytes) => Either::A(Buffer(bytes)),
                core::Recv::Pending => return Ok(None),
                core::Recv::Eof => Either::B(ReadEnd::Eof),
                core::Recv::Failed(error) => Either::B(ReadEnd::Failed {
                    code: error.code,
                    message: text(&error.message),
                }),
                core::Recv::Canceled => Either::B(ReadEnd::Canceled),
            },
        ))
    }

    /// The application will read no more from the stream: unread messages are dropped and
    /// their credit goes back to the peer. Nothing is sent.
    #[napi]
    pub fn drop_stream(&mut self, stream: BigInt) -> Result<()> {
        self.0.drop_stream(stream_id(&stream)?);
        Ok(())
    }

    /// The transport wrote `n` bytes of the `transmit` outputs.
    #[napi]
    pub fn handle_written(&mut self, n: f64) -> Result<()> {
        self.0.handle_written(to_usize("n", n)?);
        Ok(())
    }

    /// The deadline from `pollTimeout()` has passed.
    #[napi]
    pub fn handle_timeout(&mut self, now: BigInt) -> Result<()> {
        self.0.handle_timeout(instant(&now)?);
        Ok(())
    }

    /// The next output, or `null` when there is nothing to do until the next input or call.
    #[napi]
    pub fn poll_output(&mut self) -> Option<Output> {
        Some(match self.0.poll_output()? {
            core::Output::Transmit(bytes) => Output::Transmit {
                data: Buffer(bytes),
            },
            core::Output::Opened {
                stream,
                rpc,
                metadata,
            } => Output::Opened {
                stream,
                rpc: text(&rpc),
                metadata: metadata.iter().map(|(k, v)| (text(k), text(v))).collect(),
            },
            core::Output::Readable(stream) => Output::Readable { stream },
            core::Output::Writable(stream) => Output::Writable { stream },
            core::Output::RemoteClosedSend(stream) => Output::RemoteClosedSend { stream },
            core::Output::RemoteError { stream, error } => Output::RemoteError {
                stream,
                code: error.code,
                message: text(&error.message),
            },
            core::Output::RemoteCanceled(stream) => Output::RemoteCanceled { stream },
            core::Output::RemoteClosed(stream) => Output::RemoteClosed { stream },
            core::Output::Finished(stream) => Output::Finished { stream },
            core::Output::Closed(reason) => Output::Closed {
                reason: reason.to_string(),
                is_limit: reason.is_limit(),
            },
        })
    }

    /// When to call `handleTimeout`, in nanoseconds, or `null` for no timer.
    #[napi]
    pub fn poll_timeout(&self) -> Option<u64> {
        self.0.poll_timeout().map(Instant::as_nanos)
    }

    /// Whether the session takes input: false once the connection has failed, or while
    /// `maxQueuedOutput` bytes wait for the transport. An adapter stops reading while it is
    /// false; it turns true again after `handleWritten`.
    #[napi]
    pub fn wants_input(&self) -> bool {
        self.0.wants_input()
    }

    /// Bytes produced for the peer and not yet confirmed written.
    #[napi]
    pub fn queued_output(&self) -> u64 {
        self.0.queued_output()
    }

    /// Message bytes received and not yet read by the application, over every stream.
    #[napi]
    pub fn buffered_bytes(&self) -> u64 {
        self.0.buffered_bytes()
    }

    /// Bytes received and held: unread messages and unfinished packets of any kind.
    #[napi]
    pub fn held_input_bytes(&self) -> u64 {
        self.0.held_input_bytes()
    }

    /// Streams open now.
    #[napi]
    pub fn active_streams(&self) -> u64 {
        self.0.active_streams() as u64
    }

    /// Whether the connection has failed.
    #[napi]
    pub fn is_closed(&self) -> bool {
        self.0.is_closed()
    }

    /// The counters, a snapshot.
    #[napi]
    pub fn metrics(&self) -> Metrics {
        let m = self.0.metrics();
        Metrics {
            bytes_received: m.bytes_received,
            bytes_sent: m.bytes_sent,
            packets_received: m.packets_received,
            packets_sent: m.packets_sent,
            streams_opened: m.streams_opened,
            streams_finished: m.streams_finished,
            streams_refused: m.streams_refused,
            window_updates_sent: m.window_updates_sent,
            pings_sent: m.pings_sent,
            round_trips: m.round_trips.into(),
            peak_queued_output: m.peak_queued_output,
        }
    }
}
