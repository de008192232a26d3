//! Joining frames into packets, under Go's rules (`Compat`) or per-stream rules (`Mux`).

use alloc::collections::BTreeMap;

use bytes::{Bytes, BytesMut};

use super::decoder::GO_FRAME_OVERHEAD;
use super::{Frame, FrameDecoder, Id, Kind, Packet, WireError};

/// The largest packet an assembler accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum PacketLimit {
    /// Packets of up to this many data bytes.
    AtMost(usize),
    /// No packet at all, not even an empty one: what Go's reader does with a negative
    /// `MaximumBufferSize`. Only useful to reproduce that behaviour.
    RejectAll,
}

impl PacketLimit {
    /// 4 MiB, Go's default.
    pub const DEFAULT: PacketLimit = PacketLimit::AtMost(4 << 20);

    /// The limit Go's `ReaderOptions{MaximumBufferSize}` means: 0 is the default, negative rejects
    /// every packet.
    pub const fn from_go(maximum_buffer_size: i64) -> PacketLimit {
        match maximum_buffer_size {
            0 => PacketLimit::DEFAULT,
            n if n < 0 => PacketLimit::RejectAll,
            n => PacketLimit::AtMost(if n as u64 > usize::MAX as u64 {
                usize::MAX
            } else {
                n as usize
            }),
        }
    }

    /// Whether a packet of `len` bytes fits.
    pub const fn allows(self, len: usize) -> bool {
        match self {
            PacketLimit::AtMost(max) => len <= max,
            PacketLimit::RejectAll => false,
        }
    }

    /// The frame decoder bound Go's reader applies with this limit: the limit plus 28 bytes.
    pub const fn frame_bound(self) -> usize {
        match self {
            PacketLimit::AtMost(max) => max.saturating_add(GO_FRAME_OVERHEAD),
            PacketLimit::RejectAll => GO_FRAME_OVERHEAD - 1,
        }
    }
}

impl Default for PacketLimit {
    fn default() -> PacketLimit {
        PacketLimit::DEFAULT
    }
}

/// Bounds that apply only under mux rules, where many streams may have packets in progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct MuxLimits {
    /// Streams tracked at once (default 1024). Streams leave through [`Assembler::retire`].
    pub max_streams: usize,
    /// Data held in unfinished packets across all streams (default 16 MiB).
    pub max_partial_bytes: usize,
}

impl Default for MuxLimits {
    fn default() -> MuxLimits {
        MuxLimits {
            max_streams: 1024,
            max_partial_bytes: 16 << 20,
        }
    }
}

/// Joins frames into packets.
///
/// Both rule sets start each packet on a frame with a new id, silently drop an unfinished packet
/// when a frame with a higher id arrives, fail on a kind change within a packet, mark a packet
/// control if any frame was, and after a packet completes expect the next message id, so a replay
/// fails. They differ in where ids are compared:
///
/// - **Compat**: Go's `drpcwire.Reader` exactly. One cursor for the whole connection, starting at
///   (stream 1, message 1); any lower id is a monotonicity violation.
/// - **Mux**: one cursor per stream, each starting at message 1, so frames of different streams
///   may interleave freely (one packet in progress per stream) while a replayed id on any stream
///   still fails.
///
/// Single-frame packets are handed on without copying; the data of a packet of many frames is
/// copied into one buffer frame by frame as the frames arrive, so the work per frame stays in
/// proportion to that frame, never to the whole packet. The last such buffer is reused once the
/// application drops its packet, so an assembler holds on to at most one packet's worth of memory
/// between packets.
///
/// ```
/// use bytes::Bytes;
/// use weir::mux::wire::{Assembler, Frame, Id, Kind, WireError};
///
/// let frame = |stream, message, done, data: &'static [u8]| Frame {
///     kind: Kind::MESSAGE, done, control: false, id: Id::new(stream, message), data: Bytes::from_static(data),
/// };
/// let mut compat = Assembler::compat(Default::default());
/// assert_eq!(compat.push(frame(1, 1, false, b"he")), Ok(None));
/// let packet = compat.push(frame(1, 1, true, b"llo")).unwrap().unwrap();
/// assert_eq!(&packet.data[..], b"hello");
/// assert!(matches!(compat.push(frame(1, 1, true, b"again")), Err(WireError::IdMonotonicity { .. })));
///
/// // Under mux rules, stream 1 may go on after stream 2 has started.
/// let mut mux = Assembler::mux(Default::default(), Default::default());
/// assert_eq!(mux.push(frame(2, 1, false, b"a")), Ok(None));
/// assert!(mux.push(frame(1, 1, true, b"b")).unwrap().is_some());
/// assert_eq!(&mux.push(frame(2, 1, true, b"c")).unwrap().unwrap().data[..], b"ac");
/// ```
#[derive(Clone, Debug)]
pub struct Assembler {
    limit: PacketLimit,
    rules: Rules,
    /// What is left of the last buffer a packet of many frames was joined in: the next such
    /// packet reuses its allocation once the application has dropped the packet.
    join: BytesMut,
}

