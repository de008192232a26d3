//! Unit tests of mux mode: fairness, credit and its wire bytes, and the limits.

use alloc::vec;
use alloc::vec::Vec;

use bytes::Bytes;

use super::testing::{drain, events, frame, outputs, NOW};
use super::{CloseReason, Config, Output, Recv, Role, Session, SessionError};
use crate::mux::wire::{parse_frame, put_varint, Kind, Metadata, SplitSize, WireError};

fn config() -> Config {
    Config {
        split_size: SplitSize::new(1024).unwrap(),
        initial_stream_window: 4096,
        max_stream_window: 4096,
        initial_connection_window: 1 << 20,
        ..Config::mux()
    }
}

fn window_update(stream: u64, credit: u64) -> Vec<u8> {
    let mut data = Vec::new();
    put_varint(&mut data, credit);
    frame(Kind::WINDOW_UPDATE, true, stream, 0, &data)
}

/// (kind, stream, message, data length, done) of every frame in `wire`.
fn frames(wire: &[u8]) -> Vec<(Kind, u64, u64, usize, bool)> {
    let mut rest = wire;
    let mut out = Vec::new();
    while let Some((f, used)) = parse_frame(rest).unwrap() {
        out.push((f.kind, f.id.stream, f.id.message, f.data.len(), f.done));
        rest = &rest[used..];
    }
    assert!(rest.is_empty());
    out
}

#[test]
fn a_small_message_waits_behind_at_most_one_frame_of_a_large_one() {
    let config = Config {
        initial_stream_window: 8 << 20,
        max_stream_window: 8 << 20,
        initial_connection_window: 8 << 20,
        max_transmit: 16 << 20,
        ..config()
    };
    let mut client = Session::new(Role::Client, config);
    let big = client.open_stream(NOW, "/big", &Metadata::new()).unwrap();
    let small = client.open_stream(NOW, "/small", &Metadata::new()).unwrap();
    client
        .send(NOW, big, Bytes::from(vec![1u8; 4 << 20]))
        .unwrap();
    client
        .send(NOW, small, Bytes::from(vec![2u8; 100]))
        .unwrap();
    let sent = frames(&drain(&mut client));
    let messages: Vec<_> = sent.iter().filter(|f| f.0 == Kind::MESSAGE).collect();
    let small_at = messages.iter().position(|f| f.1 == small).unwrap();
    assert!(
        small_at <= 1,
        "the small message came after {small_at} frames"
    );
    assert_eq!(messages.len(), (4 << 20) / 1024 + 1);
}

#[test]
fn reading_returns_credit_in_a_window_update() {
    let mut server = Session::new(Role::Server, config());
    server
        .handle_input(NOW, &frame(Kind::INVOKE, false, 1, 1, b"/a"))
        .unwrap();
    server
        .handle_input(NOW, &frame(Kind::MESSAGE, false, 1, 2, &[7; 2048]))
        .unwrap();
    // Half the stream window is held unread: no credit yet (the connection's went back on
    // arrival only once half of its own window had come in).
    assert_eq!(
        outputs(&mut server),
        [
            Output::Opened {
                stream: 1,
                rpc: Bytes::from_static(b"/a"),
                metadata: Metadata::new()
            },
            Output::Readable(1)
        ]
    );
    assert!(matches!(server.read(1), Ok(Recv::Message(m)) if m.len() == 2048));
    assert_eq!(
        outputs(&mut server),
        [Output::Transmit(window_update(1, 2048).into())]
    );
}

#[test]
fn sending_stops_at_the_peers_credit_and_resumes_on_a_window_update() {
    let mut client = Session::new(Role::Client, config());
    let stream = client.open_stream(NOW, "/a", &Metadata::new()).unwrap();
    client
        .send(NOW, stream, Bytes::from(vec![3u8; 6000]))
        .unwrap();
    let first = frames(&drain(&mut client));
    let sent: usize = first
        .iter()
        .filter(|f| f.0 == Kind::MESSAGE)
        .map(|f| f.3)
        .sum();
    assert_eq!(sent, 4096, "exactly the initial stream window");
    assert!(!first.last().unwrap().4, "the message is not done yet");
    client
        .handle_input(NOW, &window_update(stream, 1000))
        .unwrap();
    let second = frames(&drain(&mut client));
    assert_eq!(second, [(Kind::MESSAGE, stream, 2, 1000, false)]);
    client
        .handle_input(NOW, &window_update(stream, 5000))
        .unwrap();
    let third = frames(&drain(&mut client));
    assert_eq!(third, [(Kind::MESSAGE, stream, 2, 904, true)]);
}

