//! Packets, and splitting them into frames.

use bytes::{BufMut, Bytes};

use super::frame::{header_len, put_header};
use super::{Frame, Id, Kind, WireError};

/// A whole message of one kind on one stream: the frames with the same id, joined.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Packet {
    /// What the packet is.
    pub kind: Kind,
    /// Set if any of its frames had the control bit.
    pub control: bool,
    /// Its (stream, message) id.
    pub id: Id,
    /// Its data, all frames' data in order.
    pub data: Bytes,
}

/// The largest frame data a writer sends before it starts a new frame of the same packet.
///
/// Go calls this `SplitSize`: 0 there means the 64 KiB default and a negative value means "never
/// split"; here those are [`SplitSize::DEFAULT`] and [`SplitSize::NEVER`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SplitSize(usize);

impl SplitSize {
    /// 64 KiB, the Go default.
    pub const DEFAULT: SplitSize = SplitSize(64 * 1024);
    /// Never split: every packet is one frame.
    pub const NEVER: SplitSize = SplitSize(usize::MAX);

    /// Frames of at most `bytes` of data, or `None` for zero.
    pub const fn new(bytes: usize) -> Option<SplitSize> {
        if bytes == 0 {
            None
        } else {
            Some(SplitSize(bytes))
        }
    }

    /// The largest frame data, `usize::MAX` for [`SplitSize::NEVER`].
    pub const fn get(self) -> usize {
        self.0
    }
}

impl Default for SplitSize {
    fn default() -> SplitSize {
        SplitSize::DEFAULT
    }
}

impl Packet {
    /// The frames of this packet, split as Go's `SplitN` does, each slicing this packet's data.
    ///
    /// Only the last frame has `done` set. An empty packet is one empty frame, and a packet whose
    /// length is a multiple of the split size gets no extra empty frame.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use weir::mux::wire::{Id, Kind, Packet, SplitSize};
    ///
    /// let packet = Packet { kind: Kind::MESSAGE, control: false, id: Id::new(1, 2), data: Bytes::from_static(b"hello") };
    /// let frames: Vec<_> = packet.frames(SplitSize::new(2).unwrap()).collect();
    /// assert_eq!(frames.len(), 3);
    /// assert_eq!((&frames[2].data[..], frames[2].done), (&b"o"[..], true));
    /// ```
    pub fn frames(&self, split: SplitSize) -> Frames<'_> {
        Frames {
            packet: self,
            split,
            offset: 0,
            finished: false,
        }
    }

    /// The number of bytes [`Packet::encode`] writes with this split size.
    pub fn encoded_len(&self, split: SplitSize) -> usize {
        chunks(self.data.len(), split)
            .map(|(start, end)| header_len(self.id, end - start) + (end - start))
            .sum()
    }

    /// Append the packet's frames to `dst`, or write nothing and fail if `dst` lacks room.
    pub fn encode(&self, split: SplitSize, dst: &mut impl BufMut) -> Result<(), WireError> {
        let needed = self.encoded_len(split);
        let available = dst.remaining_mut();
        if available < needed {
            return Err(WireError::BufferTooSmall { needed, available });
        }
        let last = self.data.len();
        for (start, end) in chunks(last, split) {
            let done = end == last;
            put_header(dst, self.kind, done, self.control, self.id, end - start);
            dst.put_slice(&self.data[start..end]);
        }
        Ok(())
    }
}

/// The `(start, end)` ranges of each frame's data; one empty range for empty data.
fn chunks(len: usize, split: SplitSize) -> impl Iterator<Item = (usize, usize)> {
    let size = split.get();
    let count = if len == 0 { 1 } else { len.div_ceil(size) };
    (0..count).map(move |i| {
        let start = i * size;
        (start, len.min(start.saturating_add(size)))
    })
}

/// The frames of a packet, from [`Packet::frames`].
#[derive(Clone, Debug)]
pub struct Frames<'a> {
    packet: &'a Packet,
    split: SplitSize,
    offset: usize,
    finished: bool,
}

impl Iterator for Frames<'_> {
    type Item = Frame;

    fn next(&mut self) -> Option<Frame> {
        if self.finished {
            return None;
        }
        let len = self.packet.data.len();
        let end = len.min(self.offset.saturating_add(self.split.get()));
        let data = self.packet.data.slice(self.offset..end);
        self.offset = end;
        self.finished = end == len;
        Some(Frame {
            kind: self.packet.kind,
            done: self.finished,
            control: self.packet.control,
            id: self.packet.id,
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn packet(len: usize) -> Packet {
        Packet {
            kind: Kind::MESSAGE,
            control: false,
            id: Id::new(3, 7),
            data: (0..len).map(|i| i as u8).collect::<Vec<_>>().into(),
        }
    }

    #[test]
    fn encode_matches_the_frames_it_splits_into() {
        for len in [0, 1, 9, 10, 11, 100] {
            for split in [1, 3, 10, 1000] {
                let packet = packet(len);
                let split = SplitSize::new(split).unwrap();
                let mut direct = Vec::new();
                packet.encode(split, &mut direct).unwrap();
                let mut framed = Vec::new();
                for frame in packet.frames(split) {
                    frame.encode(&mut framed).unwrap();
                }
                assert_eq!(direct, framed);
                assert_eq!(direct.len(), packet.encoded_len(split));
            }
        }
    }

    #[test]
    fn an_exact_multiple_gets_no_trailing_empty_frame() {
        let frames: Vec<_> = packet(20).frames(SplitSize::new(10).unwrap()).collect();
        assert_eq!(frames.len(), 2);
        assert!(frames[1].done && frames[1].data.len() == 10);
    }
}
