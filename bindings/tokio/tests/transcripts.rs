//! The Go-recorded DRPC conversations (`tests/vectors/drpc/transcripts.json`) replayed over
//! loopback TCP: the Go client's bytes into a weir `Server`, and the Go server's bytes into a
//! weir `Client`. Each side must write exactly what the Go peer wrote.
//!
//! The recorded bytes carry no timing, but some of it matters (a unary client's final Close
//! must follow the server's reply, or the server sends only a prefix: the vectors' ordering
//! gate). The timing is taken from replaying the transcript through a sans-IO session in
//! lockstep, as `tests/tests/drpc_sessions.rs` does: how many bytes of the other side each
//! side had seen when it wrote each piece. The fake peers here keep to that order.

mod common;

use bytes::Bytes;
use common::{echo_router, tcp_pair};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use weir::mux::session::{Config, Output, Recv, Role, Session};
use weir::time::Instant;
use weir_tests::drpc::{frames, hex, metadata_for, transcripts, Step, Transcript};
use weir_tokio::{Client, Error, Server};

/// When each side wrote what, from a lockstep replay of the client through a sans-IO session.
#[derive(Default)]
struct Timeline {
    /// (server bytes the client had read, client bytes written by then), in order.
    client_writes: Vec<(usize, usize)>,
    /// (client bytes written before it, the server frame), in order.
    server_frames: Vec<(usize, Vec<u8>)>,
}

struct Replay {
    session: Session,
    incoming: std::vec::IntoIter<Vec<u8>>,
    sent: usize,
    fed: usize,
    timeline: Timeline,
}

impl Replay {
    fn flush(&mut self) {
        while let Some(output) = self.session.poll_output() {
            match output {
                Output::Transmit(bytes) => {
                    self.sent += bytes.len();
                    self.session.handle_written(bytes.len());
                }
                Output::Closed(reason) => panic!("the replay closed the connection: {reason}"),
                _ => {}
            }
        }
        self.timeline.client_writes.push((self.fed, self.sent));
    }

    fn feed(&mut self, frame: Vec<u8>) {
        self.session.handle_input(Instant::ZERO, &frame).unwrap();
        self.fed += frame.len();
        self.timeline.server_frames.push((self.sent, frame));
    }

    fn recv(&mut self, stream: u64) {
        loop {
            self.flush();
            match self.session.read(stream).unwrap() {
                Recv::Pending => {
                    let frame = self.incoming.next().expect("starved");
                    self.feed(frame);
                }
                _ => return,
            }
        }
    }
}

fn timeline(t: &Transcript) -> Timeline {
    const NOW: Instant = Instant::ZERO;
    let mut r = Replay {
        session: Session::new(Role::Client, Config::default()),
        incoming: frames(&hex(&t.server_to_client_hex)).into_iter(),
        sent: 0,
        fed: 0,
        timeline: Timeline::default(),
    };
    let metadata = metadata_for(&t.name);
    let mut stream = 0;
    for step in &t.client_steps {
        let (op, rpc) = step.op.split_once(' ').unwrap_or((&step.op, ""));
        let input = || step.input.as_ref().unwrap().bytes();
        match op {
            "Invoke" => {
                stream = r
                    .session
                    .open_stream(NOW, rpc.to_owned(), &metadata)
                    .unwrap();
                r.session.send(NOW, stream, input()).unwrap();
                r.session.close_send(NOW, stream).unwrap();
                r.recv(stream);
                r.session.close(NOW, stream).unwrap();
            }
            "NewStream" => {
                stream = r
                    .session
                    .open_stream(NOW, rpc.to_owned(), &metadata)
                    .unwrap()
            }
            "MsgSend" => r.session.send(NOW, stream, input()).unwrap(),
            "CloseSend" => r.session.close_send(NOW, stream).unwrap(),
            "Close" => r.session.close(NOW, stream).unwrap(),
            "MsgRecv" => r.recv(stream),
            other => panic!("unknown op {other}"),
        }
        r.flush();
    }
    while let Some(frame) = r.incoming.next() {
        r.feed(frame);
    }
    r.flush();
    r.timeline
}

/// Read from `socket` until `have` holds at least `want` bytes.
async fn read_until(socket: &mut TcpStream, have: &mut Vec<u8>, want: usize) {
    let mut buf = [0u8; 64 << 10];
    while have.len() < want {
        let n = socket.read(&mut buf).await.unwrap();
        assert!(n > 0, "peer closed after {} of {want} bytes", have.len());
        have.extend_from_slice(&buf[..n]);
    }
}