#[derive(Clone, Debug)]
enum Rules {
    Compat(Cursor),
    Mux {
        limits: MuxLimits,
        streams: BTreeMap<u64, Cursor>,
        partial_bytes: usize,
    },
}

/// The next acceptable id and the packet in progress, for a connection (compat) or a stream (mux).
#[derive(Clone, Debug)]
struct Cursor {
    next: Id,
    partial: Option<Partial>,
}

impl Cursor {
    const fn new(next: Id) -> Cursor {
        Cursor {
            next,
            partial: None,
        }
    }

    /// Apply one frame under the rules both modes share; returns the packet it completes.
    ///
    /// On error the packet in progress is dropped, so a broken connection holds no data.
    fn push(
        &mut self,
        frame: Frame,
        limit: PacketLimit,
        join: &mut BytesMut,
    ) -> Result<Option<Packet>, WireError> {
        if frame.id < self.next {
            return Err(WireError::IdMonotonicity {
                frame: frame.id,
                expected: self.next,
            });
        }
        let mut partial = match self.partial.take() {
            Some(partial) if frame.id == self.next => partial,
            // A new id: whatever was in progress is dropped, as Go does.
            _ => {
                self.next = frame.id;
                if frame.done {
                    // The common case: a packet of one frame is handed on as it is.
                    return self.complete(frame.kind, frame.control, frame.id, frame.data, limit);
                }
                Partial {
                    kind: frame.kind,
                    control: false,
                    data: PartialData::default(),
                }
            }
        };
        if frame.kind != partial.kind {
            return Err(WireError::KindChange {
                frame: frame.kind,
                packet: partial.kind,
            });
        }
        partial.control |= frame.control;
        partial.data.push(frame.data, join);
        if !limit.allows(partial.data.len) {
            return Err(WireError::PacketTooLarge {
                len: partial.data.len,
            });
        }
        if !frame.done {
            self.partial = Some(partial);
            return Ok(None);
        }
        let data = partial.data.finish(join);
        self.complete(partial.kind, partial.control, frame.id, data, limit)
    }

    /// Hand on a whole packet and expect the next message id (wrapping, as Go's uint64 does).
    fn complete(
        &mut self,
        kind: Kind,
        control: bool,
        id: Id,
        data: Bytes,
        limit: PacketLimit,
    ) -> Result<Option<Packet>, WireError> {
        if !limit.allows(data.len()) {
            return Err(WireError::PacketTooLarge { len: data.len() });
        }
        self.next.message = self.next.message.wrapping_add(1);
        Ok(Some(Packet {
            kind,
            control,
            id,
            data,
        }))
    }

    fn partial_len(&self) -> usize {
        self.partial.as_ref().map_or(0, |p| p.data.len)
    }
}

#[derive(Clone, Debug)]
struct Partial {
    kind: Kind,
    control: bool,
    data: PartialData,
}

/// The data of a packet in progress: its first frame's data as it came, then, from the second
/// frame on, every frame's data copied into one buffer as the frame arrives. The copying is spread
/// over the frames, so no single frame costs more than copying its own data (plus, now and then,
/// growing the buffer), however large the packet. A fresh buffer holds at most twice the data; a
/// reused one keeps the size of the packet it held before (see `Assembler::join`).
#[derive(Clone, Debug, Default)]
struct PartialData {
    len: usize,
    held: Held,
}

#[derive(Clone, Debug, Default)]
enum Held {
    #[default]
    Nothing,
    One(Bytes),
    Joined(BytesMut),
}

impl PartialData {
    /// Add one frame's data. `spare` is the assembler's buffer kept from an earlier packet: a
    /// packet's second frame takes it, so that its allocation is reused once the application
    /// has dropped that packet.
    fn push(&mut self, data: Bytes, spare: &mut BytesMut) {
        self.len += data.len();
        self.held = match core::mem::take(&mut self.held) {
            Held::Nothing => Held::One(data),
            Held::One(first) => {
                let mut joined = core::mem::take(spare);
                joined.reserve(first.len() + data.len());
                joined.extend_from_slice(&first);
                joined.extend_from_slice(&data);
                Held::Joined(joined)
            }
            Held::Joined(mut joined) => {
                joined.extend_from_slice(&data);
                Held::Joined(joined)
            }
        };
    }

