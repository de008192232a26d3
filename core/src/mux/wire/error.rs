//! The one error type of the wire codec.

use super::{Id, Kind};

/// Everything that can be wrong with bytes on the wire, or with a buffer handed to an encoder.
///
/// The `Display` text of each variant is the text the Go implementation (`storj.io/drpc`) produces
/// for the same input. Go's `drpcwire.Reader` wraps the errors it returns in its protocol error
/// class, so the variants marked *reader* read `protocol error: <text>` there; the others are
/// returned as they are by `drpcwire.ReadVarint`, `drpcwire.ParseFrame` and `drpcmetadata.Decode`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// A varint ran to ten bytes without ending. Go: `drpc: varint too long`.
    #[error("drpc: varint too long")]
    VarintTooLong,

    /// More than `max` bytes are buffered and still do not complete a frame (*reader*).
    /// Go: `protocol error: data overflow`.
    #[error("data overflow")]
    FrameTooLarge {
        /// The most bytes the decoder holds for one unfinished frame.
        max: usize,
    },

    /// A packet's data grew past the packet limit (*reader*). Go: `protocol error: data overflow (len:N)`.
    #[error("data overflow (len:{len})")]
    PacketTooLarge {
        /// The packet's length including the frame that broke the limit.
        len: usize,
    },

    /// A frame's id is lower than the next id the reader accepts, which includes any replay of a
    /// finished packet (*reader*). Go: `protocol error: id monotonicity violation (fr:<id s:S m:M> r:<id s:S m:M>)`.
    #[error("id monotonicity violation (fr:{frame} r:{expected})")]
    IdMonotonicity {
        /// The id of the offending frame.
        frame: Id,
        /// The lowest id that would have been accepted.
        expected: Id,
    },

    /// A frame continued a packet with a different kind (*reader*).
    /// Go: `protocol error: packet kind change (fr:K pkt:K)`.
    #[error("packet kind change (fr:{frame} pkt:{packet})")]
    KindChange {
        /// The kind of the offending frame.
        frame: Kind,
        /// The kind of the packet being assembled.
        packet: Kind,
    },

    /// In mux rules, a frame would start tracking one more stream than the limit allows.
    /// Go's reader has no such limit.
    #[error("too many streams ({max} tracked)")]
    TooManyStreams {
        /// The configured limit.
        max: usize,
    },

    /// In mux rules, unfinished packets across all streams would hold more than the limit.
    /// Go's reader has no such limit.
    #[error("too much partial packet data buffered (limit {max} bytes)")]
    PartialDataOverflow {
        /// The configured limit.
        max: usize,
    },

    /// Metadata bytes are not a strict run of key/value entries. Go: `invalid data`.
    #[error("invalid data")]
    InvalidMetadata,

    /// The caller's buffer cannot hold what it was asked to encode; nothing was written.
    #[error("buffer too small: {needed} bytes needed, {available} available")]
    BufferTooSmall {
        /// Bytes the encoding needs.
        needed: usize,
        /// Bytes the buffer had room for.
        available: usize,
    },
}
