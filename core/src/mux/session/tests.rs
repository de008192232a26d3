//! Unit tests of the session: each misuse, violation and limit, with the wire bytes checked.

use bytes::Bytes;

use super::testing::{events, frame, outputs, NOW};
use super::{CloseReason, Config, Output, Recv, Role, Session, SessionError};
use crate::error::{ErrorKind, Kind as _};
use crate::mux::wire::{Frame, Id, Kind, Metadata, WireError};

fn server_with_call() -> Session {
    let mut server = Session::new(Role::Server, Config::default());
    server
        .handle_input(NOW, &frame(Kind::INVOKE, false, 1, 1, b"/a"))
        .unwrap();
    events(&mut server);
    server
}

#[test]
fn an_unknown_kind_is_ignored_with_the_control_bit_and_fatal_without() {
    let mut server = server_with_call();
    server
        .handle_input(NOW, &frame(Kind(9), true, 1, 2, b"x"))
        .unwrap();
    assert_eq!(events(&mut server), []);
    server
        .handle_input(NOW, &frame(Kind(9), false, 1, 3, b"x"))
        .unwrap();
    assert_eq!(
        outputs(&mut server),
        [Output::Closed(CloseReason::UnknownKind(Kind(9)))]
    );
    assert_eq!(server.handle_input(NOW, b""), Err(SessionError::Closed));
    assert_eq!(server.send(NOW, 1, Bytes::new()), Err(SessionError::Closed));
    assert_eq!(server.read(1), Err(SessionError::Closed));
    assert_eq!(server.close(NOW, 1), Err(SessionError::Closed));
    assert_eq!(server.poll_output(), None);
}

#[test]
fn a_message_before_any_invoke_fails_the_connection() {
    let mut server = Session::new(Role::Server, Config::default());
    server
        .handle_input(NOW, &frame(Kind::MESSAGE, false, 1, 1, b"x"))
        .unwrap();
    let err = outputs(&mut server);
    assert_eq!(
        err,
        [Output::Closed(CloseReason::UnexpectedPacket {
            kind: Kind::MESSAGE,
            stream: 1
        })]
    );
}

#[test]
fn a_client_refuses_an_invoke() {
    let mut client = Session::new(Role::Client, Config::default());
    client.open_stream(NOW, "/a", &Metadata::new()).unwrap();
    client
        .handle_input(NOW, &frame(Kind::INVOKE, false, 1, 1, b"/b"))
        .unwrap();
    let err = outputs(&mut client);
    assert!(matches!(
        err[..],
        [Output::Closed(CloseReason::UnexpectedPacket {
            kind: Kind::INVOKE,
            ..
        })]
    ));
}

#[test]
fn a_replayed_packet_fails_the_connection() {
    let mut server = server_with_call();
    server
        .handle_input(NOW, &frame(Kind::MESSAGE, false, 1, 1, b"again"))
        .unwrap();
    let err = outputs(&mut server);
    assert!(matches!(
        err[..],
        [Output::Closed(CloseReason::Wire(
            WireError::IdMonotonicity { .. }
        ))]
    ));
}

#[test]
fn unread_data_past_the_limit_fails_the_connection() {
    let config = Config {
        max_unread_per_stream: 8,
        ..Config::default()
    };
    let mut server = Session::new(Role::Server, config);
    server
        .handle_input(NOW, &frame(Kind::INVOKE, false, 1, 1, b"/a"))
        .unwrap();
    server
        .handle_input(NOW, &frame(Kind::MESSAGE, false, 1, 2, b"12345678"))
        .unwrap();
    server
        .handle_input(NOW, &frame(Kind::MESSAGE, false, 1, 3, b"9"))
        .unwrap();
    let err = outputs(&mut server);
    assert_eq!(
        err,
        [
            Output::Opened {
                stream: 1,
                rpc: Bytes::from_static(b"/a"),
                metadata: Metadata::new()
            },
            Output::Readable(1),
            Output::Closed(CloseReason::UnreadLimit { stream: 1, max: 8 })
        ]
    );
}

#[test]
fn metadata_past_the_limit_fails_the_connection() {
    let config = Config {
        max_metadata_len: 4,
        ..Config::default()
    };
    let mut server = Session::new(Role::Server, config);
    let metadata = frame(Kind::INVOKE_METADATA, false, 1, 1, b"0123456789");
    server.handle_input(NOW, &metadata).unwrap();
    let err = outputs(&mut server);
    assert_eq!(
        err,
        [Output::Closed(CloseReason::MetadataLimit {
            len: 10,
            max: 4
        })]
    );
}

