//! Property tests of the transfer module against brute-force models.

mod transfer_support;

use bytes::Bytes;
use proptest::prelude::*;
use transfer_support::*;
use weir::transfer::frame::{Frame, Framer, FramerLimits, Side};
use weir::transfer::{Machine, Output, TransferResult};

/// Split `data` at the given cut points (taken modulo its length).
fn pieces(data: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (data.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut out = Vec::new();
    let mut start = 0;
    for c in cuts.into_iter().chain([data.len()]) {
        if c > start {
            out.push(data[start..c].to_vec());
        }
        start = c;
    }
    out
}

fn typed_message() -> impl Strategy<Value = (u8, Vec<u8>)> {
    (any::<u8>(), prop::collection::vec(any::<u8>(), 0..300))
}

proptest! {
    /// However the stream is cut, the framer finds the same messages as a whole-buffer parse.
    #[test]
    fn framer_matches_a_whole_buffer_parse(
        messages in prop::collection::vec(typed_message(), 0..20),
        cuts in prop::collection::vec(any::<usize>(), 0..30),
        capture in 0u32..400,
    ) {
        let stream: Vec<u8> = messages.iter().flat_map(|(t, b)| msg(*t, b)).collect();
        let mut framer = Framer::new(Side::Backend, FramerLimits::default());
        let mut found: Vec<(u8, Vec<u8>)> = Vec::new();
        for piece in pieces(&stream, &cuts) {
            let mut pos = 0;
            while let Some(frame) = framer.next(&piece, &mut pos, |_| capture).unwrap() {
                match frame {
                    Frame::Message { tag, body, .. } => found.push((tag, body.to_vec())),
                    Frame::Begin { tag, .. } => found.push((tag, Vec::new())),
                    Frame::Part { range, .. } => {
                        found.last_mut().unwrap().1.extend_from_slice(&piece[range]);
                    }
                    other => panic!("{other:?}"),
                }
            }
            prop_assert!(framer.buffered_len() <= 5 + capture as usize);
        }
        prop_assert_eq!(found, messages);
        prop_assert!(framer.at_boundary());
    }
}

/// A client message in the safe-point model.
#[derive(Debug, Clone, Copy)]
enum ClientMsg {
    Begin,
    Commit,
    Select,
    Fail,
    Parse,
    Bind,
    Execute,
    ExecuteFail,
    Sync,
}

fn client_msg() -> impl Strategy<Value = ClientMsg> {
    prop_oneof![
        Just(ClientMsg::Begin),
        Just(ClientMsg::Commit),
        Just(ClientMsg::Select),
        Just(ClientMsg::Fail),
        Just(ClientMsg::Parse),
        Just(ClientMsg::Bind),
        Just(ClientMsg::Execute),
        Just(ClientMsg::ExecuteFail),
        Just(ClientMsg::Sync),
    ]
}

/// A brute-force PostgreSQL: processes each client message as it arrives and queues its
/// output, following the protocol's rules for transactions and extended-protocol errors.
#[derive(Default)]
struct ModelServer {
    in_txn: bool,
    failed: bool,
    /// After an error in an extended batch, messages are skipped until Sync.
    skipping: bool,
    /// A Query was skipped that way: it will never get its ReadyForQuery, and the machine,
    /// which cannot tell, keeps waiting for it (conservative, never unsafe).
    lost_query: bool,
    output: Vec<u8>,
}

impl ModelServer {
    fn status(&self) -> u8 {
        match (self.in_txn, self.failed) {
            (false, _) => b'I',
            (true, false) => b'T',
            (true, true) => b'E',
        }
    }

    fn process(&mut self, m: ClientMsg) -> Vec<u8> {
        let wire = match m {
            ClientMsg::Begin => query("BEGIN"),
            ClientMsg::Commit => query("COMMIT"),
            ClientMsg::Select => query("SELECT 1"),
            ClientMsg::Fail => query("SELECT 1/0"),
            ClientMsg::Parse => msg(b'P', b"\0SELECT 1\0\0\0"),
            ClientMsg::Bind => msg(b'B', b"\0\0\0\0\0\0\0\0"),
            ClientMsg::Execute => msg(b'E', b"\0\0\0\0\0"),
            ClientMsg::ExecuteFail => msg(b'E', b"\0\0\0\0\x01"),
            ClientMsg::Sync => msg(b'S', b""),
        };
        let out = &mut self.output;
        match m {
            ClientMsg::Sync => {
                self.skipping = false;
                if !self.in_txn {
                    self.failed = false;
                }
                let status = self.status();
                self.output.extend(ready(status));
            }
            ClientMsg::Begin | ClientMsg::Commit | ClientMsg::Select | ClientMsg::Fail
                if self.skipping =>
            {
                self.lost_query = true;
            }
            _ if self.skipping => {}
            ClientMsg::Begin => {
                self.in_txn = true;
                out.extend(command_complete("BEGIN"));
                let status = self.status();
                self.output.extend(ready(status));
            }
            ClientMsg::Commit => {
                self.in_txn = false;
                self.failed = false;
                out.extend(command_complete("COMMIT"));
                self.output.extend(ready(b'I'));
            }
            ClientMsg::Select | ClientMsg::Fail => {
                if matches!(m, ClientMsg::Fail) || self.failed {
                    out.extend(error_response("failed"));
                    self.failed = self.in_txn;
                } else {
                    out.extend(row_description(&["x"]));
                    out.extend(data_row(&[Some(b"1")]));
                    out.extend(command_complete("SELECT 1"));
                }
                let status = self.status();
                self.output.extend(ready(status));
            }
            ClientMsg::Parse => out.extend(msg(b'1', b"")),
            ClientMsg::Bind => out.extend(msg(b'2', b"")),
            ClientMsg::Execute => {
                out.extend(data_row(&[Some(b"1")]));
                out.extend(command_complete("SELECT 1"));
            }
            ClientMsg::ExecuteFail => {
                out.extend(error_response("failed"));
                self.skipping = true;
                self.failed = self.in_txn;
            }
        }
        wire
    }
}

#[derive(Debug, Clone)]
enum Step {
    Send(ClientMsg),
    Deliver(usize),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        client_msg().prop_map(Step::Send),
        (1usize..40).prop_map(Step::Deliver),
    ]
}

