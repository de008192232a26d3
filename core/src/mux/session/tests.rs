//! Unit tests of the session: each misuse, violation and limit, with the wire bytes checked.

use bytes::Bytes;

use super::testing::{events, frame, NOW};
use super::{Config, Event, Recv, Role, Session, SessionError};
use crate::mux::wire::{Kind, Metadata, WireError};

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
    let err = server.handle_input(NOW, &frame(Kind(9), false, 1, 3, b"x"));
    assert_eq!(err, Err(SessionError::UnknownKind(Kind(9))));
    assert_eq!(
        events(&mut server),
        [Event::Failed(SessionError::UnknownKind(Kind(9)))]
    );
    assert_eq!(
        server.handle_input(NOW, b""),
        Err(SessionError::ConnectionClosed)
    );
    assert_eq!(
        server.send(NOW, 1, Bytes::new()),
        Err(SessionError::ConnectionClosed)
    );
}

#[test]
fn a_message_before_any_invoke_fails_the_connection() {
    let mut server = Session::new(Role::Server, Config::default());
    let err = server.handle_input(NOW, &frame(Kind::MESSAGE, false, 1, 1, b"x"));
    assert_eq!(
        err,
        Err(SessionError::UnexpectedPacket {
            kind: Kind::MESSAGE,
            stream: 1
        })
    );
}

#[test]
fn a_client_refuses_an_invoke() {
    let mut client = Session::new(Role::Client, Config::default());
    client.open_stream(NOW, "/a", &Metadata::new()).unwrap();
    let err = client.handle_input(NOW, &frame(Kind::INVOKE, false, 1, 1, b"/b"));
    assert!(matches!(
        err,
        Err(SessionError::UnexpectedPacket {
            kind: Kind::INVOKE,
            ..
        })
    ));
}

#[test]
fn a_replayed_packet_fails_the_connection() {
    let mut server = server_with_call();
    let err = server.handle_input(NOW, &frame(Kind::MESSAGE, false, 1, 1, b"again"));
    assert!(matches!(
        err,
        Err(SessionError::Wire(WireError::IdMonotonicity { .. }))
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
    let err = server.handle_input(NOW, &frame(Kind::MESSAGE, false, 1, 3, b"9"));
    assert_eq!(err, Err(SessionError::UnreadLimit { stream: 1, max: 8 }));
}

#[test]
fn metadata_past_the_limit_fails_the_connection() {
    let config = Config {
        max_metadata_len: 4,
        ..Config::default()
    };
    let mut server = Session::new(Role::Server, config);
    let metadata = frame(Kind::INVOKE_METADATA, false, 1, 1, b"0123456789");
    let err = server.handle_input(NOW, &metadata);
    assert_eq!(err, Err(SessionError::MetadataLimit { len: 10, max: 4 }));
}

#[test]
fn misuse_is_refused_and_changes_nothing() {
    let mut server = Session::new(Role::Server, Config::default());
    assert_eq!(
        server.open_stream(NOW, "/a", &Metadata::new()),
        Err(SessionError::WrongRole)
    );
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
    let before = client.poll_transmit().unwrap();
    assert_eq!(
        client.send(NOW, stream, Bytes::from_static(b"late")),
        Err(SessionError::SendClosed(stream))
    );
    // A second CloseSend is a no-op, as in Go.
    client.close_send(NOW, stream).unwrap();
    assert_eq!(client.poll_transmit(), None);
    assert_eq!(
        before[..],
        [
            frame(Kind::INVOKE, false, 1, 1, b"/a"),
            frame(Kind::CLOSE_SEND, false, 1, 2, b"")
        ]
        .concat()
    );
}

#[test]
fn cancel_is_a_control_frame_and_ends_the_stream() {
    let mut client = Session::new(Role::Client, Config::default());
    let stream = client.open_stream(NOW, "/a", &Metadata::new()).unwrap();
    client.poll_transmit();
    client.cancel(NOW, stream).unwrap();
    // control bit, kind 4, done: 0x89.
    assert_eq!(client.poll_transmit().unwrap()[..], [0x89, 1, 2, 0]);
    assert_eq!(events(&mut client), [Event::Finished { stream }]);
    // The stream is gone: a new one may open, and the old id reads as ended.
    assert_eq!(client.read(stream), Ok(Recv::Eof));
    assert_eq!(client.open_stream(NOW, "/b", &Metadata::new()), Ok(2));
}

#[test]
fn late_packets_for_a_finished_stream_are_dropped() {
    let mut server = server_with_call();
    server.send_error(NOW, 1, 5, "no").unwrap();
    assert_eq!(
        server.poll_transmit().unwrap()[..],
        frame(Kind::ERROR, false, 1, 1, b"\0\0\0\0\0\0\0\x05no")[..]
    );
    assert_eq!(events(&mut server), [Event::Finished { stream: 1 }]);
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
        [
            Event::RemoteClosed { stream: 1 },
            Event::Finished { stream: 1 }
        ]
    );
}

#[test]
fn compat_holds_at_most_the_replaced_stream_and_the_new_one() {
    // Found by fuzzing: an application that never reads let replaced streams pile up.
    let mut server = Session::new(Role::Server, Config::default());
    for stream in 1..=5 {
        server
            .handle_input(NOW, &frame(Kind::INVOKE, false, stream, 1, b"/a"))
            .unwrap();
        assert!(
            server.active_streams() <= 2,
            "{} streams held",
            server.active_streams()
        );
    }
    assert_eq!(server.active_streams(), 2);
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
    let sent = server.poll_transmit().unwrap();
    let message = b"protocol error: too many concurrent streams (limit 2)";
    let body = [&[0u8; 8][..], &message[..]].concat();
    assert_eq!(sent[..], frame(Kind::ERROR, false, 3, 1, &body)[..]);
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