#[test]
fn data_past_the_granted_credit_fails_the_connection() {
    let mut server = Session::new(Role::Server, config());
    server
        .handle_input(NOW, &frame(Kind::INVOKE, false, 1, 1, b"/a"))
        .unwrap();
    events(&mut server);
    let too_much = frame(Kind::MESSAGE, false, 1, 2, &[0; 4097]);
    server.handle_input(NOW, &too_much).unwrap();
    assert_eq!(
        outputs(&mut server),
        [Output::Closed(CloseReason::FlowControl(1))]
    );
}

#[test]
fn a_full_send_queue_refuses_then_reports_writable() {
    let config = Config {
        send_buffer_per_stream: 2000,
        ..config()
    };
    let mut client = Session::new(Role::Client, config);
    let stream = client.open_stream(NOW, "/a", &Metadata::new()).unwrap();
    client
        .send(NOW, stream, Bytes::from(vec![0u8; 1500]))
        .unwrap();
    let refused = client.send(NOW, stream, Bytes::from(vec![0u8; 1000]));
    assert_eq!(refused, Err(SessionError::SendBufferFull(stream)));
    // The Writable report follows the bytes that made room.
    let out = outputs(&mut client);
    assert!(matches!(out[..], [.., Output::Transmit(_), Output::Writable(s)] if s == stream));
    assert_eq!(events(&mut client), []);
    client
        .send(NOW, stream, Bytes::from(vec![0u8; 1000]))
        .unwrap();
}

#[test]
fn a_cancel_or_close_before_the_invoke_leaves_nothing_behind() {
    let mut server = Session::new(Role::Server, config());
    server
        .handle_input(NOW, &frame(Kind::CANCEL, true, 5, 1, b""))
        .unwrap();
    server
        .handle_input(NOW, &frame(Kind::CLOSE, false, 6, 1, b""))
        .unwrap();
    assert_eq!(server.active_streams(), 0);
    assert_eq!(server.poll_output(), None);
}

#[test]
fn a_replay_on_any_stream_fails_the_connection_while_streams_interleave() {
    let mut server = Session::new(Role::Server, config());
    for stream in [1, 2] {
        server
            .handle_input(NOW, &frame(Kind::INVOKE, false, stream, 1, b"/a"))
            .unwrap();
    }
    // Stream 1 goes on after stream 2 started: fine under mux rules.
    server
        .handle_input(NOW, &frame(Kind::MESSAGE, false, 1, 2, b"x"))
        .unwrap();
    events(&mut server);
    server
        .handle_input(NOW, &frame(Kind::MESSAGE, false, 2, 1, b"y"))
        .unwrap();
    assert!(matches!(
        outputs(&mut server)[..],
        [Output::Closed(CloseReason::Wire(
            WireError::IdMonotonicity { .. }
        ))]
    ));
}

#[test]
fn a_malformed_window_update_fails_the_connection() {
    let mut client = Session::new(Role::Client, config());
    client.open_stream(NOW, "/a", &Metadata::new()).unwrap();
    let bad = frame(Kind::WINDOW_UPDATE, true, 1, 0, &[0x80]);
    client.handle_input(NOW, &bad).unwrap();
    // The Invoke not yet handed out is dropped with the connection.
    assert_eq!(
        outputs(&mut client),
        [Output::Closed(CloseReason::BadWindowUpdate(1))]
    );
    assert_eq!(
        client.open_stream(NOW, "/b", &Metadata::new()),
        Err(SessionError::Closed)
    );
}

