//! `wire`: the DRPC wire format, byte for byte as Go's `storj.io/drpc`.
//!
//! ```js
//! const { wire } = require('weir')
//! const bytes = wire.encodePacket({ kind: 2, control: false, stream: 1n, message: 2n, data: Buffer.from('hello') }, 2)
//! const reader = new wire.PacketReader()
//! reader.feed(bytes)
//! console.log(reader.read().data.toString())               // 'hello', from three frames
//! ```
//!
//! Decoding errors are thrown with code `WEIR_REMOTE_PROTOCOL` and Go's error text as the
//! message; encoding errors (a value the format cannot hold) with `WEIR_USAGE`.

use bytes::{Bytes, BytesMut};
use napi::bindgen_prelude::BigInt;
use napi_derive::napi;
use weir::mux::wire::{self as core, Id, Kind, PacketLimit, SplitSize, WireError};

use crate::buffer::Buffer;
use crate::errors::{error, to_u64, to_usize, usage, Code, Result};

fn broken(e: WireError) -> napi::Error<Code> {
    error(Code::RemoteProtocol, e.to_string())
}

/// A kind as the core takes it: any byte (the encoder keeps its low six bits, as Go's does).
fn kind(kind: u32) -> Result<Kind> {
    u8::try_from(kind)
        .map(Kind)
        .map_err(|_| usage("kind must be an integer in 0..256"))
}

/// One frame: a packet's kind, id and a share of its data; `done` on its last frame.
#[napi(object, namespace = "wire")]
pub struct Frame {
    /// The packet kind (1 Invoke, 2 Message, 3 Error, 4 Cancel, 5 Close, 6 CloseSend,
    /// 7 InvokeMetadata, 8 WindowUpdate, 9 Ping, 10 Pong).
    pub kind: u32,
    /// Set on the last frame of a packet.
    pub done: bool,
    /// Set on frames a peer may ignore if it does not know their kind.
    pub control: bool,
    /// The stream id.
    pub stream: BigInt,
    /// The message id within the stream.
    pub message: BigInt,
    /// This frame's data.
    pub data: Buffer,
}

/// One packet: what a run of frames with one id carries, whole.
#[napi(object, namespace = "wire")]
pub struct Packet {
    /// The packet kind.
    pub kind: u32,
    /// The control bit.
    pub control: bool,
    /// The stream id.
    pub stream: BigInt,
    /// The message id within the stream.
    pub message: BigInt,
    /// The packet's data.
    pub data: Buffer,
}

/// A frame parsed from the front of a buffer, and how many bytes it took.
#[napi(object, namespace = "wire")]
pub struct ParsedFrame {
    pub frame: Frame,
    pub used: u32,
}

/// A varint read from the front of a buffer, and how many bytes it took.
#[napi(object, namespace = "wire")]
pub struct ParsedVarint {
    pub value: BigInt,
    pub used: u32,
}

/// A DRPC error body: a code and a message.
#[napi(object, namespace = "wire")]
pub struct ErrorBody {
    pub code: BigInt,
    pub message: Buffer,
}

/// One metadata entry.
#[napi(object, namespace = "wire")]
pub struct MetadataEntry {
    pub key: Buffer,
    pub value: Buffer,
}

fn id(stream: &BigInt, message: &BigInt) -> Result<Id> {
    Ok(Id::new(
        to_u64("stream", stream)?,
        to_u64("message", message)?,
    ))
}

fn to_frame(frame: core::Frame<&[u8]>) -> Frame {
    Frame {
        kind: u32::from(frame.kind.0),
        done: frame.done,
        control: frame.control,
        stream: BigInt::from(frame.id.stream),
        message: BigInt::from(frame.id.message),
        data: Buffer::from(frame.data.to_vec()),
    }
}

fn to_packet(packet: core::Packet) -> Packet {
    Packet {
        kind: u32::from(packet.kind.0),
        control: packet.control,
        stream: BigInt::from(packet.id.stream),
        message: BigInt::from(packet.id.message),
        data: Buffer(packet.data),
    }
}

fn from_packet(packet: &Packet) -> Result<core::Packet> {
    Ok(core::Packet {
        kind: kind(packet.kind)?,
        control: packet.control,
        id: id(&packet.stream, &packet.message)?,
        data: Bytes::copy_from_slice(&packet.data),
    })
}