    /// The whole data. A joined buffer's allocation becomes the assembler's `spare`.
    fn finish(self, spare: &mut BytesMut) -> Bytes {
        match self.held {
            Held::Nothing => Bytes::new(),
            Held::One(data) => data,
            Held::Joined(mut joined) => {
                let data = joined.split().freeze();
                *spare = joined;
                data
            }
        }
    }
}

impl Assembler {
    /// An assembler with Go's rules: one cursor for the connection, starting at (1, 1).
    pub fn compat(limit: PacketLimit) -> Assembler {
        Assembler {
            limit,
            rules: Rules::Compat(Cursor::new(Id::new(1, 1))),
            join: BytesMut::new(),
        }
    }

    /// An assembler with per-stream cursors, bounded by `limits`.
    pub fn mux(limit: PacketLimit, limits: MuxLimits) -> Assembler {
        Assembler {
            limit,
            rules: Rules::Mux {
                limits,
                streams: BTreeMap::new(),
                partial_bytes: 0,
            },
            join: BytesMut::new(),
        }
    }

    /// The packet limit.
    pub const fn limit(&self) -> PacketLimit {
        self.limit
    }

    /// Take one frame; returns the packet it completes, if any.
    ///
    /// After an error the connection is broken and should be closed.
    #[inline]
    pub fn push(&mut self, frame: Frame) -> Result<Option<Packet>, WireError> {
        match &mut self.rules {
            Rules::Compat(cursor) => cursor.push(frame, self.limit, &mut self.join),
            Rules::Mux {
                limits,
                streams,
                partial_bytes,
            } => {
                let stream = frame.id.stream;
                if !streams.contains_key(&stream) && streams.len() >= limits.max_streams {
                    return Err(WireError::TooManyStreams {
                        max: limits.max_streams,
                    });
                }
                let cursor = streams
                    .entry(stream)
                    .or_insert_with(|| Cursor::new(Id::new(stream, 1)));
                let before = cursor.partial_len();
                let result = cursor.push(frame, self.limit, &mut self.join);
                *partial_bytes = *partial_bytes - before + cursor.partial_len();
                let packet = result?;
                if *partial_bytes > limits.max_partial_bytes {
                    return Err(WireError::PartialDataOverflow {
                        max: limits.max_partial_bytes,
                    });
                }
                Ok(packet)
            }
        }
    }

    /// Forget a stream under mux rules, dropping its unfinished packet; a no-op under compat rules.
    ///
    /// A retired stream that sends again starts over at message 1, so retire only streams that
    /// are finished and whose late frames the caller filters out.
    pub fn retire(&mut self, stream: u64) {
        if let Rules::Mux {
            streams,
            partial_bytes,
            ..
        } = &mut self.rules
        {
            if let Some(cursor) = streams.remove(&stream) {
                *partial_bytes -= cursor.partial_len();
            }
        }
    }

    /// Data held in unfinished packets.
    pub fn partial_bytes(&self) -> usize {
        match &self.rules {
            Rules::Compat(cursor) => cursor.partial_len(),
            Rules::Mux { partial_bytes, .. } => *partial_bytes,
        }
    }

    /// Streams tracked under mux rules (always 0 under compat rules).
    pub fn tracked_streams(&self) -> usize {
        match &self.rules {
            Rules::Compat(_) => 0,
            Rules::Mux { streams, .. } => streams.len(),
        }
    }
}

/// A frame decoder and an assembler together: bytes in, packets out, like Go's `drpcwire.Reader`.
///
/// ```
/// use bytes::BytesMut;
/// use weir::mux::wire::{Kind, PacketLimit, PacketReader};
///
/// let mut reader = PacketReader::compat(PacketLimit::DEFAULT);
/// // A Message split over two frames, as a Go writer with split size 2 sends "abc".
/// let mut received = BytesMut::from(&[0x04, 1, 1, 2, b'a', b'b', 0x05, 1, 1, 1, b'c'][..]);
/// let packet = reader.read(&mut received).unwrap().unwrap();
/// assert_eq!((packet.kind, &packet.data[..]), (Kind::MESSAGE, &b"abc"[..]));
/// assert_eq!(reader.read(&mut received), Ok(None));
/// ```
#[derive(Clone, Debug)]
pub struct PacketReader {
    decoder: FrameDecoder,
    assembler: Assembler,
}

impl PacketReader {
    /// A reader with Go's rules and Go's frame bound for `limit`.
    pub fn compat(limit: PacketLimit) -> PacketReader {
        PacketReader::new(
            FrameDecoder::new(limit.frame_bound()),
            Assembler::compat(limit),
        )
    }