#[test]
fn misuse_is_refused_and_changes_nothing() {
    let mut server = Session::new(Role::Server, Config::default());
    assert_eq!(
        server.open_stream(NOW, "/a", &Metadata::new()),
        Err(SessionError::WrongRole)
    );
    assert_eq!(SessionError::WrongRole.kind(), ErrorKind::Usage);
    assert_eq!(SessionError::StreamBusy.kind(), ErrorKind::Limit);
    assert_eq!(SessionError::Closed.kind(), ErrorKind::Closed);
    let mut client = Session::new(Role::Client, Config::default());
    assert_eq!(
        client.send(NOW, 1, Bytes::new()),
        Err(SessionError::UnknownStream(1))
    );
    let stream = client.open_stream(NOW, "/a", &Metadata::new()).unwrap();
    assert_eq!(
        client.open_stream(NOW, "/b", &Metadata::new()),
        Err(SessionError::StreamBusy)
    );
    client.close_send(NOW, stream).unwrap();
    let before = outputs(&mut client);
    assert_eq!(
        client.send(NOW, stream, Bytes::from_static(b"late")),
        Err(SessionError::SendClosed(stream))
    );
    // A second CloseSend is a no-op, as in Go.
    client.close_send(NOW, stream).unwrap();
    assert_eq!(client.poll_output(), None);
    assert_eq!(
        before,
        [Output::Transmit(
            [
                frame(Kind::INVOKE, false, 1, 1, b"/a"),
                frame(Kind::CLOSE_SEND, false, 1, 2, b"")
            ]
            .concat()
            .into()
        )]
    );
}

#[test]
fn cancel_is_a_control_frame_and_ends_the_stream() {
    let mut client = Session::new(Role::Client, Config::default());
    let stream = client.open_stream(NOW, "/a", &Metadata::new()).unwrap();
    outputs(&mut client);
    client.cancel(NOW, stream).unwrap();
    // control bit, kind 4, done: 0x89. The stream is over at once: reports come first.
    assert_eq!(
        outputs(&mut client),
        [
            Output::Finished(stream),
            Output::Transmit(Bytes::from_static(&[0x89, 1, 2, 0]))
        ]
    );
    // The stream is gone: a new one may open, and the old id reads as ended.
    assert_eq!(client.read(stream), Ok(Recv::Eof));
    assert_eq!(client.open_stream(NOW, "/b", &Metadata::new()), Ok(2));
}

#[test]
fn late_packets_for_a_finished_stream_are_dropped() {
    let mut server = server_with_call();
    server.send_error(NOW, 1, 5, "no").unwrap();
    // The Error frame is framed in turn; the stream finishes after it.
    assert_eq!(
        outputs(&mut server),
        [
            Output::Transmit(frame(Kind::ERROR, false, 1, 1, b"\0\0\0\0\0\0\0\x05no").into()),
            Output::Finished(1)
        ]
    );
    server
        .handle_input(NOW, &frame(Kind::MESSAGE, false, 1, 2, b"ignored"))
        .unwrap();
    server
        .handle_input(NOW, &frame(Kind::CLOSE_SEND, false, 1, 3, b""))
        .unwrap();
    assert_eq!(events(&mut server), []);
    assert_eq!(server.active_streams(), 0);
}

#[test]
fn a_dropped_stream_discards_messages_and_finishes_when_it_ends() {
    let mut server = server_with_call();
    server.drop_stream(1);
    server
        .handle_input(NOW, &frame(Kind::MESSAGE, false, 1, 2, b"unread"))
        .unwrap();
    assert_eq!(events(&mut server), []);
    server
        .handle_input(NOW, &frame(Kind::CLOSE, false, 1, 3, b""))
        .unwrap();
    assert_eq!(
        events(&mut server),
        [Output::RemoteClosed(1), Output::Finished(1)]
    );
}

#[test]
fn compat_replaced_streams_hold_no_messages_and_are_bounded() {
    // Found by fuzzing: an application that never reads let replaced streams pile up.
    let config = Config {
        max_concurrent_streams: 2,
        ..Config::default()
    };
    let mut server = Session::new(Role::Server, config);
    for stream in 1..=10 {
        for (kind, message, data) in [
            (Kind::INVOKE, 1, &b"/a"[..]),
            (Kind::MESSAGE, 2, &[7u8; 1000][..]),
        ] {
            server
                .handle_input(NOW, &frame(kind, false, stream, message, data))
                .unwrap();
        }
        assert!(server.active_streams() <= 4, "{stream}");
        assert!(server.buffered_bytes() <= 1000, "{stream}");
    }
    // Past twice the limit a new call is refused with an error on its own stream.
    let refused = outputs(&mut server).into_iter().any(|o| {
        matches!(o, Output::Transmit(bytes)
            if bytes.windows(b"too many concurrent streams".len())
                .any(|w| w == b"too many concurrent streams"))
    });
    assert!(refused);
}

