//! `weir.wire`: the DRPC wire format, byte for byte as Go's `storj.io/drpc` writes and reads it.

use bytes::BytesMut;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use weir::mux::wire as core;

use crate::convert::{bool_repr, bytes_in, bytes_repr};
use crate::errors::{ClosedError, RemoteProtocolError, UsageError};

/// Go's default split size, 64 KiB: the most data one frame carries.
const DEFAULT_SPLIT_SIZE: usize = core::SplitSize::DEFAULT.get();

/// Go's default packet limit, 4 MiB of data.
const DEFAULT_MAX_PACKET_LEN: usize = match core::PacketLimit::DEFAULT {
    core::PacketLimit::AtMost(max) => max,
    core::PacketLimit::RejectAll => 0,
};

/// A refusal of malformed wire bytes: the peer broke the protocol.
fn protocol_error(error: core::WireError) -> PyErr {
    RemoteProtocolError::new_err(error.to_string())
}

/// A split size: frames of at most this many data bytes, or `None` for one frame per packet.
fn split_size(split_size: Option<usize>) -> PyResult<core::SplitSize> {
    match split_size {
        None => Ok(core::SplitSize::NEVER),
        Some(n) => core::SplitSize::new(n)
            .ok_or_else(|| UsageError::new_err("split_size must be at least 1, or None")),
    }
}

/// One frame: `kind` (1 Invoke, 2 Message, 3 Error, 4 Cancel, 5 Close, 6 CloseSend, 7
/// InvokeMetadata, ...), `done` on the last frame of a packet, the `control` bit, the packet's
/// `stream` and `message` ids, and this frame's share of the packet's `data`. A kind of 64 or
/// more spills into the control bit when encoded, as in Go's writer; decoded kinds are below 64.
#[pyclass(module = "weir._weir", frozen, eq)]
#[derive(Clone, PartialEq, Eq)]
pub struct Frame(core::Frame);

#[pymethods]
impl Frame {
    #[new]
    fn new(
        kind: u8,
        done: bool,
        control: bool,
        stream: u64,
        message: u64,
        data: &Bound<'_, PyAny>,
    ) -> PyResult<Frame> {
        Ok(Frame(core::Frame {
            kind: core::Kind(kind),
            done,
            control,
            id: core::Id::new(stream, message),
            data: bytes_in(data)?,
        }))
    }

    /// The kind of the packet the frame belongs to.
    #[getter]
    fn kind(&self) -> u8 {
        self.0.kind.0
    }

    /// Whether this is the last frame of its packet.
    #[getter]
    fn done(&self) -> bool {
        self.0.done
    }

    /// The control bit: a peer may ignore the frame if it does not know its kind.
    #[getter]
    fn control(&self) -> bool {
        self.0.control
    }

    /// The stream id.
    #[getter]
    fn stream(&self) -> u64 {
        self.0.id.stream
    }

    /// The message id within the stream.
    #[getter]
    fn message(&self) -> u64 {
        self.0.id.message
    }

    /// This frame's data (a copy).
    #[getter]
    fn data<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0.data)
    }

    /// The number of bytes `encode()` returns.
    fn encoded_len(&self) -> usize {
        self.0.encoded_len()
    }

    /// The frame on the wire.
    fn encode<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let mut wire = Vec::with_capacity(self.0.encoded_len());
        self.0.encode(&mut wire).map_err(protocol_error)?;
        Ok(PyBytes::new(py, &wire))
    }

    #[classattr]
    fn __match_args__() -> (
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
    ) {
        ("kind", "done", "control", "stream", "message", "data")
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "Frame({}, {}, {}, {}, {}, {})",
            self.0.kind.0,
            bool_repr(self.0.done),
            bool_repr(self.0.control),
            self.0.id.stream,
            self.0.id.message,
            bytes_repr(py, &self.0.data)?
        ))
    }
}

/// Reads one frame from the start of `data`: `(frame, used)`, with `used` the bytes it took,
/// or `None` when `data` does not hold a whole frame yet. Raises `RemoteProtocolError` for a
/// varint longer than ten bytes.
#[pyfunction]
fn parse_frame(data: &Bound<'_, PyAny>) -> PyResult<Option<(Frame, usize)>> {
    let data = bytes_in(data)?;
    let Some((frame, used)) = core::parse_frame(&data).map_err(protocol_error)? else {
        return Ok(None);
    };
    // The frame's data ends where the frame does.
    let start = used - frame.data.len();
    let frame = core::Frame {
        kind: frame.kind,
        done: frame.done,
        control: frame.control,
        id: frame.id,
        data: data.slice(start..start + frame.data.len()),
    };
    Ok(Some((Frame(frame), used)))
}

/// A whole message of one kind on one stream: `kind`, the `control` bit (set if any of its
/// frames had it), `stream`, `message` and `data`.
#[pyclass(module = "weir._weir", frozen, eq)]
#[derive(Clone, PartialEq, Eq)]
pub struct Packet(core::Packet);

#[pymethods]
impl Packet {
    #[new]
    fn new(
        kind: u8,
        control: bool,
        stream: u64,
        message: u64,
        data: &Bound<'_, PyAny>,
    ) -> PyResult<Packet> {
        Ok(Packet(core::Packet {
            kind: core::Kind(kind),
            control,
            id: core::Id::new(stream, message),
            data: bytes_in(data)?,
        }))
    }

    /// What the packet is.
    #[getter]
    fn kind(&self) -> u8 {
        self.0.kind.0
    }

    /// Whether any of its frames had the control bit.
    #[getter]
    fn control(&self) -> bool {
        self.0.control
    }