    /// A reader from its parts.
    pub const fn new(decoder: FrameDecoder, assembler: Assembler) -> PacketReader {
        PacketReader { decoder, assembler }
    }

    /// The assembler, to retire streams or read its counters.
    pub fn assembler_mut(&mut self) -> &mut Assembler {
        &mut self.assembler
    }

    /// The next whole packet from `src`, or `Ok(None)` until one is there.
    #[inline]
    pub fn read(&mut self, src: &mut BytesMut) -> Result<Option<Packet>, WireError> {
        while let Some(frame) = self.decoder.decode(src)? {
            if let Some(packet) = self.assembler.push(frame)? {
                return Ok(Some(packet));
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use alloc::vec::Vec;

    use super::*;

    fn frame(stream: u64, message: u64, done: bool, data: &'static [u8]) -> Frame {
        Frame {
            kind: Kind::MESSAGE,
            done,
            control: false,
            id: Id::new(stream, message),
            data: Bytes::from_static(data),
        }
    }

    fn mux(max_streams: usize, max_partial_bytes: usize) -> Assembler {
        let limits = MuxLimits {
            max_streams,
            max_partial_bytes,
        };
        Assembler::mux(PacketLimit::DEFAULT, limits)
    }

    #[test]
    fn compat_rules_reject_an_older_stream_that_mux_rules_accept() {
        let mut compat = Assembler::compat(PacketLimit::DEFAULT);
        let mut mux = mux(8, 1024);
        for assembler in [&mut compat, &mut mux] {
            assert!(assembler.push(frame(2, 1, true, b"x")).unwrap().is_some());
        }
        assert_eq!(
            compat.push(frame(1, 1, true, b"y")),
            Err(WireError::IdMonotonicity {
                frame: Id::new(1, 1),
                expected: Id::new(2, 2)
            })
        );
        assert!(mux.push(frame(1, 1, true, b"y")).unwrap().is_some());
    }

    #[test]
    fn mux_rules_bound_the_streams_tracked_until_one_retires() {
        let mut assembler = mux(2, 1024);
        assembler.push(frame(1, 1, true, b"")).unwrap();
        assembler.push(frame(2, 1, true, b"")).unwrap();
        assert_eq!(
            assembler.push(frame(3, 1, true, b"")),
            Err(WireError::TooManyStreams { max: 2 })
        );
        assembler.retire(1);
        assert_eq!(assembler.tracked_streams(), 1);
        assert!(assembler.push(frame(3, 1, true, b"")).unwrap().is_some());
    }

    #[test]
    fn mux_rules_bound_partial_data_across_streams_and_retiring_frees_it() {
        let mut assembler = mux(8, 5);
        assert_eq!(assembler.push(frame(1, 1, false, b"abc")), Ok(None));
        assert_eq!(assembler.push(frame(2, 1, false, b"de")), Ok(None));
        assert_eq!(assembler.partial_bytes(), 5);
        assert_eq!(
            assembler.push(frame(3, 1, false, b"f")),
            Err(WireError::PartialDataOverflow { max: 5 })
        );
        assembler.retire(3);
        assembler.retire(1);
        assert_eq!(assembler.partial_bytes(), 2);
        let packet = assembler.push(frame(2, 1, true, b"!")).unwrap().unwrap();
        assert_eq!(&packet.data[..], b"de!");
        assert_eq!(assembler.partial_bytes(), 0);
    }

    #[test]
    fn a_new_id_drops_the_packet_in_progress_and_its_bytes() {
        let mut assembler = mux(8, 1024);
        assert_eq!(assembler.push(frame(1, 1, false, b"lost")), Ok(None));
        let packet = assembler.push(frame(1, 2, true, b"kept")).unwrap().unwrap();
        assert_eq!((packet.id, &packet.data[..]), (Id::new(1, 2), &b"kept"[..]));
        assert_eq!(assembler.partial_bytes(), 0);
    }

    #[test]
    fn many_tiny_frames_are_joined_in_order() {
        let mut assembler = Assembler::compat(PacketLimit::DEFAULT);
        let mut want = Vec::new();
        for i in 0..10_000u32 {
            let byte = (i % 251) as u8;
            want.push(byte);
            let data = Bytes::from(alloc::vec![byte]);
            let frame = Frame {
                data,
                ..frame(1, 1, false, b"")
            };
            assert_eq!(assembler.push(frame), Ok(None));
        }
        let big = Bytes::from(alloc::vec![7u8; 5000]);
        want.extend_from_slice(&big);
        let frame = Frame {
            data: big,
            ..frame(1, 1, true, b"")
        };
        let packet = assembler.push(frame).unwrap().unwrap();
        assert_eq!(packet.data, want);
    }
}