/// `splitSize` as the core's: a positive integer, `Infinity` for never, absent for the default.
fn split_size(split: Option<f64>) -> Result<SplitSize> {
    match split {
        None => Ok(SplitSize::DEFAULT),
        Some(f64::INFINITY) => Ok(SplitSize::NEVER),
        Some(n) => SplitSize::new(to_usize("splitSize", n)?)
            .ok_or_else(|| usage("splitSize must be at least 1")),
    }
}

/// The bytes of `frame`.
#[napi(namespace = "wire")]
pub fn encode_frame(frame: Frame) -> Result<Buffer> {
    let frame = core::Frame {
        kind: kind(frame.kind)?,
        done: frame.done,
        control: frame.control,
        id: id(&frame.stream, &frame.message)?,
        data: &frame.data[..],
    };
    let mut wire = Vec::with_capacity(frame.encoded_len());
    frame.encode(&mut wire).map_err(|e| usage(e.to_string()))?;
    Ok(wire.into())
}

/// The frame at the front of `data`, or `null` when `data` does not hold a whole one yet.
/// Throws `WEIR_REMOTE_PROTOCOL` for a varint that is too long.
#[napi(namespace = "wire")]
pub fn parse_frame(data: &[u8]) -> Result<Option<ParsedFrame>> {
    let Some((frame, used)) = core::parse_frame(data).map_err(broken)? else {
        return Ok(None);
    };
    let used = u32::try_from(used).map_err(|_| usage("a frame of 4 GiB or more"))?;
    Ok(Some(ParsedFrame {
        frame: to_frame(frame),
        used,
    }))
}

/// The frames `packet` is written as, each with at most `splitSize` bytes of data (default
/// 64 KiB, Go's; `Infinity`: one frame).
#[napi(namespace = "wire")]
pub fn packet_frames(packet: Packet, split_size: Option<f64>) -> Result<Vec<Frame>> {
    let packet = from_packet(&packet)?;
    Ok(packet
        .frames(self::split_size(split_size)?)
        .map(|f| {
            to_frame(core::Frame {
                kind: f.kind,
                done: f.done,
                control: f.control,
                id: f.id,
                data: &f.data[..],
            })
        })
        .collect())
}

/// The bytes of `packet`, split into frames as `packetFrames` does.
#[napi(namespace = "wire")]
pub fn encode_packet(packet: Packet, split_size: Option<f64>) -> Result<Buffer> {
    let packet = from_packet(&packet)?;
    let split = self::split_size(split_size)?;
    let mut wire = Vec::with_capacity(packet.encoded_len(split));
    packet
        .encode(split, &mut wire)
        .map_err(|e| usage(e.to_string()))?;
    Ok(wire.into())
}

/// The bytes of an unsigned varint.
#[napi(namespace = "wire")]
pub fn encode_varint(value: BigInt) -> Result<Buffer> {
    let mut wire = Vec::new();
    core::put_varint(&mut wire, to_u64("value", &value)?);
    Ok(wire.into())
}

/// The varint at the front of `data`, or `null` when it is incomplete. Throws
/// `WEIR_REMOTE_PROTOCOL` for one that is too long.
#[napi(namespace = "wire")]
pub fn read_varint(data: &[u8]) -> Result<Option<ParsedVarint>> {
    Ok(core::read_varint(data)
        .map_err(broken)?
        .map(|(value, used)| ParsedVarint {
            value: BigInt::from(value),
            used: used as u32,
        }))
}

/// The bytes of an Error packet's data.
#[napi(namespace = "wire")]
pub fn encode_error(body: ErrorBody) -> Result<Buffer> {
    let body = core::ErrorBody::new(
        to_u64("code", &body.code)?,
        Bytes::copy_from_slice(&body.message),
    );
    let mut wire = Vec::with_capacity(body.encoded_len());
    body.encode(&mut wire).map_err(|e| usage(e.to_string()))?;
    Ok(wire.into())
}

/// An Error packet's data as Go reads it (data too short for a code reads as code 0 with a note
/// in the message, as Go's); never throws.
#[napi(namespace = "wire")]
pub fn decode_error(data: &[u8]) -> ErrorBody {
    let body = core::ErrorBody::decode(Bytes::copy_from_slice(data));
    ErrorBody {
        code: BigInt::from(body.code),
        message: Buffer(body.message),
    }
}

