//! Frame decoding: the incremental decoder, fed in chunks, agrees with the one-shot parser, stays
//! within its bound, and every frame it returns re-encodes to bytes that decode to the same frame.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use weir::mux::wire::{parse_frame, Frame, FrameDecoder, WireError};

const BOUND: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, input)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk % 32) + 1;

    let mut decoder = FrameDecoder::new(BOUND);
    let mut buf = BytesMut::new();
    let mut decoded: Vec<Frame> = Vec::new();
    let mut failure: Option<WireError> = None;
    'feed: for piece in input.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => decoded.push(frame),
                Ok(None) => {
                    assert!(
                        buf.len() <= BOUND,
                        "holding {} bytes past the bound",
                        buf.len()
                    );
                    break;
                }
                Err(e) => {
                    failure = Some(e);
                    break 'feed;
                }
            }
        }
    }

    // The one-shot parser sees the same frames, in order; the decoder only adds its bound.
    let mut rest = input;
    let mut parsed = 0;
    loop {
        match parse_frame(rest) {
            Ok(Some((frame, used))) => {
                let Some(ours) = decoded.get(parsed) else {
                    assert!(
                        matches!(failure, Some(WireError::FrameTooLarge { .. })) || used > BOUND,
                        "the parser found a frame the decoder did not return"
                    );
                    break;
                };
                assert_eq!(ours.kind, frame.kind);
                assert_eq!(
                    (ours.done, ours.control, ours.id),
                    (frame.done, frame.control, frame.id)
                );
                assert_eq!(&ours.data[..], frame.data);

                // Re-encoding is canonical (over-long varints shrink, a tenth varint byte loses
                // the bits Go ignores), and canonical bytes are a fixed point.
                let mut wire = Vec::new();
                frame.encode(&mut wire).expect("a Vec has room");
                assert!(wire.len() <= used, "re-encoding grew");
                let (again, again_used) = parse_frame(&wire).unwrap().expect("a whole frame");
                assert_eq!((again.clone(), again_used), (frame, wire.len()));
                let mut twice = Vec::new();
                again.encode(&mut twice).expect("a Vec has room");
                assert_eq!(twice, wire);
                rest = &rest[used..];
                parsed += 1;
            }
            Ok(None) => {
                assert_eq!(
                    parsed,
                    decoded.len(),
                    "the decoder returned a frame the parser did not"
                );
                break;
            }
            Err(e) => {
                assert_eq!(parsed, decoded.len());
                assert_eq!(failure, Some(e));
                break;
            }
        }
    }
});
