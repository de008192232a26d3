//! The pgwire framer in both directions: arbitrary bytes in arbitrary pieces never panic, the
//! frames rebuild exactly the bytes consumed, and buffers stay within the limits.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use weir::transfer::frame::{header, Frame, Framer, FramerLimits, Side};

#[derive(Debug, Arbitrary)]
struct Input {
    side: Side,
    max_message_len: u16,
    max_startup_len: u16,
    capture: u16,
    expect_answer: bool,
    cuts: Vec<u8>,
    data: Vec<u8>,
}

fuzz_target!(|input: Input| {
    let limits = FramerLimits {
        max_message_len: u32::from(input.max_message_len).max(4),
        max_startup_len: u32::from(input.max_startup_len).max(8),
    };
    let mut framer = Framer::new(input.side, limits);
    if input.expect_answer {
        framer.expect_encryption_answer();
    }
    let capture = u32::from(input.capture);
    let mut rebuilt = Vec::new();
    let mut consumed = 0;
    let mut rest = &input.data[..];
    let mut cuts = input.cuts.iter();
    while !rest.is_empty() {
        let n = cuts
            .next()
            .map_or(rest.len(), |&c| usize::from(c).clamp(1, rest.len()));
        let (chunk, tail) = rest.split_at(n);
        rest = tail;
        let mut pos = 0;
        loop {
            match framer.next(chunk, &mut pos, |_| capture) {
                Ok(None) => break,
                Ok(Some(frame)) => match frame {
                    Frame::Startup { body } => {
                        assert!(body.len() + 4 <= limits.max_startup_len as usize);
                        rebuilt.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
                        rebuilt.extend_from_slice(body);
                    }
                    Frame::EncryptionAnswer(b) => rebuilt.push(b),
                    Frame::Message { tag, body, raw } => {
                        rebuilt.extend_from_slice(&header(tag, body.len() as u32));
                        rebuilt.extend_from_slice(body);
                        if let Some(raw) = raw {
                            assert_eq!(&chunk[raw.clone()][5..], body);
                        }
                    }
                    Frame::Begin { tag, body_len } => {
                        assert!(body_len > capture);
                        rebuilt.extend_from_slice(&header(tag, body_len));
                    }
                    Frame::Part { range, .. } => rebuilt.extend_from_slice(&chunk[range]),
                },
                Err(_) => return,
            }
        }
        assert_eq!(
            pos,
            chunk.len(),
            "the framer consumes every byte it is given"
        );
        consumed += chunk.len();
        // Everything consumed is either handed out or buffered, in order.
        assert_eq!(rebuilt.len() + framer.buffered_len(), consumed);
        assert_eq!(&rebuilt[..], &input.data[..rebuilt.len()]);
        let bound = (capture as usize).max(limits.max_startup_len as usize);
        assert!(framer.buffer_capacity() <= bound.max(8) * 2 + 64);
    }
});