/// The bytes of metadata (an InvokeMetadata packet's data); later entries replace earlier ones
/// with the same key.
#[napi(namespace = "wire")]
pub fn encode_metadata(entries: Vec<MetadataEntry>) -> Result<Buffer> {
    let metadata: core::Metadata = entries
        .iter()
        .map(|e| {
            (
                Bytes::copy_from_slice(&e.key),
                Bytes::copy_from_slice(&e.value),
            )
        })
        .collect();
    let mut wire = Vec::with_capacity(metadata.encoded_len());
    metadata
        .encode(&mut wire)
        .map_err(|e| usage(e.to_string()))?;
    Ok(wire.into())
}

/// Metadata decoded, in key order. Throws `WEIR_REMOTE_PROTOCOL` with Go's text for bytes Go
/// would refuse.
#[napi(namespace = "wire")]
pub fn decode_metadata(data: &[u8]) -> Result<Vec<MetadataEntry>> {
    let metadata = core::Metadata::decode(&Bytes::copy_from_slice(data)).map_err(broken)?;
    Ok(metadata
        .iter()
        .map(|(k, v)| MetadataEntry {
            key: Buffer::from(k.to_vec()),
            value: Buffer::from(v.to_vec()),
        })
        .collect())
}

/// The data of one frame this side writes at most, unless told otherwise (Go's 64 KiB).
#[napi(namespace = "wire")]
pub const DEFAULT_SPLIT_SIZE: u32 = 64 << 10;

/// The largest packet a `PacketReader` accepts unless told otherwise (Go's 4 MiB).
#[napi(namespace = "wire")]
pub const DEFAULT_MAX_PACKET_LEN: u32 = 4 << 20;

/// Reads whole packets from a byte stream as Go's `drpcwire.Reader` does (compat mode: ids only
/// rise, a new message id drops an unfinished packet). Bytes fed are copied into its buffer.
#[napi(namespace = "wire")]
pub struct PacketReader {
    reader: core::PacketReader,
    buffer: BytesMut,
}

#[napi(namespace = "wire")]
impl PacketReader {
    /// A reader whose packets hold at most `maxPacketLen` bytes (default
    /// `DEFAULT_MAX_PACKET_LEN`, Go's 4 MiB).
    #[napi(constructor)]
    pub fn new(max_packet_len: Option<f64>) -> Result<PacketReader> {
        let max = match max_packet_len {
            Some(n) => to_usize("maxPacketLen", n)?,
            None => DEFAULT_MAX_PACKET_LEN as usize,
        };
        Ok(PacketReader::with_limit(PacketLimit::AtMost(max)))
    }

    /// A reader with Go's `ReaderOptions.MaximumBufferSize` meaning of the limit: 0 for the
    /// default (4 MiB), negative to refuse every packet.
    #[napi(factory)]
    pub fn go(maximum_buffer_size: i64) -> PacketReader {
        PacketReader::with_limit(PacketLimit::from_go(maximum_buffer_size))
    }

    /// Appends bytes read from the stream (copied into the reader's buffer).
    #[napi]
    pub fn feed(&mut self, data: &[u8]) {
        self.buffer.extend_from_slice(data);
    }

    /// The next whole packet, or `null` until more bytes are fed. Throws
    /// `WEIR_REMOTE_PROTOCOL` with Go's reader's text (`protocol error: ...`) when the stream
    /// breaks the format; the reader is then done with that stream.
    #[napi]
    pub fn read(&mut self) -> Result<Option<Packet>> {
        match self.reader.read(&mut self.buffer) {
            Ok(packet) => Ok(packet.map(to_packet)),
            Err(e) => Err(error(Code::RemoteProtocol, format!("protocol error: {e}"))),
        }
    }

    /// How many times `read` returns a packet on the bytes fed so far, reading them all:
    /// for counting decoded packets without handing each one to JS.
    #[napi]
    pub fn drain(&mut self) -> Result<u32> {
        let mut count = 0;
        while self.read_one()? {
            count += 1;
        }
        Ok(count)
    }

    /// Bytes fed and not yet decoded into frames.
    #[napi]
    pub fn buffered_len(&self) -> u32 {
        u32::try_from(self.buffer.len()).unwrap_or(u32::MAX)
    }
}

impl PacketReader {
    fn with_limit(limit: PacketLimit) -> PacketReader {
        PacketReader {
            reader: core::PacketReader::compat(limit),
            buffer: BytesMut::new(),
        }
    }

    fn read_one(&mut self) -> Result<bool> {
        match self.reader.read(&mut self.buffer) {
            Ok(packet) => Ok(packet.is_some()),
            Err(e) => Err(error(Code::RemoteProtocol, format!("protocol error: {e}"))),
        }
    }
}