proptest! {
    /// The machine's safe point against a model server: it is claimed only when every client
    /// message has been answered and the server is idle (soundness), and it is claimed whenever
    /// that holds after a Query or Sync (completeness).
    #[test]
    fn safe_point_matches_a_model_server(steps in prop::collection::vec(step(), 0..60)) {
        let mut h = Harness::new();
        let mut server = ModelServer::default();
        let mut delivered = 0;
        let mut last_sync_point = true;
        for step in steps {
            match step {
                Step::Send(m) => {
                    let wire = server.process(m);
                    h.client(&wire);
                    last_sync_point = matches!(
                        m,
                        ClientMsg::Begin | ClientMsg::Commit | ClientMsg::Select | ClientMsg::Fail
                            | ClientMsg::Sync
                    );
                }
                Step::Deliver(n) => {
                    let end = (delivered + n).min(server.output.len());
                    let chunk = server.output[delivered..end].to_vec();
                    delivered = end;
                    h.server(&chunk);
                }
            }
            let quiet = delivered == server.output.len() && server.status() == b'I';
            if h.m.at_safe_point() {
                prop_assert!(quiet, "claimed a safe point with {} bytes undelivered, status {}",
                    server.output.len() - delivered, server.status() as char);
                prop_assert!(!server.skipping);
            }
            if quiet && last_sync_point && !server.skipping && !server.lost_query {
                prop_assert!(h.m.at_safe_point(), "missed a safe point");
            }
        }
        h.assert_client_stream_intact();
    }

    /// A transfer succeeds however the peers' bytes are cut and wherever client bytes arrive,
    /// and every client byte reaches the new server once, in order.
    #[test]
    fn transfer_is_independent_of_cuts(
        state_cuts in prop::collection::vec(any::<usize>(), 0..8),
        greeting_cuts in prop::collection::vec(any::<usize>(), 0..8),
        deserialize_cuts in prop::collection::vec(any::<usize>(), 0..8),
        client_at in prop::collection::vec(0usize..40, 0..6),
    ) {
        let mut h = Harness::new();
        h.request("k");
        let mut script: Vec<(u8, Vec<u8>)> = Vec::new();
        script.extend(pieces(&state_response("k"), &state_cuts).into_iter().map(|p| (0, p)));
        script.push((2, Vec::new()));
        script.extend(pieces(&greeting(9), &greeting_cuts).into_iter().map(|p| (1, p)));
        script.extend(pieces(&deserialize_response(b"t"), &deserialize_cuts).into_iter().map(|p| (1, p)));
        let mut n = 0;
        for (i, (peer, data)) in script.into_iter().enumerate() {
            if client_at.contains(&i) {
                n += 1;
                h.client(&query(&format!("SELECT {n}")));
            }
            match peer {
                0 => h.server(&data),
                1 => h.new_server_bytes(&data),
                _ => h.connected(),
            }
        }
        prop_assert_eq!(h.last_result(), Some(TransferResult::Success));
        prop_assert!(h.to_client.is_empty());
        let expected: Vec<u8> = (1..=n).flat_map(|i| query(&format!("SELECT {i}"))).collect();
        prop_assert!(h.servers[1].ends_with(&expected));
        h.assert_client_stream_intact();
    }
}

