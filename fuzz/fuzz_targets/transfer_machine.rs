//! The migration machine under arbitrary client, server and new-server bytes interleaved with
//! transfer requests, dial results (dialled or already started servers) and timeouts, with and
//! without reuse of old servers: no panic, a server released only when reuse is on, bounded
//! memory, `Output::Closed` at most once and last (later calls refused as closed), the client
//! stream relayed to servers is always a prefix of what the client sent, and the transfer
//! counters add up. With the machine carrying prepared statements, clients Parse, Close and
//! `DEALLOCATE` named statements across moves; whatever it sends a new server after the
//! deserialize query is Parse messages the client sent, each name once, and a Sync.
#![no_main]

use arbitrary::Arbitrary;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use weir::error::{ErrorKind, Kind};
use weir::time::Instant;
use weir::transfer::message::build_startup_message;
use weir::transfer::message::BackendKey;
use weir::transfer::{Config, Dialect, Machine, Output, ServerId, Source, STATE_COLUMNS};

/// A server message built from parts, so that the fuzzer reaches deep states quickly.
#[derive(Debug, Arbitrary)]
enum Msg {
    Raw(Vec<u8>),
    Ready(u8),
    Complete(bool),
    StateRow {
        error: bool,
        key: bool,
    },
    StateColumns,
    AuthOk,
    Key(u32),
    Deserialize(bool),
    DeserializeColumn,
    Copy(u8),
    Notice,
    ParseComplete,
    CloseComplete,
    /// `DEALLOCATE`, `DEALLOCATE ALL` or `DISCARD ALL`.
    Tag(u8),
    Error,
}

#[derive(Debug, Arbitrary)]
enum Op {
    Client(Vec<u8>),
    ClientQuery,
    ClientSync,
    ClientParse,
    /// Parse of statement `s<n % 4>`, with a query long enough to pass the limit when asked.
    ClientParseNamed(u8, bool),
    ClientClose(u8),
    /// A simple Query: `DEALLOCATE s<n % 4>`, `DEALLOCATE ALL` or `DISCARD ALL`.
    ClientDeallocate(u8),
    /// ParseComplete, ReadyForQuery: what a server answers a Parse and Sync with.
    ServerPrepared,
    /// The old server's whole answer to the state query.
    StateAnswer,
    /// The new server's greeting and its whole answer to the deserialize query.
    NewServerGreeted,
    /// `n % 4` ParseComplete messages and a ReadyForQuery from the new server, or an error.
    NewServerPrepared(u8, bool),
    Server(Msg),
    NewServer(Msg),
    Request(bool),
    Connected,
    Started(Option<u32>),
    Failed,
    Advance(u16),
    Split(Vec<u8>, u8),
}

fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn row(values: &[Option<&[u8]>]) -> Vec<u8> {
    let mut b = (values.len() as i16).to_be_bytes().to_vec();
    for v in values {
        match v {
            None => b.extend_from_slice(&(-1i32).to_be_bytes()),
            Some(v) => {
                b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                b.extend_from_slice(v);
            }
        }
    }
    msg(b'D', &b)
}

fn columns(names: &[&str]) -> Vec<u8> {
    let mut b = (names.len() as i16).to_be_bytes().to_vec();
    for n in names {
        b.extend_from_slice(n.as_bytes());
        b.push(0);
        b.extend_from_slice(&[0; 18]);
    }
    msg(b'T', &b)
}

fn render(m: &Msg, key: &str) -> Vec<u8> {
    match m {
        Msg::Raw(b) => b.clone(),
        Msg::Ready(s) => {
            let status = match s % 4 {
                0 => b'I',
                1 => b'T',
                2 => b'E',
                _ => *s,
            };
            msg(b'Z', &[status])
        }
        Msg::Complete(state) => {
            let tag: &[u8] = if *state {
                b"SHOW TRANSFER STATE 1\0"
            } else {
                b"SELECT 1\0"
            };
            msg(b'C', tag)
        }
        Msg::StateRow { error, key: good } => {
            let k: &[u8] = if *good { key.as_bytes() } else { b"other" };
            if *error {
                row(&[Some(b"busy"), None, None, Some(k)])
            } else {
                row(&[None, Some(b"c3RhdGU="), Some(b"dG9r"), Some(k)])
            }
        }
        Msg::StateColumns => columns(&STATE_COLUMNS),
        Msg::AuthOk => msg(b'R', &[0, 0, 0, 0]),
        Msg::Key(k) => msg(b'K', &[k.to_be_bytes(), [0, 0, 0, 1]].concat()),
        Msg::Deserialize(t) => row(&[Some(if *t { b"t" } else { b"f" })]),
        Msg::DeserializeColumn => columns(&["crdb_internal.deserialize_session"]),
        Msg::Copy(k) => msg(
            [b'G', b'H', b'W', b'c', b'd'][usize::from(*k % 5)],
            &[0, 0, 0],
        ),
        Msg::Notice => msg(b'N', b"Mhi\0\0"),
        Msg::ParseComplete => msg(b'1', b""),
        Msg::CloseComplete => msg(b'3', b""),
        Msg::Tag(t) => msg(b'C', tags(*t)),
        Msg::Error => msg(b'E', b"SERROR\0Mno\0\0"),
    }
}

