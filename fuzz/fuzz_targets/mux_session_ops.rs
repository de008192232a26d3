//! A weir client and a weir server joined back to back, driven by arbitrary call sequences and
//! arbitrary delivery of the bytes in between: whatever the application does, two weir peers
//! never see a protocol error from each other, and every message arrives once, in order.
#![no_main]

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use weir::error::{ErrorKind, Kind};
use weir::mux::session::{Config, Output, Recv, Role, Session, SessionError};
use weir::mux::wire::Metadata;
use weir::time::Instant;

const NOW: Instant = Instant::ZERO;

#[derive(Arbitrary, Debug)]
enum Op {
    Open,
    Send {
        server: bool,
        len: u8,
    },
    CloseSend {
        server: bool,
    },
    Close {
        server: bool,
    },
    Cancel {
        server: bool,
    },
    SendError {
        server: bool,
        code: u8,
    },
    Read {
        server: bool,
    },
    Drop {
        server: bool,
    },
    /// Deliver up to `len` pending bytes (times 16) in one direction.
    Deliver {
        to_server: bool,
        len: u8,
    },
    /// Let `micros` microseconds (times 16) pass: round trips and window sizes depend on it.
    Tick {
        micros: u8,
    },
}

struct Side {
    session: Session,
    /// Bytes written and not yet delivered to the peer.
    in_flight: Vec<u8>,
    /// The stream this side works on.
    stream: Option<u64>,
    /// Per stream: messages sent, and messages read, by this side.
    sent: BTreeMap<u64, Vec<Bytes>>,
    read: BTreeMap<u64, Vec<Bytes>>,
}

impl Side {
    fn new(role: Role, config: Config) -> Side {
        Side {
            session: Session::new(role, config),
            in_flight: Vec::new(),
            stream: None,
            sent: BTreeMap::new(),
            read: BTreeMap::new(),
        }
    }

    fn collect(&mut self) {
        while let Some(output) = self.session.poll_output() {
            match output {
                Output::Transmit(bytes) => {
                    // The transport takes the bytes at once; the link holds them.
                    self.in_flight.extend_from_slice(&bytes);
                    self.session.handle_written(bytes.len());
                }
                Output::Opened { stream, .. } => self.stream = Some(stream),
                Output::Closed(reason) => panic!("a weir peer broke the protocol: {reason}"),
                _ => {}
            }
        }
    }
}

/// A local call may be refused (wrong moment, finished stream) but never as closed.
fn local(result: Result<(), SessionError>) {
    if let Err(e) = result {
        assert_ne!(e.kind(), ErrorKind::Closed, "{e}");
        assert!(
            matches!(
                e,
                SessionError::SendClosed(_)
                    | SessionError::StreamBusy
                    | SessionError::UnknownStream(_)
            ),
            "unexpected error for a local call: {e}"
        );
    }
}

fuzz_target!(|input: (bool, Vec<Op>)| {
    let (mux, ops) = input;
    let config = if mux {
        Config {
            max_concurrent_streams: 3,
            initial_stream_window: 256,
            max_stream_window: 1024,
            initial_connection_window: 512,
            max_connection_window: 2048,
            min_connection_window: 256,
            split_size: weir::mux::wire::SplitSize::new(100).unwrap(),
            ..Config::mux()
        }
    } else {
        Config::default()
    };
    let mut client = Side::new(Role::Client, config);
    let mut server = Side::new(Role::Server, config);
    let mut counter = 0u32;
    let mut now = NOW;
    for op in ops {
        match op {
            Op::Open => match client.session.open_stream(now, "/fuzz", &Metadata::new()) {
                Ok(stream) => client.stream = Some(stream),
                Err(e) => {
                    assert!(matches!(
                        e,
                        SessionError::StreamBusy | SessionError::TooManyStreams(_)
                    ));
                    assert_eq!(e.kind(), ErrorKind::Limit);
                }
            },
            Op::Send { server: s, len } => {
                let side = if s { &mut server } else { &mut client };
                if let Some(stream) = side.stream {
                    counter += 1;
                    let mut message = counter.to_be_bytes().to_vec();
                    message.resize(usize::from(len) + 4, 0xab);
                    let message = Bytes::from(message);
                    match side.session.send(now, stream, message.clone()) {
                        Ok(()) => side.sent.entry(stream).or_default().push(message),
                        Err(e) => local(Err(e)),
                    }
                }
            }
            Op::CloseSend { server: s }
            | Op::Close { server: s }
            | Op::Cancel { server: s }
            | Op::SendError { server: s, .. } => {
                let side = if s { &mut server } else { &mut client };
                if let Some(stream) = side.stream {
                    local(match op {
                        Op::CloseSend { .. } => side.session.close_send(now, stream),
                        Op::Close { .. } => side.session.close(now, stream),
                        Op::Cancel { .. } => side.session.cancel(now, stream),
                        Op::SendError { code, .. } => {
                            side.session
                                .send_error(now, stream, u64::from(code), "fuzz")
                        }
                        _ => unreachable!("matched above"),
                    });
                }
            }
            Op::Read { server: s } => {
                let side = if s { &mut server } else { &mut client };
                if let Some(stream) = side.stream {
                    if let Ok(Recv::Message(m)) = side.session.read(stream) {
                        side.read.entry(stream).or_default().push(m);
                    }
                }
            }
            Op::Drop { server: s } => {
                let side = if s { &mut server } else { &mut client };
                if let Some(stream) = side.stream.take() {
                    side.session.drop_stream(stream);
                }
            }
            Op::Deliver { to_server, len } => {
                let (from, to) = if to_server {
                    (&mut client, &mut server)
                } else {
                    (&mut server, &mut client)
                };
                let n = (usize::from(len) * 16).min(from.in_flight.len());
                let bytes: Vec<u8> = from.in_flight.drain(..n).collect();
                to.session
                    .handle_input(now, &bytes)
                    .expect("the connection closed");
            }
            Op::Tick { micros } => {
                now = now + std::time::Duration::from_micros(u64::from(micros) * 16)
            }
        }
        client.collect();
        server.collect();
    }
    // What each side read is, per stream, an in-order prefix of what the other side sent.
    for (reader, writer) in [(&client, &server), (&server, &client)] {
        for (stream, read) in &reader.read {
            let sent = writer
                .sent
                .get(stream)
                .map(Vec::as_slice)
                .unwrap_or_default();
            assert!(
                sent.starts_with(read),
                "stream {stream}: read is not a prefix of sent"
            );
        }
    }
});
