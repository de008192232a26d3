//! `weir.mux`: the DRPC connection machine.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use bytes::Bytes;
use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyBytes, PyString};
use weir::histogram;
use weir::mux::session as core;
use weir::mux::wire::{Metadata, SplitSize};
use weir::time::Instant;

use crate::errors::{to_py, UsageError};

/// A session's configuration: every argument is keyword-only, sizes in bytes and times in
/// nanoseconds (`None` for a timeout: no limit). The defaults are the core's (compat mode);
/// `Config.mux()` is the mux preset. `mode` is `"compat"` or `"mux"`.
#[pyclass(module = "weir._weir", frozen, eq, get_all)]
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    mode: String,
    split_size: usize,
    max_packet_len: usize,
    max_unread_per_stream: usize,
    max_metadata_len: usize,
    send_buffer_per_stream: usize,
    max_transmit: usize,
    max_unwritten: Option<usize>,
    max_queued_output: usize,
    handshake_timeout_ns: Option<u64>,
    idle_timeout_ns: Option<u64>,
    max_concurrent_streams: usize,
    initial_stream_window: u64,
    max_stream_window: u64,
    max_buffered_per_connection: u64,
    initial_connection_window: u64,
    max_connection_window: u64,
    min_connection_window: u64,
    autotune_interval_ns: u64,
}

#[pymethods]
impl Config {
    #[new]
    #[pyo3(signature = (
        *,
        mode = "compat",
        split_size = 65536,
        max_packet_len = 4_194_304,
        max_unread_per_stream = 4_194_304,
        max_metadata_len = 65536,
        send_buffer_per_stream = 1_048_576,
        max_transmit = 262_144,
        max_unwritten = None,
        max_queued_output = 1_048_576,
        handshake_timeout_ns = Some(10_000_000_000),
        idle_timeout_ns = Some(300_000_000_000),
        max_concurrent_streams = 256,
        initial_stream_window = 262_144,
        max_stream_window = 16_777_216,
        max_buffered_per_connection = 67_108_864,
        initial_connection_window = 1_048_576,
        max_connection_window = 67_108_864,
        min_connection_window = 524_288,
        autotune_interval_ns = 20_000_000,
    ))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        mode: &str,
        split_size: usize,
        max_packet_len: usize,
        max_unread_per_stream: usize,
        max_metadata_len: usize,
        send_buffer_per_stream: usize,
        max_transmit: usize,
        max_unwritten: Option<usize>,
        max_queued_output: usize,
        handshake_timeout_ns: Option<u64>,
        idle_timeout_ns: Option<u64>,
        max_concurrent_streams: usize,
        initial_stream_window: u64,
        max_stream_window: u64,
        max_buffered_per_connection: u64,
        initial_connection_window: u64,
        max_connection_window: u64,
        min_connection_window: u64,
        autotune_interval_ns: u64,
    ) -> PyResult<Config> {
        parse_mode(mode)?;
        if split_size == 0 {
            return Err(UsageError::new_err("split_size must be at least 1"));
        }
        Ok(Config {
            mode: mode.to_owned(),
            split_size,
            max_packet_len,
            max_unread_per_stream,
            max_metadata_len,
            send_buffer_per_stream,
            max_transmit,
            max_unwritten,
            max_queued_output,
            handshake_timeout_ns,
            idle_timeout_ns,
            max_concurrent_streams,
            initial_stream_window,
            max_stream_window,
            max_buffered_per_connection,
            initial_connection_window,
            max_connection_window,
            min_connection_window,
            autotune_interval_ns,
        })
    }

    /// The defaults in mux mode (many streams, credit, fair scheduling).
    #[staticmethod]
    fn mux() -> Config {
        Config::from_core(&core::Config::mux())
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!("Config(mode={}, ...)", str_repr(py, &self.mode)?))
    }
}

