//! Replays the Go-recorded DRPC conversations through `weir::mux::session::Session` in compat
//! mode, as the client and as the server, and requires the recorded bytes exactly.

use std::collections::BTreeMap;

use bytes::Bytes;
use weir::mux::session::{Config, Event, Recv, Role, Session};
use weir::time::Instant;
use weir_tests::drpc::{frames, hex, metadata_for, transcripts, Step};

const NOW: Instant = Instant::ZERO;

/// A client session fed the server's frames one at a time, only when it waits for them.
struct Client {
    session: Session,
    incoming: std::vec::IntoIter<Vec<u8>>,
    sent: Vec<u8>,
}

impl Client {
    fn flush(&mut self) {
        while let Some(bytes) = self.session.poll_transmit() {
            self.sent.extend_from_slice(&bytes);
        }
    }

    /// Read the stream, feeding frames until something other than `Pending` comes.
    fn recv(&mut self, stream: u64, what: &str) -> Recv {
        loop {
            self.flush();
            match self.session.read(stream).unwrap() {
                Recv::Pending => {
                    let frame = self
                        .incoming
                        .next()
                        .unwrap_or_else(|| panic!("{what}: starved"));
                    self.session.handle_input(NOW, &frame).unwrap();
                }
                other => return other,
            }
        }
    }
}

fn check_recv(got: Recv, step: &Step, what: &str) {
    match (&got, &step.response, &step.error) {
        (Recv::Message(data), Some(want), None) => assert_eq!(*data, want.bytes(), "{what}"),
        (Recv::Eof, None, Some(e)) => assert_eq!(e, "EOF", "{what}"),
        (Recv::Failed(body), None, Some(e)) => {
            assert_eq!(body.message, e.as_bytes(), "{what}");
            let code = step.error_code.as_deref().map_or(0, |c| c.parse().unwrap());
            assert_eq!(body.code, code, "{what}");
        }
        _ => panic!("{what}: got {got:?}"),
    }
}

#[test]
fn compat_client_reproduces_every_transcript() {
    for t in transcripts() {
        let mut client = Client {
            session: Session::new(Role::Client, Config::default()),
            incoming: frames(&hex(&t.server_to_client_hex)).into_iter(),
            sent: Vec::new(),
        };
        let metadata = metadata_for(&t.name);
        let mut stream = 0;
        for (i, step) in t.client_steps.iter().enumerate() {
            let what = format!("{} step {i} {}", t.name, step.op);
            let (op, rpc) = step.op.split_once(' ').unwrap_or((&step.op, ""));
            let s = &mut client.session;
            match op {
                // Go's Conn.Invoke: open, send, close the send side, read one reply, and (in a
                // deferred Close) close the stream unless it already ended.
                "Invoke" => {
                    stream = s
                        .open_stream(NOW, Bytes::copy_from_slice(rpc.as_bytes()), &metadata)
                        .unwrap();
                    s.send(NOW, stream, step.input.as_ref().unwrap().bytes())
                        .unwrap();
                    s.close_send(NOW, stream).unwrap();
                    let got = client.recv(stream, &what);
                    check_recv(got, step, &what);
                    client.session.close(NOW, stream).unwrap();
                }
                "NewStream" => {
                    stream = s
                        .open_stream(NOW, Bytes::copy_from_slice(rpc.as_bytes()), &metadata)
                        .unwrap();
                }
                "MsgSend" => s
                    .send(NOW, stream, step.input.as_ref().unwrap().bytes())
                    .unwrap(),
                "CloseSend" => s.close_send(NOW, stream).unwrap(),
                "Close" => s.close(NOW, stream).unwrap(),
                "MsgRecv" => {
                    let got = client.recv(stream, &what);
                    check_recv(got, step, &what);
                }
                other => panic!("{what}: unknown op {other}"),
            }
            // The caller drains the output after every call, as an adapter does.
            client.flush();
        }
        // Whatever the server sent after the last call (its CloseSend after a unary Close).
        for frame in client.incoming.by_ref() {
            client.session.handle_input(NOW, &frame).unwrap();
        }
        client.flush();
        assert_eq!(
            hex(&t.client_to_server_hex),
            client.sent,
            "{}: client bytes",
            t.name
        );
        assert_eq!(
            client.session.active_streams(),
            0,
            "{}: streams left",
            t.name
        );
    }
}

/// The echo service of the transcripts, written against the session's events.
#[derive(Default)]
struct EchoServer {
    /// Streams and the rpc each one called.
    calls: BTreeMap<u64, String>,
    /// Messages received so far (client stream), messages echoed (bidi).
    received: BTreeMap<u64, Vec<u8>>,
    observed: Vec<String>,
}

