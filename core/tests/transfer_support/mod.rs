//! Scripted peers for the transfer machine: message builders and a harness that records what
//! each peer receives.
#![allow(dead_code)]

use std::time::Duration;

use bytes::Bytes;
use weir::time::Instant;
use weir::transfer::message::{build_startup_message, BackendKey};
use weir::transfer::{
    Config, Failure, Machine, Output, Peer, ServerId, Source, TransferOutcome, TransferResult,
    Transmit,
};

pub fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    out.extend_from_slice(body);
    out
}

pub fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

pub fn query(sql: &str) -> Vec<u8> {
    msg(b'Q', &cstr(sql))
}

/// Parse of `name` (empty: the unnamed statement) with these parameter type OIDs.
pub fn parse(name: &str, sql: &str, oids: &[u32]) -> Vec<u8> {
    let mut body = [cstr(name), cstr(sql)].concat();
    body.extend_from_slice(&(oids.len() as i16).to_be_bytes());
    for oid in oids {
        body.extend_from_slice(&oid.to_be_bytes());
    }
    msg(b'P', &body)
}

/// Close of the statement `name`.
pub fn close_statement(name: &str) -> Vec<u8> {
    msg(b'C', &[&b"S"[..], &cstr(name)].concat())
}

pub fn sync() -> Vec<u8> {
    msg(b'S', &[])
}

pub fn parse_complete() -> Vec<u8> {
    msg(b'1', &[])
}

pub fn close_complete() -> Vec<u8> {
    msg(b'3', &[])
}

pub fn row_description(names: &[&str]) -> Vec<u8> {
    let mut b = (names.len() as i16).to_be_bytes().to_vec();
    for n in names {
        b.extend(cstr(n));
        b.extend_from_slice(&[
            0, 0, 0, 0, 0, 0, 0, 0, 0, 25, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0,
        ]);
    }
    msg(b'T', &b)
}

