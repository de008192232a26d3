//! Property tests of the DRPC wire codec: roundtrips, chunking invariance, and mux interleaving.

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use weir::mux::wire::{
    Assembler, Frame, FrameDecoder, Id, Kind, MuxLimits, Packet, PacketLimit, PacketReader,
    SplitSize, WireError,
};

fn any_frame() -> impl Strategy<Value = Frame> {
    (
        0u8..64,
        any::<bool>(),
        any::<bool>(),
        any::<u64>(),
        any::<u64>(),
        proptest::collection::vec(any::<u8>(), 0..300),
    )
        .prop_map(|(kind, done, control, stream, message, data)| Frame {
            kind: Kind(kind),
            done,
            control,
            id: Id::new(stream, message),
            data: data.into(),
        })
}

/// Cut `bytes` at the given fractions of its length.
fn cuts(bytes: &[u8], fractions: &[f64]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = fractions
        .iter()
        .map(|f| (f * bytes.len() as f64) as usize)
        .collect();
    points.push(0);
    points.push(bytes.len());
    points.sort_unstable();
    points
        .windows(2)
        .map(|w| bytes[w[0]..w[1]].to_vec())
        .collect()
}

proptest! {
    #[test]
    fn frames_roundtrip_in_any_chunking(
        frames in proptest::collection::vec(any_frame(), 0..20),
        fractions in proptest::collection::vec(0.0f64..1.0, 0..30),
    ) {
        let mut wire = Vec::new();
        for frame in &frames {
            frame.encode(&mut wire).unwrap();
        }
        let mut decoder = FrameDecoder::default();
        let mut buf = BytesMut::new();
        let mut decoded = Vec::new();
        for piece in cuts(&wire, &fractions) {
            buf.extend_from_slice(&piece);
            while let Some(frame) = decoder.decode(&mut buf).unwrap() {
                decoded.push(frame);
            }
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(decoded, frames);
    }

    #[test]
    fn packets_roundtrip_through_the_compat_reader(
        packets in proptest::collection::vec(
            (0u8..64, any::<bool>(), proptest::collection::vec(any::<u8>(), 0..2000)), 1..10),
        split in 1usize..700,
        first_stream in 1u64..1000,
        fractions in proptest::collection::vec(0.0f64..1.0, 0..10),
    ) {
        // Ids must rise for Go's reader: one stream, message ids 1, 2, 3...
        let packets: Vec<Packet> = packets
            .into_iter()
            .enumerate()
            .map(|(i, (kind, control, data))| Packet {
                kind: Kind(kind),
                control,
                id: Id::new(first_stream, i as u64 + 1),
                data: data.into(),
            })
            .collect();
        let split = SplitSize::new(split).unwrap();
        let mut wire = Vec::new();
        for packet in &packets {
            packet.encode(split, &mut wire).unwrap();
        }
        let mut reader = PacketReader::compat(PacketLimit::DEFAULT);
        let mut buf = BytesMut::new();
        let mut decoded = Vec::new();
        for piece in cuts(&wire, &fractions) {
            buf.extend_from_slice(&piece);
            while let Some(packet) = reader.read(&mut buf).unwrap() {
                decoded.push(packet);
            }
        }
        prop_assert_eq!(decoded, packets);
    }

    /// Streams' frames interleaved in any order still assemble into each stream's packets, in
    /// order, and replaying any finished packet afterwards fails.
    #[test]
    fn mux_rules_assemble_interleaved_streams(
        streams in proptest::collection::vec(
            proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 1..5), 1..6),
        picks in proptest::collection::vec(any::<prop::sample::Index>(), 0..400),
        replay in any::<prop::sample::Index>(),
    ) {
        let split = SplitSize::new(7).unwrap();
        let mut queues: Vec<Vec<Frame>> = Vec::new();
        let mut want: BTreeMap<u64, Vec<Packet>> = BTreeMap::new();
        for (s, messages) in streams.iter().enumerate() {
            let stream = s as u64 + 1;
            let mut frames = Vec::new();
            for (m, data) in messages.iter().enumerate() {
                let packet = Packet {
                    kind: Kind::MESSAGE,
                    control: false,
                    id: Id::new(stream, m as u64 + 1),
                    data: Bytes::from(data.clone()),
                };
                frames.extend(packet.frames(split));
                want.entry(stream).or_default().push(packet);
            }
            frames.reverse();
            queues.push(frames);
        }

        let mut assembler = Assembler::mux(PacketLimit::DEFAULT, MuxLimits::default());
        let mut got: BTreeMap<u64, Vec<Packet>> = BTreeMap::new();
        let mut picks = picks.into_iter();
        loop {
            let ready: Vec<usize> = (0..queues.len()).filter(|&i| !queues[i].is_empty()).collect();
            if ready.is_empty() {
                break;
            }
            let which = picks.next().map_or(ready[0], |pick| ready[pick.index(ready.len())]);
            let frame = queues[which].pop().unwrap();
            if let Some(packet) = assembler.push(frame).unwrap() {
                got.entry(packet.id.stream).or_default().push(packet);
            }
        }
        prop_assert_eq!(&got, &want);
        prop_assert_eq!(assembler.partial_bytes(), 0);

        let all: Vec<&Packet> = want.values().flatten().collect();
        let old = all[replay.index(all.len())];
        let frame = old.frames(split).next().unwrap();
        let replayed = assembler.push(frame);
        let is_violation = matches!(replayed, Err(WireError::IdMonotonicity { .. }));
        prop_assert!(is_violation, "replay accepted: {:?}", replayed);
    }
}
