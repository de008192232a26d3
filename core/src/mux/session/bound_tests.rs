//! Unit tests of what bounds a hostile peer, on a virtual clock: the output a peer that never
//! reads can make the session hold, and the timers that end a connection that says nothing.

use alloc::vec::Vec;
use core::time::Duration;

use bytes::BytesMut;

use super::testing::{events, frame, outputs, NOW};
use super::{CloseReason, Config, Output, Recv, Role, Session, SessionError, FRAME_OUTPUT_MAX};
use crate::mux::wire::{Kind, Metadata, SplitSize};
use crate::time::Instant;

const MAX_QUEUED: usize = 4096;

fn flood_config() -> Config {
    Config {
        max_concurrent_streams: 2,
        max_queued_output: MAX_QUEUED,
        ..Config::mux()
    }
}

/// Invokes for streams `first..first + n`, back to back.
fn invokes(first: u64, n: u64) -> Vec<u8> {
    (first..first + n)
        .flat_map(|stream| frame(Kind::INVOKE, false, stream, 1, b"/flood"))
        .collect()
}

/// Every output, none of it written: the peer reads nothing.
fn unwritten(session: &mut Session) -> Vec<Output> {
    core::iter::from_fn(|| session.poll_output()).collect()
}

fn bytes_of(outputs: &[Output]) -> usize {
    outputs
        .iter()
        .map(|o| match o {
            Output::Transmit(bytes) => bytes.len(),
            _ => 0,
        })
        .sum()
}

#[test]
fn a_peer_that_floods_invokes_and_never_reads_fills_the_output_only_to_the_bound() {
    let mut server = Session::new(Role::Server, flood_config());
    let bound = (MAX_QUEUED + FRAME_OUTPUT_MAX) as u64;
    let mut next = 1;
    let mut fed = 0;
    while server.wants_input() {
        server.handle_input(NOW, &invokes(next, 10)).unwrap();
        next += 10;
        fed += 1;
        let out = unwritten(&mut server);
        assert!(!out.iter().any(|o| matches!(o, Output::Closed(_))));
        assert!(
            server.queued_output() <= bound,
            "{}",
            server.queued_output()
        );
        assert!(fed < 1000, "the session never stopped taking input");
    }
    // Refusals for every stream past the first two, up to the bound and no further.
    let refused = server.metrics().streams_refused;
    assert!(
        refused > 0 && refused < next - 3,
        "{refused} of {}",
        next - 1
    );
    assert!(server.queued_output() >= MAX_QUEUED as u64);
    assert!(server.metrics().peak_queued_output <= bound);

    // Fed anyway: the connection fails with a limit, and holds no more.
    server.handle_input(NOW, &invokes(next, 10)).unwrap();
    let out = unwritten(&mut server);
    let reason = CloseReason::OutputLimit { max: MAX_QUEUED };
    assert!(reason.is_limit());
    assert_eq!(out, [Output::Closed(reason)]);
    assert_eq!(
        server.handle_input(NOW, &invokes(next, 1)),
        Err(SessionError::Closed)
    );
    assert!(server.metrics().peak_queued_output <= bound);
}

#[test]
fn input_held_back_is_handled_once_the_transport_takes_the_output() {
    let mut server = Session::new(Role::Server, flood_config());
    // One chunk past the bound: the session stops partway through it.
    server.handle_input(NOW, &invokes(1, 200)).unwrap();
    let out = unwritten(&mut server);
    assert!(!server.wants_input());
    let refused = server.metrics().streams_refused;
    assert!(refused < 198, "{refused}");

    // The peer reads: what was held back is handled, without any new input.
    let mut written = bytes_of(&out);
    while server.metrics().streams_refused < 198 {
        server.handle_written(written);
        written = bytes_of(&unwritten(&mut server));
        assert!(server.queued_output() <= (MAX_QUEUED + FRAME_OUTPUT_MAX) as u64);
    }
    server.handle_written(written);
    assert!(server.wants_input());
    assert_eq!(server.metrics().streams_refused, 198);
}

#[test]
fn input_from_the_callers_buffer_stays_there_while_the_output_is_full() {
    let mut server = Session::new(Role::Server, flood_config());
    let wire = invokes(1, 200);
    let mut buf = BytesMut::from(&wire[..]);
    server.handle_input_buf(NOW, &mut buf).unwrap();
    let out = unwritten(&mut server);
    assert!(!server.wants_input());
    let left = buf.len();
    assert!(left > 0 && left < wire.len());
    assert_eq!(
        server.metrics().bytes_received,
        (wire.len() - left) as u64,
        "only the bytes taken are counted"
    );

    server.handle_written(bytes_of(&out));
    assert!(server.wants_input());
    // The caller passes the same buffer again, with nothing new in it.
    while !buf.is_empty() {
        server.handle_input_buf(NOW, &mut buf).unwrap();
        let written = bytes_of(&unwritten(&mut server));
        server.handle_written(written);
    }
    assert_eq!(server.metrics().streams_refused, 198);
    assert_eq!(server.metrics().bytes_received, wire.len() as u64);
}

#[test]
fn messages_are_framed_up_to_half_the_bound() {
    let config = Config {
        max_queued_output: 64 << 10,
        split_size: SplitSize::new(4096).unwrap(),
        ..Config::mux()
    };
    let mut client = Session::new(Role::Client, config);
    let stream = client.open_stream(NOW, "/big", &Metadata::new()).unwrap();
    client
        .send(NOW, stream, bytes::Bytes::from(alloc::vec![1u8; 200 << 10]))
        .unwrap();
    let out = unwritten(&mut client);
    let framed = bytes_of(&out);
    // Half the bound, plus at most one frame.
    assert!((32 << 10..(36 << 10) + 100).contains(&framed), "{framed}");
    // Messages alone never stop the reads: a peer that reads slowly is no reason to stop
    // reading it.
    assert!(client.wants_input());
}