pub fn data_row(values: &[Option<&[u8]>]) -> Vec<u8> {
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

pub fn command_complete(tag: &str) -> Vec<u8> {
    msg(b'C', &cstr(tag))
}

pub fn ready(status: u8) -> Vec<u8> {
    msg(b'Z', &[status])
}

pub fn error_response(text: &str) -> Vec<u8> {
    let mut b = b"SERROR\0C XX000\0".to_vec();
    b.retain(|&c| c != b' ');
    b.push(b'M');
    b.extend(cstr(text));
    b.push(0);
    msg(b'E', &b)
}

pub fn notice(text: &str) -> Vec<u8> {
    let mut b = b"SNOTICE\0M".to_vec();
    b.extend(cstr(text));
    b.push(0);
    msg(b'N', &b)
}

pub fn backend_key(pid: u32, secret: u32) -> Vec<u8> {
    let mut b = pid.to_be_bytes().to_vec();
    b.extend_from_slice(&secret.to_be_bytes());
    msg(b'K', &b)
}

pub fn auth(code: i32) -> Vec<u8> {
    msg(b'R', &code.to_be_bytes())
}

pub fn parameter_status(name: &str, value: &str) -> Vec<u8> {
    let mut b = cstr(name);
    b.extend(cstr(value));
    msg(b'S', &b)
}

pub fn greeting(pid: u32) -> Vec<u8> {
    [
        auth(0),
        parameter_status("server_version", "15.0"),
        backend_key(pid, 42),
        ready(b'I'),
    ]
    .concat()
}

pub const STATE: &str = "c3RhdGU=";
pub const TOKEN: &str = "dG9rZW4=";

pub fn state_response(key: &str) -> Vec<u8> {
    [
        row_description(&weir::transfer::STATE_COLUMNS),
        data_row(&[
            None,
            Some(STATE.as_bytes()),
            Some(TOKEN.as_bytes()),
            Some(key.as_bytes()),
        ]),
        command_complete("SHOW TRANSFER STATE 1"),
        ready(b'I'),
    ]
    .concat()
}

pub fn deserialize_response(value: &[u8]) -> Vec<u8> {
    [
        row_description(&["crdb_internal.deserialize_session"]),
        data_row(&[Some(value)]),
        command_complete("SELECT 1"),
        ready(b'I'),
    ]
    .concat()
}

/// A machine with recording peers. `servers[i]` is server `ServerId(i)`, `servers[0]` the
/// first; each successful transfer starts a new entry, and a transfer's new server is
/// [`Harness::new_id`].
pub struct Harness {
    pub m: Machine,
    pub now: Instant,
    pub client_sent: Vec<u8>,
    pub to_client: Vec<u8>,
    pub servers: Vec<Vec<u8>>,
    pub new_server: Vec<u8>,
    pub relayed_client: Vec<u8>,
    pub events: Vec<Output>,
}

impl Harness {
    pub fn with_config(config: Config) -> Harness {
        let mut h = Harness {
            m: Machine::new(config, ServerId(0)),
            now: Instant::from_secs(100),
            client_sent: Vec::new(),
            to_client: Vec::new(),
            servers: vec![Vec::new()],
            new_server: Vec::new(),
            relayed_client: Vec::new(),
            events: Vec::new(),
        };
        let startup =
            build_startup_message([("user", "alice"), ("database", "db")], 10_000).unwrap();
        h.client(&startup);
        h.server(&greeting(7));
        h.to_client.clear();
        h
    }

    /// A session past its startup, idle on server 0.
    pub fn new() -> Harness {
        Harness::with_config(Config::default())
    }

    /// The id of the server the session is on.
    pub fn current_id(&self) -> ServerId {
        ServerId(self.servers.len() as u64 - 1)
    }

    /// The id a transfer's new server gets.
    pub fn new_id(&self) -> ServerId {
        ServerId(self.servers.len() as u64)
    }

    pub fn advance(&mut self, d: Duration) {
        self.now = self.now + d;
    }

    pub fn client(&mut self, data: &[u8]) {
        self.m
            .handle_client_input(self.now, Bytes::copy_from_slice(data))
            .unwrap();
        self.client_sent.extend_from_slice(data);
        self.drain();
    }

    pub fn server(&mut self, data: &[u8]) {
        self.m
            .handle_server_input(self.now, self.current_id(), Bytes::copy_from_slice(data))
            .unwrap();
        self.drain();
    }

    pub fn new_server_bytes(&mut self, data: &[u8]) {
        self.m
            .handle_server_input(self.now, self.new_id(), Bytes::copy_from_slice(data))
            .unwrap();
        self.drain();
    }

    pub fn connected(&mut self) {
        self.m
            .handle_new_server_connected(self.now, self.new_id())
            .unwrap();
        self.drain();
    }

    /// Offer an already started server with this BackendKeyData process id.
    pub fn started(&mut self, pid: u32) {
        let key = BackendKey {
            process_id: pid,
            secret: vec![0, 0, 0, 1],
        };
        self.m
            .handle_new_server_started(self.now, self.new_id(), Some(key))
            .unwrap();
        self.drain();
    }

    pub fn request(&mut self, key: &str) {
        self.m
            .request_transfer(self.now, key, self.new_id())
            .unwrap();
        self.drain();
    }

    pub fn timeout(&mut self) {
        self.m.handle_timeout(self.now);
        self.drain();
    }

    pub fn drain(&mut self) {
        while let Some(out) = self.m.poll_output() {
            match out {
                Output::Transmit(Transmit { to, source, data }) => {
                    if source == Source::Client {
                        assert_eq!(
                            to,
                            Peer::Server(self.current_id()),
                            "client bytes only go to a current server"
                        );
                        self.relayed_client.extend_from_slice(&data);
                    }
                    match to {
                        Peer::Client => self.to_client.extend_from_slice(&data),
                        Peer::Server(id) if id == self.new_id() => {
                            self.new_server.extend_from_slice(&data)
                        }
                        Peer::Server(ServerId(i)) => {
                            self.servers[i as usize].extend_from_slice(&data)
                        }
                    }
                }
                Output::CloseOldServer(_) | Output::ReleaseOldServer { .. } => {
                    self.servers.push(std::mem::take(&mut self.new_server));
                    self.events.push(out);
                }
                other => self.events.push(other),
            }
        }
    }

    /// The outcomes recorded so far.
    pub fn outcomes(&self) -> Vec<&TransferOutcome> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Output::Outcome(o) => Some(o),
                _ => None,
            })
            .collect()
    }

    pub fn last_result(&self) -> Option<TransferResult> {
        self.outcomes().last().map(|o| o.result.clone())
    }

    pub fn recoverable(&self) -> Option<Failure> {
        match self.last_result() {
            Some(TransferResult::Recoverable(f)) => Some(f),
            _ => None,
        }
    }

    pub fn fatal(&self) -> Option<Failure> {
        match self.last_result() {
            Some(TransferResult::Fatal(f)) => Some(f),
            _ => None,
        }
    }

    /// Every client byte reached a server once, in order.
    pub fn assert_client_stream_intact(&self) {
        assert_eq!(self.relayed_client, self.client_sent);
    }

    /// Drive a whole successful transfer from an idle session.
    pub fn transfer_successfully(&mut self, key: &str) {
        self.request(key);
        self.server(&state_response(key));
        self.connected();
        self.new_server_bytes(&greeting(9));
        self.new_server_bytes(&deserialize_response(b"t"));
        assert_eq!(self.last_result(), Some(TransferResult::Success));
    }
}

/// Whether `haystack` contains `needle`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}