impl Config {
    fn from_core(c: &core::Config) -> Config {
        let nanos = |d: Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Config {
            mode: match c.mode {
                core::Mode::Mux => "mux",
                core::Mode::Compat => "compat",
            }
            .to_owned(),
            split_size: c.split_size.get(),
            max_packet_len: c.max_packet_len,
            max_unread_per_stream: c.max_unread_per_stream,
            max_metadata_len: c.max_metadata_len,
            send_buffer_per_stream: c.send_buffer_per_stream,
            max_transmit: c.max_transmit,
            max_unwritten: c.max_unwritten,
            max_queued_output: c.max_queued_output,
            handshake_timeout_ns: c.handshake_timeout.map(nanos),
            idle_timeout_ns: c.idle_timeout.map(nanos),
            max_concurrent_streams: c.max_concurrent_streams,
            initial_stream_window: c.initial_stream_window,
            max_stream_window: c.max_stream_window,
            max_buffered_per_connection: c.max_buffered_per_connection,
            initial_connection_window: c.initial_connection_window,
            max_connection_window: c.max_connection_window,
            min_connection_window: c.min_connection_window,
            autotune_interval_ns: nanos(c.autotune_interval),
        }
    }

    fn to_core(&self) -> PyResult<core::Config> {
        let split_size = SplitSize::new(self.split_size)
            .ok_or_else(|| UsageError::new_err("split_size must be at least 1"))?;
        Ok(core::Config {
            mode: parse_mode(&self.mode)?,
            split_size,
            max_packet_len: self.max_packet_len,
            max_unread_per_stream: self.max_unread_per_stream,
            max_metadata_len: self.max_metadata_len,
            send_buffer_per_stream: self.send_buffer_per_stream,
            max_transmit: self.max_transmit,
            max_unwritten: self.max_unwritten,
            max_queued_output: self.max_queued_output,
            handshake_timeout: self.handshake_timeout_ns.map(Duration::from_nanos),
            idle_timeout: self.idle_timeout_ns.map(Duration::from_nanos),
            max_concurrent_streams: self.max_concurrent_streams,
            initial_stream_window: self.initial_stream_window,
            max_stream_window: self.max_stream_window,
            max_buffered_per_connection: self.max_buffered_per_connection,
            initial_connection_window: self.initial_connection_window,
            max_connection_window: self.max_connection_window,
            min_connection_window: self.min_connection_window,
            autotune_interval: Duration::from_nanos(self.autotune_interval_ns),
        })
    }
}

fn parse_mode(mode: &str) -> PyResult<core::Mode> {
    match mode {
        "compat" => Ok(core::Mode::Compat),
        "mux" => Ok(core::Mode::Mux),
        _ => Err(UsageError::new_err(format!(
            "mode must be \"compat\" or \"mux\", not {mode:?}"
        ))),
    }
}

/// A histogram of power-of-two buckets: bucket `i` counts values in `[2**i, 2**(i+1))`.
#[pyclass(module = "weir._weir", frozen, eq, get_all)]
#[derive(Clone, PartialEq, Eq)]
pub struct Histogram {
    buckets: Vec<u64>,
    count: u64,
    sum: u64,
    max: u64,
}

impl From<histogram::Histogram> for Histogram {
    fn from(h: histogram::Histogram) -> Histogram {
        Histogram {
            buckets: h.buckets,
            count: h.count,
            sum: h.sum,
            max: h.max,
        }
    }
}

/// A session's counters, a snapshot.
#[pyclass(module = "weir._weir", frozen, eq, get_all)]
#[derive(Clone, PartialEq, Eq)]
pub struct Metrics {
    bytes_received: u64,
    bytes_sent: u64,
    packets_received: u64,
    packets_sent: u64,
    streams_opened: u64,
    streams_finished: u64,
    streams_refused: u64,
    window_updates_sent: u64,
    pings_sent: u64,
    round_trips: Histogram,
    peak_queued_output: u64,
}

/// Outputs that name only a stream.
macro_rules! stream_output {
    ($(#[$doc:meta] $name:ident),* $(,)?) => {$(
        #[$doc]
        #[pyclass(module = "weir._weir", frozen, eq, hash, get_all)]
        #[derive(Clone, PartialEq, Eq, Hash)]
        pub struct $name {
            stream: u64,
        }

        #[pymethods]
        impl $name {
            #[new]
            fn new(stream: u64) -> $name {
                $name { stream }
            }

            #[classattr]
            fn __match_args__() -> (&'static str,) {
                ("stream",)
            }

            fn __repr__(&self) -> String {
                format!("{}({})", stringify!($name), self.stream)
            }
        }
    )*};
}