#[test]
fn compat_a_cancel_and_the_next_call_in_one_read_still_read_as_canceled() {
    let mut server = Session::new(Role::Server, Config::default());
    server
        .handle_input(NOW, &frame(Kind::INVOKE, false, 1, 1, b"/hold"))
        .unwrap();
    let mut input = frame(Kind::CANCEL, false, 1, 2, b"");
    input.extend(frame(Kind::INVOKE, false, 2, 1, b"/next"));
    server.handle_input(NOW, &input).unwrap();
    assert_eq!(server.read(1), Ok(Recv::Canceled));
    assert_eq!(server.read(2), Ok(Recv::Pending));
}

#[test]
fn a_mux_server_refuses_streams_past_the_limit_with_an_error() {
    let config = Config {
        max_concurrent_streams: 2,
        ..Config::mux()
    };
    let mut server = Session::new(Role::Server, config);
    for stream in 1..=3 {
        server
            .handle_input(NOW, &frame(Kind::INVOKE, false, stream, 1, b"/a"))
            .unwrap();
    }
    let message = b"protocol error: too many concurrent streams (limit 2)";
    let body = [&[0u8; 8][..], &message[..]].concat();
    assert_eq!(
        outputs(&mut server),
        [
            Output::Opened {
                stream: 1,
                rpc: Bytes::from_static(b"/a"),
                metadata: Metadata::new()
            },
            Output::Opened {
                stream: 2,
                rpc: Bytes::from_static(b"/a"),
                metadata: Metadata::new()
            },
            Output::Transmit(frame(Kind::ERROR, false, 3, 1, &body).into())
        ]
    );
    assert_eq!(server.active_streams(), 2);
    assert_eq!(server.metrics().streams_refused, 1);
    // The refused stream's later frames are dropped, and leave nothing behind.
    server
        .handle_input(NOW, &frame(Kind::MESSAGE, false, 3, 2, b"late"))
        .unwrap();
    assert_eq!(server.active_streams(), 2);
}

#[test]
fn a_mux_session_assembles_on_every_stream_it_may_hold() {
    // Found by fuzzing: the assembler tracked fewer streams than a session may hold (open ones
    // plus ended ones not yet read), and failed the connection on a legal frame.
    let config = Config {
        max_concurrent_streams: 2,
        ..Config::mux()
    };
    let mut server = Session::new(Role::Server, config);
    for stream in 1..=4 {
        let invoke = frame(Kind::INVOKE, false, stream, 1, b"/a");
        server.handle_input(NOW, &invoke).unwrap();
        // The first two end at once (the peer closes them) but stay held, unread.
        if stream <= 2 {
            let message = frame(Kind::MESSAGE, false, stream, 2, b"unread");
            server.handle_input(NOW, &message).unwrap();
            let close = frame(Kind::CLOSE, false, stream, 3, b"");
            server.handle_input(NOW, &close).unwrap();
        }
    }
    assert_eq!(server.active_streams(), 4);
    for stream in 3..=4 {
        let message = frame(Kind::MESSAGE, false, stream, 2, b"more");
        server.handle_input(NOW, &message).unwrap();
    }
    assert_eq!(
        server.read(1),
        Ok(Recv::Message(Bytes::from_static(b"unread")))
    );
}

#[test]
fn held_input_bytes_counts_unfinished_packets_in_both_modes() {
    for config in [Config::default(), Config::mux()] {
        let mut server = Session::new(Role::Server, config);
        server
            .handle_input(NOW, &frame(Kind::INVOKE, false, 1, 1, b"/a"))
            .unwrap();
        events(&mut server);
        let mut unfinished = alloc::vec::Vec::new();
        Frame {
            kind: Kind::MESSAGE,
            done: false,
            control: false,
            id: Id::new(1, 2),
            data: &[7u8; 1000][..],
        }
        .encode(&mut unfinished)
        .unwrap();
        server.handle_input(NOW, &unfinished).unwrap();
        assert_eq!(server.held_input_bytes(), 1000, "{:?}", config.mode);
        server
            .handle_input(NOW, &frame(Kind::MESSAGE, false, 1, 2, b"end"))
            .unwrap();
        events(&mut server);
        assert_eq!(server.held_input_bytes(), 1003, "{:?}", config.mode);
        assert!(matches!(server.read(1), Ok(Recv::Message(_))));
        assert_eq!(server.held_input_bytes(), 0, "{:?}", config.mode);
    }
}