#[test]
fn a_hundred_megabyte_data_row_passes_in_pieces() {
    let mut m = Machine::new(
        weir::transfer::Config::default(),
        weir::transfer::ServerId(0),
    );
    let now = weir::time::Instant::ZERO;
    let startup = weir::transfer::message::build_startup_message([("user", "a")], 100).unwrap();
    m.handle_client_input(now, startup).unwrap();
    m.handle_server_input(now, weir::transfer::ServerId(0), Bytes::from(greeting(1)))
        .unwrap();
    m.handle_client_input(now, Bytes::from(query("SELECT big")))
        .unwrap();
    while m.poll_output().is_some() {}
    let len: u32 = 100 << 20;
    let mut head = vec![b'D'];
    head.extend_from_slice(&(len + 4).to_be_bytes());
    m.handle_server_input(now, weir::transfer::ServerId(0), Bytes::from(head))
        .unwrap();
    let chunk = Bytes::from(vec![7u8; 1 << 20]);
    let mut relayed = 0;
    for _ in 0..100 {
        m.handle_server_input(now, weir::transfer::ServerId(0), chunk.clone())
            .unwrap();
        assert!(m.buffered_len() <= 5, "nothing of the row is buffered");
        while let Some(out) = m.poll_output() {
            if let Output::Transmit(t) = out {
                relayed += t.data.len();
            }
        }
    }
    assert_eq!(relayed, (100 << 20) + 5);
    m.handle_server_input(
        now,
        weir::transfer::ServerId(0),
        Bytes::from([command_complete("SELECT 1"), ready(b'I')].concat()),
    )
    .unwrap();
    assert!(m.at_safe_point());
}

/// What a client sends between two ReadyForQuery messages: an extended-protocol batch ended by
/// a Sync, or one simple Query.
#[derive(Debug, Clone)]
enum Batch {
    /// Parse (statement, refused by the server), or Close (statement); then Sync.
    Extended(Vec<(bool, u8, bool)>),
    /// `DEALLOCATE s<n>`, `DEALLOCATE ALL`, `DISCARD ALL` or `SELECT 1`.
    Query(u8),
}

fn batch() -> impl Strategy<Value = Batch> {
    prop_oneof![
        3 => prop::collection::vec((any::<bool>(), 0u8..4, prop::bool::weighted(0.15)), 1..5)
            .prop_map(Batch::Extended),
        1 => (0u8..8).prop_map(Batch::Query),
    ]
}

fn statement(n: u8) -> String {
    format!("s{n}")
}

/// A PostgreSQL server's prepared statements, and its answer to each batch.
#[derive(Default)]
struct StatementServer {
    statements: std::collections::BTreeMap<String, Vec<u8>>,
}