/// Read from `socket` until it ends; whatever arrives is appended.
async fn read_to_end(socket: &mut TcpStream, have: &mut Vec<u8>) {
    let mut buf = [0u8; 64 << 10];
    while let Ok(n) = socket.read(&mut buf).await {
        if n == 0 {
            break;
        }
        have.extend_from_slice(&buf[..n]);
    }
}

/// The Go client's bytes, written in its order, into a weir server running the echo service.
#[tokio::test]
async fn weir_server_answers_the_go_client_byte_for_byte() {
    for t in transcripts() {
        let client_bytes = hex(&t.client_to_server_hex);
        let timeline = timeline(&t);
        let (mut go_client, server_io) = tcp_pair().await;
        let server = tokio::spawn(async move {
            echo_router()
                .serve(Server::new(server_io, Config::default()))
                .await
        });
        let mut received = Vec::new();
        let mut written = 0;
        for &(seen, upto) in &timeline.client_writes {
            read_until(&mut go_client, &mut received, seen).await;
            go_client
                .write_all(&client_bytes[written..upto])
                .await
                .unwrap();
            written = upto;
        }
        assert_eq!(written, client_bytes.len(), "{}", t.name);
        go_client.shutdown().await.unwrap();
        read_to_end(&mut go_client, &mut received).await;
        server.await.unwrap();
        assert_eq!(
            received,
            hex(&t.server_to_client_hex),
            "{}: server bytes",
            t.name
        );
    }
}

/// Check a reply against the step that recorded it.
fn check(result: Result<Option<Bytes>, Error>, step: &Step, what: &str) {
    match (result, &step.response, &step.error) {
        (Ok(Some(data)), Some(want), None) => assert_eq!(data, want.bytes(), "{what}"),
        (Ok(None), None, Some(e)) => assert_eq!(e, "EOF", "{what}"),
        (Err(Error::Remote { code, message }), None, Some(e)) => {
            assert_eq!(&message, e, "{what}");
            let want = step.error_code.as_deref().map_or(0, |c| c.parse().unwrap());
            assert_eq!(code, want, "{what}");
        }
        (got, _, _) => panic!("{what}: got {got:?}"),
    }
}

/// A weir client making the Go client's calls against the Go server's recorded bytes.
#[tokio::test]
async fn weir_client_calls_the_go_server_byte_for_byte() {
    for t in transcripts() {
        let client_bytes = hex(&t.client_to_server_hex);
        let timeline = timeline(&t);
        let (client_io, mut go_server) = tcp_pair().await;
        let want = client_bytes.len();
        let (all_in_tx, all_in) = tokio::sync::oneshot::channel();
        let go_server = tokio::spawn(async move {
            let mut received = Vec::new();
            for (seen, frame) in timeline.server_frames {
                read_until(&mut go_server, &mut received, seen).await;
                go_server.write_all(&frame).await.unwrap();
            }
            read_until(&mut go_server, &mut received, want).await;
            let _ = all_in_tx.send(());
            read_to_end(&mut go_server, &mut received).await;
            received
        });

        let client = Client::connect(client_io, Config::default());
        let metadata = metadata_for(&t.name);
        let mut stream = None;
        for (i, step) in t.client_steps.iter().enumerate() {
            let what = format!("{} step {i} {}", t.name, step.op);
            let (op, rpc) = step.op.split_once(' ').unwrap_or((&step.op, ""));
            let input = || step.input.as_ref().unwrap().bytes();
            match op {
                "Invoke" => {
                    let reply = client.call_with_metadata(rpc, &metadata, input()).await;
                    check(reply.map(Some), step, &what);
                }
                "NewStream" => stream = Some(client.open(rpc, &metadata).await.unwrap()),
                "MsgSend" => stream.as_mut().unwrap().send(input()).await.unwrap(),
                "CloseSend" => stream.as_mut().unwrap().close_send().await.unwrap(),
                "Close" => stream.as_mut().unwrap().close().await.unwrap(),
                "MsgRecv" => check(stream.as_mut().unwrap().recv().await, step, &what),
                other => panic!("{what}: unknown op {other}"),
            }
        }
        all_in.await.unwrap();
        drop(stream);
        drop(client);
        let received = go_server.await.unwrap();
        assert_eq!(received, client_bytes, "{}: client bytes", t.name);
    }
}
