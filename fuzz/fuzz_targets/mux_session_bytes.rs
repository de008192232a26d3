//! A session in either role and either mode fed arbitrary bytes in arbitrary chunks, with time
//! passing between them: it never panics, stays within its limits, never fails `handle_input`
//! for what the peer sent, reports a broken protocol with one `Closed`, last, and from then on
//! refuses everything with `SessionError::Closed` and hands out nothing more.
//!
//! The first byte picks the role (bit 0), the mode (bit 1: mux) and the microseconds between
//! chunks (the rest); the second the chunk size.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use weir::error::{ErrorKind, Kind};
use weir::mux::session::{Config, Mode, Output, Recv, Role, Session, SessionError};
use weir::mux::wire::Metadata;
use weir::time::Instant;

const NOW: Instant = Instant::ZERO;
const MAX_STREAMS: usize = 2;

fuzz_target!(|data: &[u8]| {
    let [mode, chunk, input @ ..] = data else {
        return;
    };
    let role = if mode & 1 == 0 {
        Role::Client
    } else {
        Role::Server
    };
    let mux = mode & 2 != 0;
    let step = u64::from(mode >> 2);
    let config = Config {
        max_packet_len: 256,
        max_unread_per_stream: 512,
        max_metadata_len: 64,
        max_concurrent_streams: MAX_STREAMS,
        ..if mux {
            Config {
                initial_stream_window: 128,
                max_stream_window: 512,
                max_buffered_per_connection: 1024,
                initial_connection_window: 512,
                max_connection_window: 2048,
                min_connection_window: 256,
                ..Config::mux()
            }
        } else {
            Config::default()
        }
    };
    assert_eq!(config.mode == Mode::Mux, mux);
    let mut session = Session::new(role, config);
    if role == Role::Client {
        let stream = session.open_stream(NOW, "/fuzz", &Metadata::new()).unwrap();
        session
            .send(NOW, stream, Bytes::from_static(b"request"))
            .unwrap();
    }
    let mut closed = false;
    for (i, piece) in input.chunks(usize::from(chunk % 16) + 1).enumerate() {
        let now = Instant::from_micros(i as u64 * step);
        let result = session.handle_input(now, piece);
        if closed {
            assert_eq!(result, Err(SessionError::Closed));
            assert_eq!(result.unwrap_err().kind(), ErrorKind::Closed);
            assert_eq!(
                session.send(now, 1, Bytes::from_static(b"late")),
                Err(SessionError::Closed)
            );
            assert_eq!(session.read(1), Err(SessionError::Closed));
            assert_eq!(session.poll_output(), None, "output after Closed");
            continue;
        }
        assert_eq!(result, Ok(()), "handle_input failed for what the peer sent");
        while let Some(output) = session.poll_output() {
            assert!(!closed, "output after Closed: {output:?}");
            match output {
                // Answer every call, so the output paths run too.
                Output::Opened { stream, .. } => {
                    let _ = session.send(now, stream, Bytes::from_static(b"reply"));
                    let _ = session.close_send(now, stream);
                }
                Output::Readable(stream) => {
                    while let Ok(Recv::Message(_)) = session.read(stream) {}
                }
                Output::Closed(_) => {
                    closed = true;
                    assert!(session.is_closed());
                }
                _ => {}
            }
        }
        if closed {
            continue;
        }
        // Open streams and ended ones not read to the end, each up to the limit (in compat
        // mode the replaced streams hold no messages).
        assert!(session.active_streams() <= 2 * MAX_STREAMS);
        if mux {
            let window = session.connection_credit().receive_window;
            assert!(window <= config.max_connection_window);
        }
    }
});
