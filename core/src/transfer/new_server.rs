//! The new server's side of a transfer: its greeting (or a connection that is already started),
//! the deserialize query, and handing the connection over once it is ready for the session.

use alloc::string::{String, ToString};

use bytes::Bytes;

use super::config::Config;
use super::dialect::Dialect;
use super::error::{Failure, TransferError};
use super::frame::{Frame, Framer, FramerLimits, Side};
use super::message::{
    build_query, build_startup_message, error_summary, parse_command_complete,
    parse_ready_for_query, Authentication, BackendKey, DataRow, RowDescription, TransactionStatus,
};
use super::prepared::Replay;

/// The next message a query response must bring: the state query's on the old server, the
/// deserialize query's on the new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expect {
    RowDescription,
    DataRow,
    CommandComplete,
    ReadyForQuery,
}

impl Expect {
    /// The type byte of the expected message.
    pub(super) fn tag(self) -> u8 {
        match self {
            Expect::RowDescription => b'T',
            Expect::DataRow => b'D',
            Expect::CommandComplete => b'C',
            Expect::ReadyForQuery => b'Z',
        }
    }
}

/// What the old server gave for reviving the session elsewhere.
#[derive(Debug)]
pub(super) struct Revival {
    /// The base64 session state, for the deserialize query.
    pub(super) state: String,
    /// The base64 revival token, which lets the new server take the session's user.
    pub(super) token: String,
}

/// What the machine does after the new server's bytes were read.
pub(super) enum Read {
    /// The input is used up; wait for more.
    NeedInput,
    /// Write this query to the new server, then read on.
    Send(Bytes),
    /// The transfer failed; the session stays on the old server.
    Failed(Failure),
    /// The new server is ready for the session: the rest of the input is the session's own.
    Ready,
}

/// A transfer's new server, from [`super::Output::DialNewServer`] until the session moves onto
/// it or the transfer fails.
#[derive(Debug)]
pub(super) struct NewServer {
    /// Kept apart from the handshake, since a frame borrows the framer while the handshake
    /// reads it.
    framer: Framer,
    handshake: Handshake,
}

/// Where the new server's handshake stands, and what it needs and learned on the way.
#[derive(Debug)]
struct Handshake {
    stage: Stage,
    /// The new server's BackendKeyData, once it sent it (or the adapter reported it).
    key: Option<BackendKey>,
    revival: Revival,
    /// The session's prepared statements, to create after the deserialize query; taken when
    /// they are sent.
    replay: Option<Replay>,
    /// How many statements were created.
    replayed: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Waiting for the adapter to connect to the new server.
    Dial,
    /// StartupMessage sent; consuming the new server's greeting up to ReadyForQuery.
    Auth,
    /// The deserialize query is outstanding on the new server.
    Deserialize(Expect),
    /// The session's Parse messages and a Sync are outstanding; this many ParseComplete
    /// messages are still to come.
    Prepare(usize),
}

impl NewServer {
    /// A new server the adapter is asked to dial, which gets `replay` after the deserialize
    /// query.
    pub(super) fn new(revival: Revival, replay: Option<Replay>, limits: FramerLimits) -> NewServer {
        NewServer {
            framer: Framer::new(Side::Backend, limits),
            handshake: Handshake {
                stage: Stage::Dial,
                key: None,
                revival,
                replay,
                replayed: 0,
            },
        }
    }

    /// Whether the adapter reported the connection (dialled or already started).
    pub(super) fn is_connected(&self) -> bool {
        self.handshake.stage != Stage::Dial
    }

    /// Bytes the framer holds, and the prepared statements not yet sent.
    pub(super) fn buffered_len(&self) -> usize {
        let replay = self.handshake.replay.as_ref().map_or(0, |r| r.bytes.len());
        self.framer.buffered_len() + replay
    }

    /// The adapter dialled the server: the StartupMessage to send it, or (inner `Err`) why the
    /// transfer fails instead. An outer `Err` refuses the call and changes nothing.
    pub(super) fn connect(
        &mut self,
        startup_params: &[(String, String)],
        config: &Config,
    ) -> Result<Result<Bytes, Failure>, TransferError> {
        if self.is_connected() {
            return Err(TransferError::NewServerAlreadyConnected);
        }
        // The client's startup parameters plus the token: what DialNewServer announced.
        let token = (
            config.dialect.token_param.as_str(),
            self.handshake.revival.token.as_str(),
        );
        let params = startup_params
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .chain(core::iter::once(token));
        let startup = build_startup_message(params, config.framer.max_startup_len as usize)
            .map_err(Failure::Parse);
        if startup.is_ok() {
            self.handshake.stage = Stage::Auth;
        }
        Ok(startup)
    }

    /// The adapter offered a started connection whose BackendKeyData is `key`: the query that
    /// carries state and token to it, or (inner `Err`) why the transfer fails instead. An outer
    /// `Err` refuses the call and changes nothing.
    pub(super) fn start(
        &mut self,
        key: Option<BackendKey>,
        dialect: &Dialect,
    ) -> Result<Result<Bytes, Failure>, TransferError> {
        if self.is_connected() {
            return Err(TransferError::NewServerAlreadyConnected);
        }
        let revival = &self.handshake.revival;
        let Some(sql) = dialect.started_server_query(&revival.state, &revival.token) else {
            return Err(TransferError::NoStartedServerQuery);
        };
        self.handshake.key = key;
        let query = build_query(&sql).map_err(Failure::Parse);
        if query.is_ok() {
            self.handshake.stage = Stage::Deserialize(Expect::RowDescription);
        }
        Ok(query)
    }

