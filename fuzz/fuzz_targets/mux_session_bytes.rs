//! A session in either role and either mode fed arbitrary bytes in arbitrary chunks, with time
//! passing between them and a transport that takes its output or not: it never panics, stays
//! within its limits, never fails `handle_input` for what the peer sent, reports a broken
//! protocol with one `Closed`, last, and from then on refuses everything with
//! `SessionError::Closed` and hands out nothing more.
//!
//! Input never takes the output the transport has not taken past `max_queued_output` plus
//! `FRAME_OUTPUT_MAX`; input fed while the session does not want it closes the connection with
//! the limit. The timers close a server only once their deadline has passed.
//!
//! The first byte picks the role (bit 0), the mode (bit 1: mux) and the microseconds between
//! chunks (the rest); the second the chunk size (bits 0-3) and how much of its output the
//! transport takes after each chunk (bits 4-5: all, none, half, all but the last batch).
#![no_main]

use std::time::Duration;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use weir::error::{ErrorKind, Kind};
use weir::mux::session::{
    CloseReason, Config, Mode, Output, Recv, Role, Session, SessionError, FRAME_OUTPUT_MAX,
};
use weir::mux::wire::Metadata;
use weir::time::Instant;

const NOW: Instant = Instant::ZERO;
const MAX_STREAMS: usize = 2;
const MAX_QUEUED: usize = 512;

/// Handle every output: answer calls and read messages, as an application would. Returns the
/// sizes of the `Transmit`s handed out, and whether the connection closed (and why).
fn drain(session: &mut Session, now: Instant) -> (Vec<usize>, Option<CloseReason>) {
    let (mut sizes, mut closed) = (Vec::new(), None);
    while let Some(output) = session.poll_output() {
        assert!(closed.is_none(), "output after Closed: {output:?}");
        match output {
            Output::Transmit(bytes) => sizes.push(bytes.len()),
            // Answer every call, so the output paths run too.
            Output::Opened { stream, .. } => {
                let _ = session.send(now, stream, Bytes::from_static(b"reply"));
                let _ = session.close_send(now, stream);
            }
            Output::Readable(stream) => while let Ok(Recv::Message(_)) = session.read(stream) {},
            Output::Closed(reason) => {
                assert!(session.is_closed());
                assert_eq!(session.poll_timeout(), None);
                closed = Some(reason);
            }
            _ => {}
        }
    }
    (sizes, closed)
}

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
    let writes = (chunk >> 4) & 3;
    let config = Config {
        max_packet_len: 256,
        max_unread_per_stream: 512,
        max_metadata_len: 64,
        max_concurrent_streams: MAX_STREAMS,
        max_queued_output: MAX_QUEUED,
        handshake_timeout: Some(Duration::from_micros(500)),
        idle_timeout: Some(Duration::from_micros(1000)),
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
    // As an adapter does: the timers start with the connection.
    session.handle_timeout(NOW);
    if role == Role::Client {
        assert_eq!(session.poll_timeout(), None, "a client arms no timer");
        let stream = session.open_stream(NOW, "/fuzz", &Metadata::new()).unwrap();
        session
            .send(NOW, stream, Bytes::from_static(b"request"))
            .unwrap();
    }
    let mut closed = false;
    // Bytes handed out that the transport has not taken, batch by batch.
    let mut unwritten: Vec<usize> = Vec::new();
    let bound = (MAX_QUEUED + FRAME_OUTPUT_MAX) as u64;
    for (i, piece) in input.chunks(usize::from(chunk % 16) + 1).enumerate() {
        let now = Instant::from_micros(i as u64 * step);
        if closed {
            let result = session.handle_input(now, piece);
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
        if let Some(deadline) = session.poll_timeout() {
            if deadline <= now {
                session.handle_timeout(now);
                let (sizes, reason) = drain(&mut session, now);
                unwritten.extend(sizes);
                if let Some(reason) = reason {
                    assert!(
                        matches!(
                            reason,
                            CloseReason::HandshakeTimeout(_) | CloseReason::IdleTimeout(_)
                        ),
                        "{reason}"
                    );
                    assert_eq!(role, Role::Server);
                    closed = true;
                    continue;
                }
            }
        }
        let wanted = session.wants_input();
        let before = session.queued_output();
        let result = session.handle_input(now, piece);
        assert_eq!(result, Ok(()), "handle_input failed for what the peer sent");
        let after = session.queued_output();
        assert!(
            after <= before.max(bound),
            "input took the output from {before} to {after}"
        );
        let (sizes, reason) = drain(&mut session, now);
        unwritten.extend(sizes);
        if let Some(reason) = reason {
            if !wanted {
                assert_eq!(reason, CloseReason::OutputLimit { max: MAX_QUEUED });
            }
            closed = true;
            continue;
        }
        // The transport takes some of what is handed out; what it takes may let held input in.
        let keep = match writes {
            0 => 0,
            1 => unwritten.len(),
            2 => unwritten.len() / 2,
            _ => unwritten.len().min(1),
        };
        let taken: usize = unwritten.drain(..unwritten.len() - keep).sum();
        if taken > 0 {
            let before = session.queued_output();
            session.handle_written(taken);
            assert!(session.queued_output() <= before.max(bound));
            let (sizes, reason) = drain(&mut session, now);
            unwritten.extend(sizes);
            if let Some(reason) = reason {
                closed = true;
                assert!(!matches!(reason, CloseReason::OutputLimit { .. }));
                continue;
            }
        }
        assert!(session.metrics().peak_queued_output >= session.queued_output());
        // Open streams and ended ones not read to the end, each up to the limit (in compat
        // mode the replaced streams hold no messages).
        assert!(session.active_streams() <= 2 * MAX_STREAMS);
        if mux {
            let window = session.connection_credit().receive_window;
            assert!(window <= config.max_connection_window);
        }
    }
});
