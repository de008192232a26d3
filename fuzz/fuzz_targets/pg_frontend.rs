//! The client handshake under arbitrary bytes in arbitrary pieces: no panic, only `N` written
//! back, exactly one final output and nothing after it, later input refused as closed, the
//! StartupMessage handed on is the rest of what the client sent, and the buffer stays within
//! the startup-packet limit (or one length field, for limits below it).
//!
//! Input: one byte giving the piece length (0 means all at once), one the startup-packet limit
//! in hundreds of bytes, then the client's bytes.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use weir::error::{ErrorKind, Kind};
use weir::transfer::frontend::{Frontend, FrontendConfig, FrontendOutput};

fuzz_target!(|data: &[u8]| {
    let [piece, limit, client @ ..] = data else {
        return;
    };
    let config = FrontendConfig {
        max_startup_len: u32::from(*limit) * 100,
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
    let mut f = Frontend::new(config);
    let mut fed = Vec::new();
    let mut finals = 0;
    for chunk in client.chunks(piece) {
        let result = f.handle_input(Bytes::copy_from_slice(chunk));
        if finals > 0 {
            assert_eq!(result.map_err(|e| e.kind()), Err(ErrorKind::Closed));
            continue;
        }
        assert!(result.is_ok());
        fed.extend_from_slice(chunk);
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
                FrontendOutput::Cancel(_) | FrontendOutput::Closed(_) => finals += 1,
            }
        }
        assert_eq!(f.is_finished(), finals == 1);
    }
});