#[test]
fn a_window_grows_when_the_reader_keeps_up() {
    let config = Config {
        initial_stream_window: 4096,
        max_stream_window: 16384,
        ..config()
    };
    let mut server = Session::new(Role::Server, config);
    server
        .handle_input(NOW, &frame(Kind::INVOKE, false, 1, 1, b"/a"))
        .unwrap();
    let (mut read, mut granted) = (0u64, 0u64);
    for message in 2..10 {
        server
            .handle_input(NOW, &frame(Kind::MESSAGE, false, 1, message, &[1; 2048]))
            .unwrap();
        read += 2048;
        assert!(matches!(server.read(1), Ok(Recv::Message(_))));
        let out = drain(&mut server);
        let mut rest = &out[..];
        while let Some((f, used)) = parse_frame(rest).unwrap() {
            if f.kind == Kind::WINDOW_UPDATE && f.id.stream == 1 {
                granted += crate::mux::wire::read_varint(f.data).unwrap().unwrap().0;
            }
            rest = &rest[used..];
        }
    }
    // Read as fast as it arrived (no time passed): every full window read doubled the window
    // up to its maximum, so the peer was granted more than it used.
    assert_eq!(read, 16384);
    assert!(granted > read, "granted {granted} for {read} read");
    assert!(granted <= read + 16384 - 4096, "grew past the maximum");
}

/// Large message data goes out uncopied, in `Transmit`s of its own between the buffers of
/// headers and small frames; with `max_unwritten`, the session frames no more until the caller
/// confirms the bytes written, so each round stays near the bound.
#[test]
fn large_data_is_transmitted_uncopied_and_unwritten_bytes_are_bounded() {
    let config = Config {
        split_size: SplitSize::new(8192).unwrap(),
        max_transmit: 20_000,
        max_unwritten: Some(20_000),
        initial_stream_window: 1 << 20,
        max_stream_window: 1 << 20,
        ..config()
    };
    let message = Bytes::from((0..30_000u32).map(|i| i as u8).collect::<Vec<u8>>());
    let mut session = Session::new(Role::Client, config);
    let big = session.open_stream(NOW, "/big", &Metadata::new()).unwrap();
    let small = session
        .open_stream(NOW, "/small", &Metadata::new())
        .unwrap();
    session.send(NOW, big, message.clone()).unwrap();
    session.send(NOW, small, Bytes::from_static(b"hi")).unwrap();
    session.close_send(NOW, small).unwrap();
    let mut chunks = Vec::new();
    let mut rounds = 0;
    loop {
        // Written only once the round is over.
        let round: Vec<Bytes> = core::iter::from_fn(|| session.poll_output())
            .filter_map(|o| match o {
                Output::Transmit(bytes) => Some(bytes),
                _ => None,
            })
            .collect();
        let n: usize = round.iter().map(Bytes::len).sum();
        if n == 0 {
            break;
        }
        // One round stays near `max_unwritten`: at most one frame past it.
        assert!(n < 20_000 + 8192 + 64, "round of {n} bytes");
        session.handle_written(n);
        chunks.extend(round);
        rounds += 1;
    }
    assert!(rounds > 1);
    let got: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
    let sent = frames(&got);
    let big_data: usize = sent
        .iter()
        .filter(|f| f.0 == Kind::MESSAGE && f.1 == big)
        .map(|f| f.3)
        .sum();
    assert_eq!(big_data, message.len());
    assert!(sent.contains(&(Kind::MESSAGE, small, 2, 2, true)));
    assert!(sent.contains(&(Kind::CLOSE_SEND, small, 3, 0, true)));
    let range = message.as_ptr() as usize..message.as_ptr() as usize + message.len();
    let shared: usize = chunks
        .iter()
        .filter(|c| range.contains(&(c.as_ptr() as usize)))
        .map(Bytes::len)
        .sum();
    assert_eq!(shared, message.len(), "every 8 KiB frame's data is shared");
}