impl EchoServer {
    /// Handle every event and run every handler as far as it can go.
    fn run(&mut self, session: &mut Session) {
        while let Some(event) = session.poll_event() {
            if let Event::Opened {
                stream,
                rpc,
                metadata,
            } = event
            {
                let rpc = String::from_utf8(rpc.to_vec()).unwrap();
                let metadata: Vec<String> = metadata
                    .iter()
                    .map(|(k, v)| {
                        format!(
                            "{}:{}",
                            String::from_utf8_lossy(k),
                            String::from_utf8_lossy(v)
                        )
                    })
                    .collect();
                self.observed
                    .push(format!("{rpc} metadata={}", metadata.join(",")));
                self.calls.insert(stream, rpc);
            }
        }
        let calls: Vec<(u64, String)> = self.calls.iter().map(|(s, r)| (*s, r.clone())).collect();
        for (stream, rpc) in calls {
            if self.step(session, stream, &rpc) {
                // The handler returned: it reads no more (Go's server then waits for the client
                // to finish the stream, sending nothing else).
                session.drop_stream(stream);
                self.calls.remove(&stream);
            }
        }
    }

    /// Advance one handler; true when it has returned.
    fn step(&mut self, s: &mut Session, stream: u64, rpc: &str) -> bool {
        // A send on a stream the client already closed fails, as in Go; the handler then returns.
        match rpc {
            "/echo.Echo/Unary" | "/echo.Echo/Fail" | "/echo.Echo/ServerStream" => {
                match s.read(stream).unwrap() {
                    Recv::Pending => false,
                    Recv::Message(input) => {
                        match rpc {
                            "/echo.Echo/Unary" => {
                                let _ = s.send(NOW, stream, input);
                                s.close_send(NOW, stream).unwrap();
                            }
                            "/echo.Echo/Fail" => s.send_error(NOW, stream, 7, "boom").unwrap(),
                            _ => {
                                for _ in 0..input.first().copied().unwrap_or(0) {
                                    let _ = s.send(NOW, stream, input.clone());
                                }
                                s.close_send(NOW, stream).unwrap();
                            }
                        }
                        true
                    }
                    _ => true,
                }
            }
            "/echo.Echo/ClientStream" => loop {
                match s.read(stream).unwrap() {
                    Recv::Pending => return false,
                    Recv::Message(m) => self
                        .received
                        .entry(stream)
                        .or_default()
                        .extend_from_slice(&m),
                    _ => {
                        let all = self.received.remove(&stream).unwrap_or_default();
                        let _ = s.send(NOW, stream, all.into());
                        s.close_send(NOW, stream).unwrap();
                        return true;
                    }
                }
            },
            "/echo.Echo/Bidi" => loop {
                match s.read(stream).unwrap() {
                    Recv::Pending => return false,
                    Recv::Message(m) => {
                        let _ = s.send(NOW, stream, m);
                    }
                    _ => {
                        s.close_send(NOW, stream).unwrap();
                        return true;
                    }
                }
            },
            // drpcmux answers an unknown rpc at once, without reading the request.
            _ => {
                let message = format!("protocol error: unknown rpc: {rpc:?}");
                s.send_error(NOW, stream, 0, message).unwrap();
                true
            }
        }
    }
}

fn drain(session: &mut Session, out: &mut Vec<u8>) {
    while let Some(bytes) = session.poll_transmit() {
        out.extend_from_slice(&bytes);
    }
}

#[test]
fn compat_server_reproduces_every_transcript() {
    for t in transcripts() {
        let mut session = Session::new(Role::Server, Config::default());
        let mut server = EchoServer::default();
        let mut sent = Vec::new();
        // The client's frames arrive one at a time and the handlers run between them, as with
        // Go's synchronous pipe.
        for frame in frames(&hex(&t.client_to_server_hex)) {
            session.handle_input(NOW, &frame).unwrap();
            server.run(&mut session);
            drain(&mut session, &mut sent);
        }
        assert_eq!(
            hex(&t.server_to_client_hex),
            sent,
            "{}: server bytes",
            t.name
        );
        assert!(
            server.calls.is_empty(),
            "{}: handlers still running",
            t.name
        );
        assert_eq!(session.active_streams(), 0, "{}: streams left", t.name);
        if t.name == "b_unary_metadata" {
            assert_eq!(server.observed, ["/echo.Echo/Unary metadata=k:v"]);
        }
    }
}

/// The race the vectors' ordering gate pins down: a unary client's Close may reach the server
/// before the server answered. The server then sends a prefix of the recorded reply (here,
/// nothing) and finishes cleanly.
#[test]
fn compat_server_handles_the_close_arriving_first() {
    for t in transcripts().into_iter().filter(|t| t.ordering_gate) {
        let mut session = Session::new(Role::Server, Config::default());
        let mut server = EchoServer::default();
        session
            .handle_input(NOW, &hex(&t.client_to_server_hex))
            .unwrap();
        server.run(&mut session);
        let mut sent = Vec::new();
        drain(&mut session, &mut sent);
        let recorded = hex(&t.server_to_client_hex);
        assert!(
            recorded.starts_with(&sent),
            "{}: not a prefix of the recording",
            t.name
        );
        let whole_frames: usize = frames(&sent).iter().map(Vec::len).sum();
        assert_eq!(whole_frames, sent.len(), "{}", t.name);
        assert!(
            server.calls.is_empty(),
            "{}: handlers still running",
            t.name
        );
        assert_eq!(session.active_streams(), 0, "{}: streams left", t.name);
    }
}
