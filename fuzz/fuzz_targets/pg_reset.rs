//! The reset of a released server under arbitrary server bytes in arbitrary pieces, an end of
//! stream and time passing: no panic, the queries first, exactly one final output and nothing
//! after it, later input refused as closed, no deadline once finished, and the buffer within
//! one message.
//!
//! Input: one byte giving the piece length (0 means all at once), one of flags (bit 0: the
//! server closes after its bytes; bit 1: the deadline passes after them; bits 2-7: the message
//! limit in KiB, 0 meaning the default), then the server's bytes.
#![no_main]

use core::time::Duration;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use weir::error::{ErrorKind, Kind};
use weir::time::Instant;
use weir::transfer::reset::{Reset, ResetConfig, ResetOutput};

fuzz_target!(|data: &[u8]| {
    let [piece, flags, server @ ..] = data else {
        return;
    };
    let mut config = ResetConfig {
        token_param: "weir.token's".into(),
        ..ResetConfig::default()
    };
    if flags >> 2 != 0 {
        config.max_message_len = usize::from(flags >> 2) << 10;
    }
    let max = config.max_message_len;
    let piece = if *piece == 0 {
        server.len().max(1)
    } else {
        usize::from(*piece)
    };
    let mut now = Instant::from_secs(1);
    let mut r = Reset::new(now, config);
    assert!(matches!(r.poll_output(), Some(ResetOutput::Transmit(_))));
    let mut finished = false;
    let check = |r: &mut Reset, finished: &mut bool| {
        while let Some(out) = r.poll_output() {
            assert!(!*finished, "an output after the final one");
            match out {
                ResetOutput::Transmit(_) => panic!("the queries go out once, first"),
                ResetOutput::Done | ResetOutput::Failed(_) => *finished = true,
            }
        }
        assert_eq!(r.is_finished(), *finished);
        assert_eq!(r.poll_timeout().is_none(), *finished);
        assert!(r.buffered_len() <= max + 1, "{} > {max}", r.buffered_len());
    };
    for chunk in server.chunks(piece) {
        now = now + Duration::from_millis(1);
        let result = r.handle_input(now, Bytes::copy_from_slice(chunk));
        assert_eq!(result.is_err(), finished);
        if let Err(e) = result {
            assert_eq!(e.kind(), ErrorKind::Closed);
        }
        check(&mut r, &mut finished);
    }
    if flags & 2 != 0 {
        r.handle_timeout(now + Duration::from_secs(5));
        check(&mut r, &mut finished);
        assert!(finished);
    }
    if flags & 1 != 0 {
        assert_eq!(r.handle_eof(now).is_err(), finished);
        check(&mut r, &mut finished);
        assert!(finished);
    }
});
