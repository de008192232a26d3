//! The client handshake under arbitrary bytes in arbitrary pieces at arbitrary times: no panic,
//! only `N` written back, exactly one final output and nothing after it, later input refused as
//! closed, the StartupMessage handed on is the rest of what the client sent, the buffer stays
//! within the startup-packet limit (or one length field, for limits below it), the timer stays
//! at the login deadline until the end and is gone after it, and the login timeout closes the
//! client only once the deadline has passed.
//!
//! Input: one byte giving the piece length (0 means all at once), one the startup-packet limit
//! in hundreds of bytes, one the login timeout in milliseconds, one the milliseconds the clock
//! moves between pieces (as an `i8`: negative steps set the clock back), then the client's
//! bytes.
#![no_main]

use std::time::Duration;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use weir::error::{ErrorKind, Kind};
use weir::time::Instant;
use weir::transfer::frontend::{Frontend, FrontendCloseReason, FrontendConfig, FrontendOutput};

fuzz_target!(|data: &[u8]| {
    let [piece, limit, timeout, step, client @ ..] = data else {
        return;
    };
    let config = FrontendConfig {
        max_startup_len: u32::from(*limit) * 100,
        login_timeout: Duration::from_millis(u64::from(*timeout)),
        ..FrontendConfig::default()
    };
    let max = config.max_startup_len as usize;
    // A length field is read whole before it is checked.
    let bound = max.max(4);
    let piece = if *piece == 0 {
        client.len().max(1)
    } else {
        usize::from(*piece)
    };
    let step = i64::from(*step as i8);
    let start = Instant::from_secs(1);
    let deadline = start + config.login_timeout;
    let mut f = Frontend::new(start, config);
    // The clock as the caller reads it, and as the machine must see it (never going back).
    let mut now = start;
    let mut seen = start;
    let mut fed = Vec::new();
    let mut finals = 0;
    for chunk in client.chunks(piece) {
        assert_eq!(f.poll_timeout(), (finals == 0).then_some(deadline));
        let result = f.handle_input(now, Bytes::copy_from_slice(chunk));
        if finals > 0 {
            assert_eq!(result.map_err(|e| e.kind()), Err(ErrorKind::Closed));
        } else {
            assert!(result.is_ok());
            fed.extend_from_slice(chunk);
        }
        let millis = Duration::from_millis(step.unsigned_abs());
        now = if step < 0 { now - millis } else { now + millis };
        seen = seen.max(now);
        if f.poll_timeout().is_some_and(|at| at <= now) {
            f.handle_timeout(now);
        }
        assert!(f.buffered_len() <= bound, "{} > {bound}", f.buffered_len());
        while let Some(out) = f.poll_output() {
            assert_eq!(finals, 0, "an output after the final one");
            match out {
                FrontendOutput::Transmit(bytes) => assert_eq!(&bytes[..], b"N"),
                FrontendOutput::Startup(bytes) => {
                    finals += 1;
                    assert!(bytes.len() <= fed.len());
                    assert_eq!(&fed[fed.len() - bytes.len()..], &bytes[..]);
                    let len = u32::from_be_bytes(bytes[..4].try_into().unwrap()) as usize;
                    assert!((8..=max).contains(&len) && len <= bytes.len());
                }
                FrontendOutput::Closed(FrontendCloseReason::LoginTimeout) => {
                    finals += 1;
                    assert!(seen >= deadline, "closed at {seen:?} before {deadline:?}");
                }
                FrontendOutput::Cancel(_) | FrontendOutput::Closed(_) => finals += 1,
            }
        }
        assert_eq!(f.is_finished(), finals == 1);
        assert_eq!(f.poll_timeout(), (finals == 0).then_some(deadline));
    }
});