stream_output!(
    /// A message arrived on the stream: `Session.read` returns it.
    Readable,
    /// (Mux) The stream's `send` was refused for a full queue, and it can take messages again.
    Writable,
    /// The peer will send no more messages on the stream; `Session.read` ends once it is drained.
    RemoteClosedSend,
    /// The peer canceled the stream.
    RemoteCanceled,
    /// The peer closed the stream.
    RemoteClosed,
    /// The stream is over in both directions and everything received was read: its id is free.
    Finished,
);

/// Bytes to write to the peer, in order; call `Session.handle_written(n)` once they are written.
/// `data` is a copy of the session's buffer.
#[pyclass(module = "weir._weir", frozen, get_all)]
pub struct Transmit {
    data: Py<PyBytes>,
}

#[pymethods]
impl Transmit {
    #[new]
    fn new(data: Py<PyBytes>) -> Transmit {
        Transmit { data }
    }

    #[classattr]
    fn __match_args__() -> (&'static str,) {
        ("data",)
    }

    fn __eq__(&self, py: Python<'_>, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<Transmit>()
            .is_ok_and(|other| self.data.as_bytes(py) == other.get().data.as_bytes(py))
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!("Transmit({})", self.data.bind(py).repr()?))
    }
}

/// (Server) The peer opened a stream to call `rpc`, with `metadata` (empty if none). Names and
/// metadata that are not UTF-8 are decoded with replacement characters.
#[pyclass(module = "weir._weir", frozen, eq, get_all)]
#[derive(Clone, PartialEq, Eq)]
pub struct Opened {
    stream: u64,
    rpc: String,
    metadata: BTreeMap<String, String>,
}

#[pymethods]
impl Opened {
    #[new]
    fn new(stream: u64, rpc: String, metadata: BTreeMap<String, String>) -> Opened {
        Opened {
            stream,
            rpc,
            metadata,
        }
    }

    #[classattr]
    fn __match_args__() -> (&'static str, &'static str, &'static str) {
        ("stream", "rpc", "metadata")
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let metadata = self.metadata.clone().into_pyobject(py)?;
        Ok(format!(
            "Opened({}, {}, {})",
            self.stream,
            str_repr(py, &self.rpc)?,
            metadata.repr()?
        ))
    }
}

/// The peer failed the stream with a DRPC error `code` and `message`.
#[pyclass(module = "weir._weir", frozen, eq, get_all)]
#[derive(Clone, PartialEq, Eq)]
pub struct RemoteError {
    stream: u64,
    code: u64,
    message: String,
}

#[pymethods]
impl RemoteError {
    #[new]
    fn new(stream: u64, code: u64, message: String) -> RemoteError {
        RemoteError {
            stream,
            code,
            message,
        }
    }

    #[classattr]
    fn __match_args__() -> (&'static str, &'static str, &'static str) {
        ("stream", "code", "message")
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "RemoteError({}, {}, {})",
            self.stream,
            self.code,
            str_repr(py, &self.message)?
        ))
    }
}

/// The peer broke the protocol (or passed a configured limit, then `is_limit` is true): the
/// connection has failed and the caller closes the transport. It comes once, last; every later
/// call raises `ClosedError`.
#[pyclass(module = "weir._weir", frozen, eq, get_all)]
#[derive(Clone, PartialEq, Eq)]
pub struct Closed {
    reason: String,
    is_limit: bool,
}

#[pymethods]
impl Closed {
    #[new]
    #[pyo3(signature = (reason, is_limit = false))]
    fn new(reason: String, is_limit: bool) -> Closed {
        Closed { reason, is_limit }
    }

    #[classattr]
    fn __match_args__() -> (&'static str, &'static str) {
        ("reason", "is_limit")
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let is_limit = if self.is_limit { "True" } else { "False" };
        Ok(format!(
            "Closed({}, is_limit={is_limit})",
            str_repr(py, &self.reason)?
        ))
    }
}

/// `Session.read`: the peer sent everything it will on the stream.
#[pyclass(module = "weir._weir", frozen, eq, hash)]
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Eof;

#[pymethods]
impl Eof {
    #[new]
    fn new() -> Eof {
        Eof
    }

    fn __repr__(&self) -> &'static str {
        "Eof()"
    }
}

/// `Session.read`: the peer failed the stream with a DRPC error `code` and `message`.
#[pyclass(module = "weir._weir", frozen, eq, get_all)]
#[derive(Clone, PartialEq, Eq)]
pub struct Failed {
    code: u64,
    message: String,
}