fn tags(t: u8) -> &'static [u8] {
    [&b"DEALLOCATE\0"[..], b"DEALLOCATE ALL\0", b"DISCARD ALL\0"][usize::from(t % 3)]
}

fn parse(name: u8, long: bool) -> Vec<u8> {
    let mut body = format!("s{}\0SELECT ", name % 4).into_bytes();
    body.extend(std::iter::repeat_n(b'1', if long { 3000 } else { 1 }));
    body.extend_from_slice(&[0, 0, 1, 0, 0, 0, 23]);
    msg(b'P', &body)
}

/// What the machine sent a new server after the deserialize query, if it was prepared
/// statements: each a Parse the client sent, each name once, then a Sync.
fn check_replay(data: &[u8], sent: &[u8]) {
    if data.first() != Some(&b'P') {
        return;
    }
    let mut names = std::collections::BTreeSet::new();
    let mut rest = data;
    while let [tag, a, b, c, d, ..] = rest {
        let len = u32::from_be_bytes([*a, *b, *c, *d]) as usize + 1;
        let (message, after) = rest.split_at(len);
        rest = after;
        if *tag == b'S' {
            assert!(rest.is_empty(), "bytes after the Sync");
            return;
        }
        assert_eq!(*tag, b'P');
        assert!(
            sent.windows(message.len()).any(|w| w == message),
            "a Parse the client never sent"
        );
        let name = message[5..].split(|&b| b == 0).next().unwrap();
        assert!(names.insert(name.to_vec()), "a statement sent twice");
    }
    panic!("no Sync after the Parse messages");
}

#[derive(Debug, Arbitrary)]
struct Input {
    /// Reuse old servers, and have a query for already started ones.
    reuse: bool,
    /// The machine carries prepared statements itself.
    replay: bool,
    ops: Vec<Op>,
}

