//! A session in either role and either mode fed arbitrary bytes in arbitrary chunks: it never
//! panics, stays within its limits, and once failed refuses everything.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use weir::mux::session::{Config, Event, Recv, Role, Session, SessionError};
use weir::mux::wire::Metadata;
use weir::time::Instant;

const NOW: Instant = Instant::ZERO;

fuzz_target!(|data: &[u8]| {
    let [mode, chunk, input @ ..] = data else {
        return;
    };
    let role = if mode & 1 == 0 {
        Role::Client
    } else {
        Role::Server
    };
    let config = Config {
        max_packet_len: 256,
        max_unread_per_stream: 512,
        max_metadata_len: 64,
        ..Config::default()
    };
    let mut session = Session::new(role, config);
    if role == Role::Client {
        let stream = session.open_stream(NOW, "/fuzz", &Metadata::new()).unwrap();
        session
            .send(NOW, stream, Bytes::from_static(b"request"))
            .unwrap();
    }
    let mut failed = false;
    for piece in input.chunks(usize::from(chunk % 16) + 1) {
        let result = session.handle_input(NOW, piece);
        if failed {
            assert_eq!(result, Err(SessionError::ConnectionClosed));
            continue;
        }
        failed = result.is_err();
        while let Some(event) = session.poll_event() {
            match event {
                // Answer every call, so the output paths run too.
                Event::Opened { stream, .. } => {
                    let _ = session.send(NOW, stream, Bytes::from_static(b"reply"));
                    let _ = session.close_send(NOW, stream);
                }
                Event::Readable { stream } => {
                    while let Ok(Recv::Message(_)) = session.read(stream) {}
                }
                Event::Failed(_) => assert!(failed, "a failure event without a failed call"),
                _ => {}
            }
        }
        while session.poll_transmit().is_some() {}
        assert!(
            session.active_streams() <= 2,
            "compat holds one stream and one it replaced"
        );
    }
});