fn timed(handshake: Option<u64>, idle: Option<u64>) -> Config {
    Config {
        handshake_timeout: handshake.map(Duration::from_secs),
        idle_timeout: idle.map(Duration::from_secs),
        ..Config::default()
    }
}

#[test]
fn half_a_frame_is_closed_after_the_handshake_timeout() {
    let mut server = Session::new(Role::Server, timed(Some(10), Some(300)));
    // Timers start at the first `now` the session sees.
    assert_eq!(server.poll_timeout(), None);
    server.handle_timeout(Instant::from_secs(1));
    assert_eq!(server.poll_timeout(), Some(Instant::from_secs(11)));
    let invoke = frame(Kind::INVOKE, false, 1, 1, b"/slow");
    server
        .handle_input(Instant::from_secs(5), &invoke[..3])
        .unwrap();
    assert_eq!(events(&mut server), []);
    server.handle_timeout(Instant::from_millis(10_999));
    assert_eq!(events(&mut server), []);
    server.handle_timeout(Instant::from_secs(11));
    let reason = CloseReason::HandshakeTimeout(Duration::from_secs(10));
    assert!(reason.is_limit());
    assert_eq!(outputs(&mut server), [Output::Closed(reason)]);
    assert_eq!(server.poll_timeout(), None);
    assert_eq!(
        server.handle_input(Instant::from_secs(12), &invoke[3..]),
        Err(SessionError::Closed)
    );
}

#[test]
fn a_connection_with_no_stream_is_closed_after_the_idle_timeout() {
    let mut server = Session::new(Role::Server, timed(Some(10), Some(60)));
    server
        .handle_input(
            Instant::from_secs(1),
            &frame(Kind::INVOKE, false, 1, 1, b"/a"),
        )
        .unwrap();
    assert!(matches!(
        events(&mut server)[..],
        [Output::Opened { stream: 1, .. }]
    ));
    // A whole frame ended the handshake, and a stream is open: no timer.
    assert_eq!(server.poll_timeout(), None);
    server.handle_timeout(Instant::from_secs(500));
    assert_eq!(events(&mut server), []);

    // The call ends at 520 s: idle from then on.
    server
        .handle_input(
            Instant::from_secs(520),
            &frame(Kind::CLOSE_SEND, false, 1, 2, b""),
        )
        .unwrap();
    server.close_send(Instant::from_secs(520), 1).unwrap();
    assert_eq!(server.read(1), Ok(Recv::Eof));
    events(&mut server);
    assert_eq!(server.active_streams(), 0);
    assert_eq!(server.poll_timeout(), Some(Instant::from_secs(580)));
    server.handle_timeout(Instant::from_secs(579));
    assert_eq!(events(&mut server), []);
    server.handle_timeout(Instant::from_secs(580));
    assert_eq!(
        outputs(&mut server),
        [Output::Closed(CloseReason::IdleTimeout(
            Duration::from_secs(60)
        ))]
    );
}

#[test]
fn clients_and_timers_set_to_none_arm_nothing() {
    let mut client = Session::new(Role::Client, timed(Some(10), Some(60)));
    client.handle_timeout(NOW);
    assert_eq!(client.poll_timeout(), None);
    client.handle_timeout(Instant::from_secs(3600));
    assert!(!client.is_closed());

    let mut server = Session::new(Role::Server, timed(None, None));
    server.handle_timeout(NOW);
    assert_eq!(server.poll_timeout(), None);
    server.handle_timeout(Instant::from_secs(3600));
    assert!(!server.is_closed());

    // The defaults a server ships: 10 s for the first frame, 5 min with no stream.
    let mut server = Session::new(Role::Server, Config::mux());
    server.handle_timeout(NOW);
    assert_eq!(server.poll_timeout(), Some(Instant::from_secs(10)));
    server
        .handle_input(NOW, &frame(Kind::PING, true, 0, 0, &[1]))
        .unwrap();
    assert_eq!(server.poll_timeout(), Some(Instant::from_secs(300)));
}

#[test]
fn a_mux_call_whose_invoke_never_completes_does_not_keep_the_connection() {
    // The first frame of an Invoke, never the rest: a stream exists but no call does.
    let config = Config {
        idle_timeout: Some(Duration::from_secs(60)),
        ..Config::mux()
    };
    let mut server = Session::new(Role::Server, config);
    let mut half = Vec::new();
    crate::mux::wire::Frame {
        kind: Kind::INVOKE,
        done: false,
        control: false,
        id: crate::mux::wire::Id::new(1, 1),
        data: &b"/half"[..],
    }
    .encode(&mut half)
    .unwrap();
    server.handle_input(Instant::from_secs(1), &half).unwrap();
    assert_eq!(events(&mut server), []);
    assert_eq!(server.poll_timeout(), Some(Instant::from_secs(61)));

    // A real call beside it keeps the connection busy while it lasts, and no longer.
    server
        .handle_input(
            Instant::from_secs(30),
            &frame(Kind::INVOKE, false, 3, 1, b"/a"),
        )
        .unwrap();
    assert!(matches!(
        events(&mut server)[..],
        [Output::Opened { stream: 3, .. }]
    ));
    assert_eq!(server.poll_timeout(), None);
    server.cancel(Instant::from_secs(40), 3).unwrap();
    let _ = outputs(&mut server);
    assert_eq!(server.poll_timeout(), Some(Instant::from_secs(100)));
    server.handle_timeout(Instant::from_secs(100));
    assert_eq!(
        outputs(&mut server),
        [Output::Closed(CloseReason::IdleTimeout(
            Duration::from_secs(60)
        ))]
    );
}