impl StatementServer {
    fn client_bytes(batch: &Batch) -> Vec<u8> {
        match batch {
            Batch::Extended(ops) => {
                let mut out = Vec::new();
                for &(is_parse, n, refused) in ops {
                    if is_parse {
                        let sql = if refused { "SELEC 1" } else { "SELECT $1" };
                        out.extend(parse(&statement(n), sql, &[23]));
                    } else {
                        out.extend(close_statement(&statement(n)));
                    }
                }
                out.extend(sync());
                out
            }
            Batch::Query(n) => query(&Self::sql(*n)),
        }
    }

    fn sql(n: u8) -> String {
        match n {
            0..=3 => format!("DEALLOCATE {}", statement(n)),
            4 => "DEALLOCATE ALL".into(),
            5 => "DISCARD ALL".into(),
            _ => "SELECT 1".into(),
        }
    }

    /// Run one batch: an error skips the rest of an extended batch up to its Sync.
    fn answer(&mut self, batch: &Batch) -> Vec<u8> {
        let mut out = Vec::new();
        match batch {
            Batch::Extended(ops) => {
                for &(is_parse, n, refused) in ops {
                    let name = statement(n);
                    if !is_parse {
                        self.statements.remove(&name);
                        out.extend(close_complete());
                    } else if refused || self.statements.contains_key(&name) {
                        out.extend(error_response("no"));
                        break;
                    } else {
                        self.statements
                            .insert(name.clone(), parse(&name, "SELECT $1", &[23]));
                        out.extend(parse_complete());
                    }
                }
            }
            Batch::Query(n @ 0..=3) => match self.statements.remove(&statement(*n)) {
                Some(_) => out.extend(command_complete("DEALLOCATE")),
                None => out.extend(error_response("no such statement")),
            },
            Batch::Query(n @ (4 | 5)) => {
                self.statements.clear();
                out.extend(command_complete(if *n == 4 {
                    "DEALLOCATE ALL"
                } else {
                    "DISCARD ALL"
                }));
            }
            Batch::Query(_) => out.extend(command_complete("SELECT 1")),
        }
        out.extend(ready(b'I'));
        out
    }
}

proptest! {
    /// However a client pipelines Parse, Close, DEALLOCATE and DISCARD ALL, and however the
    /// bytes are cut, a move creates on the new server exactly the statements the old server
    /// holds.
    #[test]
    fn a_move_carries_exactly_the_statements_the_server_holds(
        rounds in prop::collection::vec(prop::collection::vec(batch(), 1..5), 1..6),
        client_cuts in prop::collection::vec(any::<usize>(), 0..6),
        server_cuts in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let dialect = weir::transfer::Dialect {
            replay_prepared_statements: true,
            ..weir::transfer::Dialect::cockroachdb()
        };
        let mut h = Harness::with_config(weir::transfer::Config::with_dialect(dialect));
        let mut server = StatementServer::default();
        // Each round's batches go out together, and their answers come back together.
        for batches in &rounds {
            let sent: Vec<u8> = batches.iter().flat_map(StatementServer::client_bytes).collect();
            for piece in pieces(&sent, &client_cuts) {
                h.client(&piece);
            }
            let answers: Vec<u8> = batches.iter().flat_map(|b| server.answer(b)).collect();
            for piece in pieces(&answers, &server_cuts) {
                h.server(&piece);
            }
        }
        prop_assert!(h.m.at_safe_point());
        h.request("key-1");
        h.server(&state_response("key-1"));
        h.connected();
        h.new_server_bytes(&greeting(9));
        let before = h.new_server.len();
        h.new_server_bytes(&deserialize_response(b"t"));
        if server.statements.is_empty() {
            // Nothing to create: the session is on the new server at once, and it got
            // nothing after the deserialize query.
            prop_assert_eq!(h.last_result(), Some(TransferResult::Success));
            prop_assert_eq!(h.servers.last().map(Vec::len), Some(before));
        } else {
            let replayed = h.new_server[before..].to_vec();
            let expected: Vec<u8> = server.statements.values().flatten().copied()
                .chain(sync()).collect();
            prop_assert_eq!(replayed, expected);
            let mut answer: Vec<u8> =
                server.statements.values().flat_map(|_| parse_complete()).collect();
            answer.extend(ready(b'I'));
            h.new_server_bytes(&answer);
            prop_assert_eq!(h.last_result(), Some(TransferResult::Success));
        }
    }
}