#[pymethods]
impl Failed {
    #[new]
    fn new(code: u64, message: String) -> Failed {
        Failed { code, message }
    }

    #[classattr]
    fn __match_args__() -> (&'static str, &'static str) {
        ("code", "message")
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "Failed({}, {})",
            self.code,
            str_repr(py, &self.message)?
        ))
    }
}

/// `Session.read`: the stream was canceled, by the peer or by this side.
#[pyclass(module = "weir._weir", frozen, eq, hash)]
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Canceled;

#[pymethods]
impl Canceled {
    #[new]
    fn new() -> Canceled {
        Canceled
    }

    fn __repr__(&self) -> &'static str {
        "Canceled()"
    }
}

/// Python's `repr` of a string.
fn str_repr(py: Python<'_>, text: &str) -> PyResult<String> {
    Ok(PyString::new(py, text).repr()?.to_string())
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The bytes of a `bytes`, `bytearray` or `memoryview`: `bytes` shared without a copy, the
/// others copied once.
fn message(data: &Bound<'_, PyAny>) -> PyResult<Bytes> {
    if let Ok(backed) = data.extract::<PyBackedBytes>() {
        return Ok(Bytes::from_owner(backed));
    }
    let buffer = PyBuffer::<u8>::get(data)
        .map_err(|_| PyTypeError::new_err("expected bytes, bytearray or memoryview"))?;
    Ok(Bytes::from(buffer.to_vec(data.py())?))
}

/// A DRPC connection, one side of it: bytes and calls in, outputs out, time passed in as `int`
/// nanoseconds. Drain `poll_output()` until `None` after every call, and call
/// `handle_timeout(now)` once `poll_timeout()` has passed.
#[pyclass(module = "weir._weir")]
pub struct Session(core::Session);

#[pymethods]
impl Session {
    /// A session for `role` (`"client"` or `"server"`); `config` defaults to `Config()`.
    #[new]
    #[pyo3(signature = (role, config = None))]
    fn new(role: &str, config: Option<Config>) -> PyResult<Session> {
        let role = match role {
            "client" => core::Role::Client,
            "server" => core::Role::Server,
            _ => {
                return Err(UsageError::new_err(format!(
                    "role must be \"client\" or \"server\", not {role:?}"
                )))
            }
        };
        let config = match config {
            Some(config) => config.to_core()?,
            None => core::Config::default(),
        };
        Ok(Session(core::Session::new(role, config)))
    }

    /// Bytes arrived from the peer (`bytes`, `bytearray` or `memoryview`). A peer that breaks
    /// the protocol is reported by a `Closed` output, not raised.
    fn handle_input(&mut self, now: u64, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let now = Instant::from_nanos(now);
        if let Ok(bytes) = data.cast::<PyBytes>() {
            return self.0.handle_input(now, bytes.as_bytes()).map_err(to_py);
        }
        let bytes = message(data)?;
        self.0.handle_input(now, &bytes).map_err(to_py)
    }

    /// (Client) Opens a stream to call `rpc`, sending `metadata` first; returns the stream id.
    #[pyo3(signature = (now, rpc, metadata = None))]
    fn open_stream(
        &mut self,
        now: u64,
        rpc: &str,
        metadata: Option<HashMap<String, String>>,
    ) -> PyResult<u64> {
        let mut md = Metadata::new();
        for (key, value) in metadata.unwrap_or_default() {
            md.insert(key.into_bytes(), value.into_bytes());
        }
        self.0
            .open_stream(Instant::from_nanos(now), rpc.to_owned().into_bytes(), &md)
            .map_err(to_py)
    }

    /// Queues a message on the stream (`bytes` is shared without a copy; `bytearray` and
    /// `memoryview` are copied once). Raises `LimitError` when its send queue is full: a
    /// `Writable` output follows once it has room.
    fn send(&mut self, now: u64, stream: u64, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let data = message(data)?;
        self.0
            .send(Instant::from_nanos(now), stream, data)
            .map_err(to_py)
    }

    /// This side will send no more messages on the stream.
    fn close_send(&mut self, now: u64, stream: u64) -> PyResult<()> {
        self.0
            .close_send(Instant::from_nanos(now), stream)
            .map_err(to_py)
    }

    /// Cancels the stream.
    fn cancel(&mut self, now: u64, stream: u64) -> PyResult<()> {
        self.0
            .cancel(Instant::from_nanos(now), stream)
            .map_err(to_py)
    }

    /// The stream's next message as `bytes` (a copy); otherwise `None` when nothing has arrived
    /// yet (wait for a `Readable` output), `Eof()` when the peer sent everything it will,
    /// `Failed(code, message)` when the peer failed the stream, `Canceled()` when it was
    /// canceled.
    fn read(&mut self, py: Python<'_>, stream: u64) -> PyResult<Option<Py<PyAny>>> {
        let object = match self.0.read(stream).map_err(to_py)? {
            core::Recv::Message(bytes) => PyBytes::new(py, &bytes).into_any().unbind(),
            core::Recv::Pending => return Ok(None),
            core::Recv::Eof => Py::new(py, Eof)?.into_any(),
            core::Recv::Failed(error) => Py::new(
                py,
                Failed {
                    code: error.code,
                    message: text(&error.message),
                },
            )?
            .into_any(),
            core::Recv::Canceled => Py::new(py, Canceled)?.into_any(),
        };
        Ok(Some(object))
    }

    /// The transport wrote `n` bytes of the `Transmit` outputs.
    fn handle_written(&mut self, n: usize) {
        self.0.handle_written(n);
    }

    /// The deadline from `poll_timeout()` has passed.
    fn handle_timeout(&mut self, now: u64) {
        self.0.handle_timeout(Instant::from_nanos(now));
    }

    /// The next output, or `None` when there is nothing to do until the next input or call.
    fn poll_output(&mut self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        let Some(output) = self.0.poll_output() else {
            return Ok(None);
        };
        let object = match output {
            core::Output::Transmit(bytes) => Py::new(
                py,
                Transmit {
                    data: PyBytes::new(py, &bytes).unbind(),
                },
            )?
            .into_any(),
            core::Output::Opened {
                stream,
                rpc,
                metadata,
            } => Py::new(
                py,
                Opened {
                    stream,
                    rpc: text(&rpc),
                    metadata: metadata.iter().map(|(k, v)| (text(k), text(v))).collect(),
                },
            )?
            .into_any(),
            core::Output::Readable(stream) => Py::new(py, Readable { stream })?.into_any(),
            core::Output::Writable(stream) => Py::new(py, Writable { stream })?.into_any(),
            core::Output::RemoteClosedSend(stream) => {
                Py::new(py, RemoteClosedSend { stream })?.into_any()
            }
            core::Output::RemoteError { stream, error } => Py::new(
                py,
                RemoteError {
                    stream,
                    code: error.code,
                    message: text(&error.message),
                },
            )?
            .into_any(),
            core::Output::RemoteCanceled(stream) => {
                Py::new(py, RemoteCanceled { stream })?.into_any()
            }
            core::Output::RemoteClosed(stream) => Py::new(py, RemoteClosed { stream })?.into_any(),
            core::Output::Finished(stream) => Py::new(py, Finished { stream })?.into_any(),
            core::Output::Closed(reason) => Py::new(
                py,
                Closed {
                    reason: reason.to_string(),
                    is_limit: reason.is_limit(),
                },
            )?
            .into_any(),
        };
        Ok(Some(object))
    }

    /// When to call `handle_timeout`, in nanoseconds, or `None` for no timer.
    fn poll_timeout(&self) -> Option<u64> {
        self.0.poll_timeout().map(Instant::as_nanos)
    }

    /// Whether the connection has failed.
    fn is_closed(&self) -> bool {
        self.0.is_closed()
    }

    /// The counters, a snapshot.
    #[getter]
    fn metrics(&self) -> Metrics {
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

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Config>()?;
    m.add_class::<Histogram>()?;
    m.add_class::<Metrics>()?;
    m.add_class::<Transmit>()?;
    m.add_class::<Opened>()?;
    m.add_class::<Readable>()?;
    m.add_class::<Writable>()?;
    m.add_class::<RemoteClosedSend>()?;
    m.add_class::<RemoteError>()?;
    m.add_class::<RemoteCanceled>()?;
    m.add_class::<RemoteClosed>()?;
    m.add_class::<Finished>()?;
    m.add_class::<Closed>()?;
    m.add_class::<Eof>()?;
    m.add_class::<Failed>()?;
    m.add_class::<Canceled>()?;
    m.add_class::<Session>()?;
    Ok(())
}