/// `handle_input_buf` takes whole frames off the caller's buffer and leaves the start of an
/// unfinished one there; the result is the same as `handle_input` in any chunking, mixed too.
#[test]
fn input_from_the_callers_buffer_leaves_only_an_unfinished_frame() {
    let config = Config {
        split_size: SplitSize::new(1024).unwrap(),
        ..config()
    };
    let mut client = Session::new(Role::Client, config);
    let stream = client.open_stream(NOW, "/x", &Metadata::new()).unwrap();
    let message = Bytes::from((0..3000u32).map(|i| i as u8).collect::<Vec<u8>>());
    client.send(NOW, stream, message.clone()).unwrap();
    client.close_send(NOW, stream).unwrap();
    let wire = drain(&mut client);
    for step in [1, 7, 1000, 1029, wire.len()] {
        let mut server = Session::new(Role::Server, config);
        let mut buf = bytes::BytesMut::new();
        for (i, piece) in wire.chunks(step).enumerate() {
            if i % 3 == 2 {
                // Mixed in: bytes through the copying entry point, after what `buf` holds.
                let held = buf.split();
                server.handle_input(NOW, &held).unwrap();
                server.handle_input(NOW, piece).unwrap();
                continue;
            }
            buf.extend_from_slice(piece);
            server.handle_input_buf(NOW, &mut buf).unwrap();
            assert!(buf.len() < 1024 + 16, "only an unfinished frame is left");
        }
        assert!(buf.is_empty());
        events(&mut server);
        assert_eq!(server.read(stream).unwrap(), Recv::Message(message.clone()));
        assert_eq!(server.read(stream).unwrap(), Recv::Eof);
    }
}

/// Control frames of `kind` on stream 0 in `wire`, with their varint values.
fn control_values(wire: &[u8], kind: Kind) -> Vec<u64> {
    let mut rest = wire;
    let mut out = Vec::new();
    while let Some((f, used)) = parse_frame(rest).unwrap() {
        if f.kind == kind {
            assert!(f.control && f.id.stream == 0 && f.id.message == 0);
            out.push(crate::mux::wire::read_varint(f.data).unwrap().unwrap().0);
        }
        rest = &rest[used..];
    }
    out
}

fn control(kind: Kind, stream: u64, value: u64) -> Vec<u8> {
    let mut data = Vec::new();
    put_varint(&mut data, value);
    frame(kind, true, stream, 0, &data)
}

#[test]
fn the_connection_window_is_sized_from_a_timed_round_trip() {
    let config = Config {
        initial_stream_window: 4 << 20,
        max_stream_window: 4 << 20,
        ..config()
    };
    let window = config.initial_connection_window;
    let mut server = Session::new(Role::Server, config);
    server
        .handle_input(NOW, &frame(Kind::INVOKE, false, 1, 1, b"/a"))
        .unwrap();
    // Small data: no ping yet.
    server
        .handle_input(NOW, &frame(Kind::MESSAGE, false, 1, 2, &[1; 1000]))
        .unwrap();
    assert_eq!(control_values(&drain(&mut server), Kind::PING), []);
    // 64 KiB in all: a ping goes out, and only one while it is unanswered.
    for message in 3..6 {
        server
            .handle_input(
                NOW,
                &frame(Kind::MESSAGE, false, 1, message, &[1; 32 << 10]),
            )
            .unwrap();
    }
    let pings = control_values(&drain(&mut server), Kind::PING);
    assert_eq!(pings.len(), 1);
    assert_eq!(server.metrics().pings_sent, 1);
    // The whole window arrives within the 10 ms the pong takes: 100 MB/s over 10 ms, a
    // product of 1 MB and a window of twice that, reached by doubling.
    let later = NOW + core::time::Duration::from_millis(10);
    let mut rest = window - 1000 - (96 << 10);
    let mut message = 6;
    while rest > 0 {
        let n = rest.min(1 << 10);
        let data = vec![1; n as usize];
        server
            .handle_input(later, &frame(Kind::MESSAGE, false, 1, message, &data))
            .unwrap();
        rest -= n;
        message += 1;
    }
    let pong = control(Kind::PONG, 0, pings[0]);
    server.handle_input(later, &pong).unwrap();
    assert_eq!(
        server.min_rtt(),
        Some(core::time::Duration::from_millis(10))
    );
    let round_trips = server.metrics().round_trips;
    assert_eq!(round_trips.count, 1);
    assert_eq!(round_trips.max, 10_000_000);
    assert_eq!(server.connection_credit().receive_window, 2 * window);
    let granted: u64 = control_values(&drain(&mut server), Kind::WINDOW_UPDATE)
        .iter()
        .sum();
    assert!(granted >= window, "granted {granted}");
    // A stale pong changes nothing.
    server.handle_input(later, &pong).unwrap();
    assert_eq!(server.connection_credit().receive_window, 2 * window);
}