    /// Read the new server's bytes from `data[*pos..]` until the machine has something to do.
    pub(super) fn read(&mut self, config: &Config, data: &[u8], pos: &mut usize) -> Read {
        let small = config.max_small_message_len.saturating_sub(4);
        loop {
            let read = match self.framer.next(data, pos, |_| small) {
                Ok(None) => Some(Read::NeedInput),
                Err(e) => Some(Read::Failed(Failure::Protocol(e))),
                Ok(Some(Frame::Begin { body_len, .. })) => {
                    Some(Read::Failed(Failure::ResponseTooLarge {
                        len: body_len.saturating_add(4),
                    }))
                }
                Ok(Some(Frame::Message { tag, body, .. })) => {
                    self.handshake.message(tag, body, &config.dialect)
                }
                Ok(Some(
                    Frame::Part { .. } | Frame::Startup { .. } | Frame::EncryptionAnswer(_),
                )) => None,
            };
            if let Some(read) = read {
                return read;
            }
        }
    }

    /// The connection, its BackendKeyData and how many prepared statements it was given, for
    /// the session to go on with.
    pub(super) fn into_connection(self) -> (Framer, Option<BackendKey>, usize) {
        (self.framer, self.handshake.key, self.handshake.replayed)
    }
}

impl Handshake {
    /// One whole message from the new server; `None` when there is nothing to do but read on.
    fn message(&mut self, tag: u8, body: &[u8], dialect: &Dialect) -> Option<Read> {
        // Notices and parameter reports (set_config of a reported setting sends one) carry
        // nothing the client lacks: its own session already had those values.
        if matches!(tag, b'N' | b'S' | b'v') {
            return None;
        }
        let failed = |f: Failure| Some(Read::Failed(f));
        match (self.stage, tag) {
            (Stage::Auth, b'R') => match Authentication::parse(body) {
                Ok(Authentication::Ok) => None,
                Ok(other) => failed(Failure::TokenRejected(alloc::format!(
                    "server asked for authentication: {other:?}"
                ))),
                Err(e) => failed(Failure::Parse(e)),
            },
            (Stage::Auth, b'E') => failed(Failure::TokenRejected(error_summary(body))),
            (Stage::Auth, b'K') => match BackendKey::parse(body) {
                Ok(key) => {
                    self.key = Some(key);
                    None
                }
                Err(e) => failed(Failure::Parse(e)),
            },
            (Stage::Auth, b'Z') => {
                let sql = dialect.deserialize_query(&self.revival.state);
                match build_query(&sql) {
                    Ok(query) => {
                        self.stage = Stage::Deserialize(Expect::RowDescription);
                        Some(Read::Send(query))
                    }
                    Err(e) => failed(Failure::Parse(e)),
                }
            }
            (Stage::Deserialize(_), b'E') => failed(Failure::DeserializeError(error_summary(body))),
            (Stage::Deserialize(Expect::RowDescription), b'T') => {
                let column = dialect.deserialize_column.as_str();
                match RowDescription::parse(body) {
                    Ok(d) if d.has_columns(&[column]) => {
                        self.stage = Stage::Deserialize(Expect::DataRow);
                        None
                    }
                    Ok(_) => failed(Failure::MalformedResponse("deserialize column")),
                    Err(e) => failed(Failure::Parse(e)),
                }
            }
            (Stage::Deserialize(Expect::DataRow), b'D') => match DataRow::parse(body) {
                Ok(row) => match row.values[..] {
                    [Some(b"t")] => {
                        self.stage = Stage::Deserialize(Expect::CommandComplete);
                        None
                    }
                    [Some(b"f")] => failed(Failure::DeserializeFalse),
                    _ => failed(Failure::MalformedResponse("deserialize row")),
                },
                Err(e) => failed(Failure::Parse(e)),
            },
            (Stage::Deserialize(Expect::CommandComplete), b'C') => {
                match parse_command_complete(body) {
                    Ok(got) if got == dialect.deserialize_tag => {
                        self.stage = Stage::Deserialize(Expect::ReadyForQuery);
                        None
                    }
                    Ok(got) => failed(Failure::WrongTag(got.to_string())),
                    Err(e) => failed(Failure::Parse(e)),
                }
            }
            (Stage::Deserialize(Expect::ReadyForQuery), b'Z') => {
                match parse_ready_for_query(body) {
                    Ok(TransactionStatus::Idle) => match self.replay.take() {
                        Some(replay) => {
                            self.stage = Stage::Prepare(replay.statements);
                            Some(Read::Send(replay.bytes))
                        }
                        None => Some(Read::Ready),
                    },
                    Ok(status) => failed(Failure::NotIdle(status.byte())),
                    Err(e) => failed(Failure::Parse(e)),
                }
            }
            (Stage::Prepare(_), b'E') => failed(Failure::PrepareFailed(error_summary(body))),
            (Stage::Prepare(left @ 1..), b'1') => {
                self.stage = Stage::Prepare(left - 1);
                self.replayed += 1;
                None
            }
            (Stage::Prepare(0), b'Z') => match parse_ready_for_query(body) {
                Ok(TransactionStatus::Idle) => Some(Read::Ready),
                Ok(status) => failed(Failure::NotIdle(status.byte())),
                Err(e) => failed(Failure::Parse(e)),
            },
            (stage, got) => failed(Failure::UnexpectedMessage {
                expected: stage.expected_tag(),
                got,
            }),
        }
    }
}

impl Stage {
    /// The type byte the new server's next message should have.
    fn expected_tag(self) -> u8 {
        match self {
            Stage::Dial | Stage::Auth => b'Z',
            Stage::Deserialize(expect) => expect.tag(),
            Stage::Prepare(0) => b'Z',
            Stage::Prepare(_) => b'1',
        }
    }
}