    /// The stream id.
    #[getter]
    fn stream(&self) -> u64 {
        self.0.id.stream
    }

    /// The message id within the stream.
    #[getter]
    fn message(&self) -> u64 {
        self.0.id.message
    }

    /// The data (a copy).
    #[getter]
    fn data<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.0.data)
    }

    /// The frames of this packet with at most `split_size` data bytes each (`None`: one frame),
    /// as Go's writer splits them: only the last is `done`, and an empty packet is one empty
    /// frame.
    #[pyo3(signature = (split_size = DEFAULT_SPLIT_SIZE))]
    fn frames(&self, split_size: Option<usize>) -> PyResult<Vec<Frame>> {
        let split = self::split_size(split_size)?;
        Ok(self.0.frames(split).map(Frame).collect())
    }

    /// The number of bytes `encode(split_size)` returns.
    #[pyo3(signature = (split_size = DEFAULT_SPLIT_SIZE))]
    fn encoded_len(&self, split_size: Option<usize>) -> PyResult<usize> {
        Ok(self.0.encoded_len(self::split_size(split_size)?))
    }

    /// The packet's frames on the wire, split at `split_size` data bytes (default 64 KiB, Go's;
    /// `None`: one frame).
    #[pyo3(signature = (split_size = DEFAULT_SPLIT_SIZE))]
    fn encode<'py>(
        &self,
        py: Python<'py>,
        split_size: Option<usize>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let split = self::split_size(split_size)?;
        let mut wire = Vec::with_capacity(self.0.encoded_len(split));
        self.0.encode(split, &mut wire).map_err(protocol_error)?;
        Ok(PyBytes::new(py, &wire))
    }

    #[classattr]
    fn __match_args__() -> (
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
    ) {
        ("kind", "control", "stream", "message", "data")
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!(
            "Packet({}, {}, {}, {}, {})",
            self.0.kind.0,
            bool_repr(self.0.control),
            self.0.id.stream,
            self.0.id.message,
            bytes_repr(py, &self.0.data)?
        ))
    }
}

/// Joins received bytes into packets under Go's reader rules (compat mode: ids only move up
/// across the connection, starting at stream 1, message 1). `max_packet_len` bounds a packet's
/// data (default 4 MiB, Go's), and with it the largest frame accepted and so the bytes held;
/// `PacketReader.go(maximum_buffer_size)` takes the limit as Go's `ReaderOptions` spells it.
#[pyclass(module = "weir._weir")]
pub struct PacketReader {
    reader: core::PacketReader,
    buffer: BytesMut,
    limit: core::PacketLimit,
    failed: bool,
}

#[pymethods]
impl PacketReader {
    #[new]
    #[pyo3(signature = (max_packet_len = DEFAULT_MAX_PACKET_LEN))]
    fn new(max_packet_len: usize) -> PacketReader {
        PacketReader::with_limit(core::PacketLimit::AtMost(max_packet_len))
    }

    /// A reader with the limit Go's `ReaderOptions{MaximumBufferSize}` means: 0 is the default
    /// (4 MiB), a negative size rejects every packet.
    #[staticmethod]
    fn go(maximum_buffer_size: i64) -> PacketReader {
        PacketReader::with_limit(core::PacketLimit::from_go(maximum_buffer_size))
    }

    /// The largest packet accepted, in data bytes; `None` when every packet is rejected.
    #[getter]
    fn max_packet_len(&self) -> Option<usize> {
        match self.limit {
            core::PacketLimit::AtMost(max) => Some(max),
            core::PacketLimit::RejectAll => None,
        }
    }

    /// Adds received bytes (`bytes`, `bytearray` or `memoryview`; copied once into the reader's
    /// buffer). Raises `ClosedError` once the reader has failed.
    fn feed(&mut self, data: &Bound<'_, PyAny>) -> PyResult<()> {
        self.ensure_open()?;
        if let Ok(bytes) = data.cast::<PyBytes>() {
            self.buffer.extend_from_slice(bytes.as_bytes());
        } else {
            self.buffer.extend_from_slice(&bytes_in(data)?);
        }
        Ok(())
    }

    /// The next whole packet, or `None` until more bytes are fed. Raises `RemoteProtocolError`
    /// when the bytes break the protocol (its text is Go's, without the `protocol error: `
    /// class); the reader is then failed and later calls raise `ClosedError`.
    fn read(&mut self) -> PyResult<Option<Packet>> {
        self.ensure_open()?;
        match self.reader.read(&mut self.buffer) {
            Ok(packet) => Ok(packet.map(Packet)),
            Err(error) => {
                self.failed = true;
                self.buffer = BytesMut::new();
                Err(protocol_error(error))
            }
        }
    }

    /// Bytes fed and not yet read into a frame.
    fn buffered_len(&self) -> usize {
        self.buffer.len()
    }
}

impl PacketReader {
    fn with_limit(limit: core::PacketLimit) -> PacketReader {
        PacketReader {
            reader: core::PacketReader::compat(limit),
            buffer: BytesMut::new(),
            limit,
            failed: false,
        }
    }

    fn ensure_open(&self) -> PyResult<()> {
        if self.failed {
            Err(ClosedError::new_err("the packet reader has failed"))
        } else {
            Ok(())
        }
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Frame>()?;
    m.add_class::<Packet>()?;
    m.add_class::<PacketReader>()?;
    m.add_function(wrap_pyfunction!(parse_frame, m)?)?;
    m.add("DEFAULT_SPLIT_SIZE", DEFAULT_SPLIT_SIZE)?;
    m.add("DEFAULT_MAX_PACKET_LEN", DEFAULT_MAX_PACKET_LEN)?;
    Ok(())
}