#[test]
fn a_ping_is_answered_once_with_its_latest_token() {
    let mut client = Session::new(Role::Client, config());
    let mut wire = control(Kind::PING, 0, 7);
    wire.extend(control(Kind::PING, 0, 8));
    wire.extend(control(Kind::PING, 0, 9));
    client.handle_input(NOW, &wire).unwrap();
    let out = drain(&mut client);
    assert_eq!(control_values(&out, Kind::PONG), [9]);
    assert_eq!(frames(&out).len(), 1);
    assert_eq!(client.poll_output(), None);
}

#[test]
fn a_malformed_ping_or_pong_fails_the_connection() {
    for bad in [
        control(Kind::PING, 1, 7),
        control(Kind::PONG, 3, 7),
        frame(Kind::PING, true, 0, 0, &[]),
        frame(Kind::PONG, true, 0, 0, &[1, 2]),
    ] {
        let mut client = Session::new(Role::Client, config());
        let stream = crate::mux::wire::parse_frame(&bad)
            .unwrap()
            .unwrap()
            .0
            .id
            .stream;
        client.handle_input(NOW, &bad).unwrap();
        assert_eq!(
            outputs(&mut client),
            [Output::Closed(CloseReason::BadPing(stream))]
        );
    }
}

#[test]
fn compat_mode_never_pings() {
    let mut server = Session::new(Role::Server, Config::default());
    server
        .handle_input(NOW, &frame(Kind::INVOKE, false, 1, 1, b"/a"))
        .unwrap();
    server
        .handle_input(NOW, &frame(Kind::MESSAGE, false, 1, 2, &[1; 1 << 20]))
        .unwrap();
    assert_eq!(control_values(&drain(&mut server), Kind::PING), []);
    assert_eq!(server.metrics().pings_sent, 0);
}

#[test]
fn a_short_round_trip_shrinks_the_connection_window_to_its_floor() {
    let config = Config {
        initial_stream_window: 4 << 20,
        max_stream_window: 4 << 20,
        ..config()
    };
    let mut server = Session::new(Role::Server, config);
    server
        .handle_input(NOW, &frame(Kind::INVOKE, false, 1, 1, b"/a"))
        .unwrap();
    let data = vec![1; 64 << 10];
    server
        .handle_input(NOW, &frame(Kind::MESSAGE, false, 1, 2, &data))
        .unwrap();
    let ping = control_values(&drain(&mut server), Kind::PING)[0];
    // 64 KiB in 10 us: a product of 64 KiB, under the floor.
    let later = NOW + core::time::Duration::from_micros(10);
    server
        .handle_input(later, &control(Kind::PONG, 0, ping))
        .unwrap();
    assert_eq!(server.connection_credit().receive_window, 1 << 20);
    // The credit for what arrives next is kept until the window is down to its floor; the
    // peer never had more than it was granted.
    let mut granted = 0;
    for message in 3..20 {
        server
            .handle_input(later, &frame(Kind::MESSAGE, false, 1, message, &data))
            .unwrap();
        granted += control_values(&drain(&mut server), Kind::WINDOW_UPDATE)
            .iter()
            .sum::<u64>();
    }
    let credit = server.connection_credit();
    assert_eq!(credit.receive_window, config.min_connection_window);
    assert_eq!(
        credit.receive_available + credit.receive_unreturned,
        credit.receive_window
    );
    assert!(granted > 0);
}
