//! Packet assembly under both rule sets: the result does not depend on how bytes are chunked,
//! packets respect the limits, and ids only ever move forward (per connection or per stream).
#![no_main]

use std::collections::BTreeMap;

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use weir::mux::wire::{
    Assembler, FrameDecoder, Id, MuxLimits, Packet, PacketLimit, PacketReader, WireError,
};

fn reader(mux: bool, limit: PacketLimit) -> PacketReader {
    let assembler = if mux {
        Assembler::mux(
            limit,
            MuxLimits {
                max_streams: 4,
                max_partial_bytes: 96,
            },
        )
    } else {
        Assembler::compat(limit)
    };
    PacketReader::new(FrameDecoder::new(limit.frame_bound()), assembler)
}

fn read(
    mux: bool,
    limit: PacketLimit,
    input: &[u8],
    chunk: usize,
) -> (Vec<Packet>, Option<WireError>) {
    let mut reader = reader(mux, limit);
    let mut buf = BytesMut::new();
    let mut packets = Vec::new();
    for piece in input.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match reader.read(&mut buf) {
                Ok(Some(packet)) => packets.push(packet),
                Ok(None) => break,
                Err(e) => return (packets, Some(e)),
            }
        }
        assert!(
            buf.len() <= limit.frame_bound(),
            "buffered past the frame bound"
        );
        let partial = reader.assembler_mut().partial_bytes();
        if mux {
            assert!(partial <= 96, "partial data {partial} past the mux bound");
            assert!(reader.assembler_mut().tracked_streams() <= 4);
        }
    }
    (packets, None)
}

fuzz_target!(|data: &[u8]| {
    let [mode, limit, chunk, input @ ..] = data else {
        return;
    };
    let mux = mode & 1 == 1;
    let limit = match limit % 4 {
        0 => PacketLimit::RejectAll,
        n => PacketLimit::AtMost(usize::from(n) * 24),
    };
    let chunk = usize::from(chunk % 16) + 1;

    let whole = read(mux, limit, input, input.len().max(1));
    let chunked = read(mux, limit, input, chunk);
    assert_eq!(whole, chunked, "the result depends on chunking");

    let (packets, _) = whole;
    let mut last_per_stream: BTreeMap<u64, u64> = BTreeMap::new();
    let mut last: Option<Id> = None;
    for packet in &packets {
        assert!(limit.allows(packet.data.len()));
        if mux {
            if let Some(&previous) = last_per_stream.get(&packet.id.stream) {
                // Message ids wrap only after u64::MAX, as in Go.
                assert!(packet.id.message > previous || previous == u64::MAX);
            }
            last_per_stream.insert(packet.id.stream, packet.id.message);
        } else {
            if let Some(previous) = last {
                assert!(packet.id > previous || previous.message == u64::MAX);
            }
            last = Some(packet.id);
        }
    }
});