fuzz_target!(|input: Input| {
    let Input { reuse, replay, ops } = input;
    let mut dialect = Dialect::cockroachdb();
    dialect.replay_prepared_statements = replay;
    if reuse {
        dialect.started_server_query_template = Some("SELECT r('{state}', '{token}')".into());
    }
    let config = Config {
        max_held_client_bytes: 4096,
        max_held_server_bytes: 1024,
        max_transfer_response_len: 8192,
        reuse_old_server: reuse,
        max_prepared_statement_bytes: 2048,
        ..Config::with_dialect(dialect)
    };
    let bound = config.max_held_client_bytes
        + config.max_held_server_bytes
        + config.max_transfer_response_len as usize
        + config.framer.max_startup_len as usize
        + 3 * config.max_small_message_len as usize
        // Kept statements, the copy on its way to a new server, and a Parse being read whole.
        + 3 * config.max_prepared_statement_bytes;
    let mut m = Machine::new(config, ServerId(0));
    // The id of the last transfer's new server.
    let mut new_server = ServerId(1);
    let mut closed = false;
    let mut now = Instant::from_secs(1);
    let mut sent = Vec::new();
    let mut relayed = Vec::new();
    let mut keys = 0u32;
    let startup = build_startup_message([("user", "fuzz")], 10_000).unwrap();
    if m.handle_client_input(now, startup.clone()).is_ok() {
        sent.extend_from_slice(&startup);
    }
    for op in ops {
        let key = format!("k{keys}");
        let mut client = |m: &mut Machine, data: Vec<u8>| {
            if m.handle_client_input(now, Bytes::from(data.clone()))
                .is_ok()
            {
                sent.extend_from_slice(&data);
            }
        };
        match op {
            Op::Client(data) => client(&mut m, data),
            Op::ClientQuery => client(&mut m, msg(b'Q', b"SELECT 1\0")),
            Op::ClientSync => client(&mut m, msg(b'S', b"")),
            Op::ClientParse => client(&mut m, msg(b'P', b"\0SELECT 1\0\0\0")),
            Op::ClientParseNamed(name, long) => {
                client(&mut m, [parse(name, long), msg(b'S', b"")].concat())
            }
            Op::ClientClose(name) => {
                let body = format!("Ss{}\0", name % 4).into_bytes();
                client(&mut m, [msg(b'C', &body), msg(b'S', b"")].concat())
            }
            Op::ClientDeallocate(n) => {
                let sql = match n % 6 {
                    4 => "DEALLOCATE ALL\0".to_string(),
                    5 => "DISCARD ALL\0".to_string(),
                    n => format!("DEALLOCATE s{n}\0"),
                };
                client(&mut m, msg(b'Q', sql.as_bytes()))
            }
            Op::StateAnswer => {
                let answer = [
                    columns(&STATE_COLUMNS),
                    render(
                        &Msg::StateRow {
                            error: false,
                            key: true,
                        },
                        &key,
                    ),
                    render(&Msg::Complete(true), &key),
                    msg(b'Z', b"I"),
                ];
                let _ = m.handle_server_input(now, m.server(), Bytes::from(answer.concat()));
            }
            Op::NewServerGreeted => {
                let answer = [
                    msg(b'R', &[0, 0, 0, 0]),
                    msg(b'Z', b"I"),
                    columns(&["crdb_internal.deserialize_session"]),
                    row(&[Some(b"t")]),
                    msg(b'C', b"SELECT 1\0"),
                    msg(b'Z', b"I"),
                ];
                let _ = m.handle_server_input(now, new_server, Bytes::from(answer.concat()));
            }
            Op::NewServerPrepared(n, error) => {
                let mut answer = vec![msg(b'1', b""); usize::from(n % 4)];
                if error {
                    answer.push(render(&Msg::Error, &key));
                }
                answer.push(msg(b'Z', b"I"));
                let _ = m.handle_server_input(now, new_server, Bytes::from(answer.concat()));
            }
            Op::ServerPrepared => {
                let answer = [msg(b'1', b""), msg(b'Z', b"I")].concat();
                let _ = m.handle_server_input(now, m.server(), Bytes::from(answer));
            }
            Op::Server(msg) => {
                let _ = m.handle_server_input(now, m.server(), Bytes::from(render(&msg, &key)));
            }
            Op::NewServer(msg) => {
                let _ = m.handle_server_input(now, new_server, Bytes::from(render(&msg, &key)));
            }
            Op::Split(data, at) => {
                let at = usize::from(at).min(data.len());
                let (a, b) = data.split_at(at);
                client(&mut m, a.to_vec());
                client(&mut m, b.to_vec());
            }
            Op::Request(fresh) => {
                if fresh {
                    keys += 1;
                }
                new_server = ServerId(m.server().0 + 1);
                let _ = m.request_transfer(now, &format!("k{keys}"), new_server);
            }
            Op::Connected => {
                let _ = m.handle_new_server_connected(now, new_server);
            }
            Op::Started(pid) => {
                let key = pid.map(|process_id| BackendKey {
                    process_id,
                    secret: vec![0, 0, 0, 1],
                });
                let _ = m.handle_new_server_started(now, new_server, key);
            }
            Op::Failed => {
                let _ = m.handle_new_server_failed(now, new_server, "fuzz");
            }
            Op::Advance(ms) => {
                now = now + core::time::Duration::from_millis(u64::from(ms) * 16);
                m.handle_timeout(now);
            }
        }
        while let Some(out) = m.poll_output() {
            assert!(!closed, "an output after Output::Closed");
            match out {
                Output::Transmit(t) if t.source == Source::Client => {
                    relayed.extend_from_slice(&t.data)
                }
                Output::Transmit(t) if t.source == Source::Machine => {
                    if replay {
                        check_replay(&t.data, &sent);
                    } else {
                        assert_ne!(t.data.first(), Some(&b'P'), "a Parse without replay");
                    }
                }
                Output::ReleaseOldServer { .. } => assert!(reuse),
                Output::Closed(_) => closed = true,
                _ => {}
            }
        }
        assert_eq!(closed, m.is_closed());
        if closed {
            m.handle_timeout(now);
            assert_eq!(m.poll_output(), None);
            let refused = m.handle_client_input(now, Bytes::from_static(b"x"));
            assert_eq!(refused.map_err(|e| e.kind()), Err(ErrorKind::Closed));
        }
        assert!(relayed.len() <= sent.len());
        assert_eq!(&relayed[..], &sent[..relayed.len()]);
        assert!(m.buffered_len() <= bound, "{} > {bound}", m.buffered_len());
        let metrics = m.metrics();
        let ended = metrics.success + metrics.error_fatal + metrics.error_recoverable;
        let running = u64::from(m.is_transferring());
        assert_eq!(metrics.attempted, ended + running);
    }
});
