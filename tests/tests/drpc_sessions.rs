//! Replays the Go-recorded DRPC conversations through `weir::mux::session::Session` in compat
//! mode, as the client and as the server, and requires the recorded bytes exactly.

use std::collections::BTreeMap;

use bytes::Bytes;
use weir::mux::session::{Config, Output, Recv, Role, Session};
use weir::mux::wire::{Frame, Id, Kind};
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
        drain(&mut self.session, &mut self.sent);
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

/// The echo service of the transcripts, written against the session's outputs.
#[derive(Default)]
struct EchoServer {
    /// Every byte the session handed out.
    sent: Vec<u8>,
    /// Every report other than `Opened`, in order.
    reports: Vec<Output>,
    /// Streams and the rpc each one called.
    calls: BTreeMap<u64, String>,
    /// Messages received so far (client stream), messages echoed (bidi).
    received: BTreeMap<u64, Vec<u8>>,
    observed: Vec<String>,
}

impl EchoServer {
    /// Handle every output and run every handler as far as it can go.
    fn run(&mut self, session: &mut Session) {
        self.poll(session);
        let calls: Vec<(u64, String)> = self.calls.iter().map(|(s, r)| (*s, r.clone())).collect();
        for (stream, rpc) in calls {
            if self.step(session, stream, &rpc) {
                // The handler returned: it reads no more (Go's server then waits for the client
                // to finish the stream, sending nothing else).
                session.drop_stream(stream);
                self.calls.remove(&stream);
            }
        }
        self.poll(session);
    }

    /// Take every output: keep the bytes and the reports, and note the calls opened.
    fn poll(&mut self, session: &mut Session) {
        while let Some(output) = session.poll_output() {
            if let Output::Opened {
                stream,
                rpc,
                metadata,
            } = output
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
                continue;
            }
            match output {
                Output::Transmit(bytes) => {
                    self.sent.extend_from_slice(&bytes);
                    session.handle_written(bytes.len());
                }
                Output::Closed(reason) => panic!("the server closed the connection: {reason}"),
                report => self.reports.push(report),
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

/// Every byte the session hands out, into `out`; the reports are not needed here, but a
/// closed connection is a failure.
fn drain(session: &mut Session, out: &mut Vec<u8>) {
    while let Some(output) = session.poll_output() {
        match output {
            Output::Transmit(bytes) => {
                out.extend_from_slice(&bytes);
                session.handle_written(bytes.len());
            }
            Output::Closed(reason) => panic!("the session closed the connection: {reason}"),
            _ => {}
        }
    }
}

#[test]
fn compat_server_reproduces_every_transcript() {
    for t in transcripts() {
        let mut session = Session::new(Role::Server, Config::default());
        let mut server = EchoServer::default();
        // The client's frames arrive one at a time and the handlers run between them, as with
        // Go's synchronous pipe.
        for frame in frames(&hex(&t.client_to_server_hex)) {
            session.handle_input(NOW, &frame).unwrap();
            server.run(&mut session);
        }
        assert_eq!(
            hex(&t.server_to_client_hex),
            server.sent,
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
/// before the server answered. A stream the client closed is over: the server must send
/// nothing for it (no reply Message, no CloseSend, no Error), report the Close and forget the
/// stream, and keep the connection: the next call on it is answered in full.
#[test]
fn compat_server_handles_the_close_arriving_first() {
    for t in transcripts().into_iter().filter(|t| t.ordering_gate) {
        let mut session = Session::new(Role::Server, Config::default());
        let mut server = EchoServer::default();
        session
            .handle_input(NOW, &hex(&t.client_to_server_hex))
            .unwrap();
        server.run(&mut session);
        assert_eq!(server.sent, b"", "{}: sent for closed streams", t.name);
        let calls = t.client_steps.len() as u64;
        for stream in 1..=calls {
            let ended = server.reports.iter().position(|r| {
                matches!(r, Output::RemoteClosed(s) | Output::RemoteCanceled(s) if *s == stream)
            });
            let finished = server
                .reports
                .iter()
                .position(|r| *r == Output::Finished(stream));
            assert!(
                matches!((ended, finished), (Some(e), Some(f)) if e < f),
                "{}: stream {stream} in {:?}",
                t.name,
                server.reports
            );
        }
        assert!(
            server.calls.is_empty(),
            "{}: handlers still running",
            t.name
        );
        assert_eq!(session.active_streams(), 0, "{}: streams left", t.name);

        // The connection goes on: a new call gets its reply and the end of the stream.
        let next = calls + 1;
        let mut call = Vec::new();
        for (kind, message, data) in [
            (Kind::INVOKE, 1, &b"/echo.Echo/Unary"[..]),
            (Kind::MESSAGE, 2, &b"again"[..]),
            (Kind::CLOSE_SEND, 3, &b""[..]),
        ] {
            let id = Id::new(next, message);
            Frame {
                kind,
                done: true,
                control: false,
                id,
                data,
            }
            .encode(&mut call)
            .unwrap();
        }
        session.handle_input(NOW, &call).unwrap();
        server.run(&mut session);
        let mut reply = Vec::new();
        for (kind, message, data) in [
            (Kind::MESSAGE, 1, &b"again"[..]),
            (Kind::CLOSE_SEND, 2, &b""[..]),
        ] {
            let id = Id::new(next, message);
            Frame {
                kind,
                done: true,
                control: false,
                id,
                data,
            }
            .encode(&mut reply)
            .unwrap();
        }
        assert_eq!(server.sent, reply, "{}: the next call", t.name);
    }
}
