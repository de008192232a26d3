//! Moving a live PostgreSQL-wire session from one server to another without the client noticing.
//!
//! ```
//! use bytes::Bytes;
//! use weir::time::Instant;
//! use weir::transfer::message::build_startup_message;
//! use weir::transfer::{Config, Machine, Output, Peer, ServerId, Transmit};
//!
//! let now = Instant::from_secs(1);
//! // The caller names every server connection; the first one is 0.
//! let mut m = Machine::new(Config::default(), ServerId(0));
//! let startup = build_startup_message([("user", "alice")], 10_000).unwrap();
//! m.handle_client_input(now, startup).unwrap();
//! // AuthenticationOk, BackendKeyData, ReadyForQuery (idle).
//! let greeting = b"R\0\0\0\x08\0\0\0\0K\0\0\0\x0c\0\0\0\x07\0\0\0\x2aZ\0\0\0\x05I";
//! m.handle_server_input(now, ServerId(0), Bytes::from_static(greeting)).unwrap();
//! while m.poll_output().is_some() {}
//!
//! // Move to a server the caller will call 1. The session is idle, so the state query goes
//! // out at once, to server 0.
//! m.request_transfer(now, "key1", ServerId(1)).unwrap();
//! match m.poll_output() {
//!     Some(Output::Transmit(Transmit { to: Peer::Server(ServerId(0)), data, .. })) => {
//!         assert_eq!(&data[5..], b"SHOW TRANSFER STATE WITH 'key1'\0");
//!     }
//!     other => panic!("unexpected {other:?}"),
//! }
//! // Client bytes sent now are held until the transfer ends.
//! m.handle_client_input(now, Bytes::from_static(b"Q\0\0\0\x0dSELECT 1\0")).unwrap();
//! assert_eq!(m.poll_output(), None);
//! assert_eq!(m.poll_timeout(), Some(Instant::from_secs(16)));
//! assert_eq!(m.cancel_keys().client.map(|k| k.process_id), Some(7));
//! ```
//!
//! # The protocol
//!
//! The [`Machine`] relays bytes between a client and its server, passing them through unchanged
//! and in pieces (a 100 MB DataRow never sits in memory whole) while a [`frame::Framer`] per
//! direction tracks message boundaries. On [`Machine::request_transfer`] it follows
//! CockroachDB's sqlproxy protocol, with weir's changes marked *weir*:
//!
//! 1. Wait for a safe point (*weir*: wait up to the deadline instead of refusing at once): both
//!    streams at a message boundary, no Query, FunctionCall or Sync without its ReadyForQuery
//!    (*weir*: counted, so pipelined clients are safe), no extended-protocol message waiting for
//!    its Sync, no COPY running, and the last ReadyForQuery said idle (*weir*: `I`, since a
//!    failed transaction makes the state query itself fail).
//! 2. Hold client bytes from here on (bounded by [`Config::max_held_client_bytes`]); they are
//!    relayed once, in order, to whichever server the session ends on.
//! 3. Send the [`Dialect`]'s state query with the caller's key. Relay server messages to the
//!    client until a RowDescription of exactly `error, session_state_base64,
//!    session_revival_token_base64, transfer_key`, then require a DataRow with the key, the
//!    expected CommandComplete tag and ReadyForQuery. An ErrorResponse here is ambiguous, so
//!    fatal; so is a deadline passing (the non-recoverable window).
//! 4. A non-null `error` column is recoverable: the session resumes on the old server.
//! 5. [`Output::DialNewServer`] with the client's startup parameters plus the revival token;
//!    consume the new server's greeting (keeping its BackendKeyData) up to ReadyForQuery.
//!    (*weir*: or take a server connection that is already started, idle and reset, and carry
//!    the token in the deserialize query instead, where the dialect has
//!    [`Dialect::started_server_query_template`].)
//! 6. Send the deserialize query; require its single column, `t`, its tag and an idle
//!    ReadyForQuery.
//! 7. (*weir*, with [`Dialect::replay_prepared_statements`]) Send the client's named prepared
//!    statements, its own Parse messages, then a Sync; require a ParseComplete each and an idle
//!    ReadyForQuery. None of it reaches the client; an ErrorResponse fails the transfer,
//!    recoverably ([`Failure::PrepareFailed`]).
//! 8. Success closes the old server (*weir*: or, with [`Config::reuse_old_server`], hands it
//!    back for reuse when it is idle at a message boundary); a recoverable failure closes the
//!    new one; a fatal one closes the client. Every transfer ends in one [`Output::Outcome`].
//!
//! # Prepared statements
//!
//! Named statements made with the extended protocol live in the server's session, and the
//! client goes on using them after a move. CockroachDB's session state carries them; stock
//! PostgreSQL's emulation cannot (SQL `PREPARE` cannot make a `BEGIN` or a `SET`, which drivers
//! and pgbench `-M prepared` parse). So with [`Dialect::postgres`] the machine keeps them
//! itself, as PgBouncer does in transaction mode: as the client's messages pass, it keeps each
//! named Parse (name, query, parameter types) once the server answered ParseComplete, forgets
//! one on a confirmed Close, and forgets all on a CommandComplete of `DISCARD ALL` or
//! `DEALLOCATE ALL`. A `DEALLOCATE name` is followed when it is the whole of a simple Query
//! (its CommandComplete is then known to be its own); a `DEALLOCATE` the machine cannot
//! attribute while it keeps statements, an answer that matches no Parse or Close, or kept
//! bytes past [`Config::max_prepared_statement_bytes`] make it drop what it kept and refuse
//! every move, recoverably and before asking any server anything
//! ([`Failure::PreparedStatementsUnknown`], [`Failure::PreparedStatementsOverLimit`]), until
//! the server reports `DISCARD ALL` or `DEALLOCATE ALL`. The unnamed statement and portals are
//! not carried: the safe point is idle, and drivers parse the unnamed statement before each
//! use.
//!
//! [`Machine::cancel_keys`] gives the key the client knows and the key of the server the
//! session is on, so an adapter can route a CancelRequest after a move (a TODO in CockroachDB).
//!
//! # Driving it
//!
//! An adapter owns the sockets (plaintext: it terminates TLS itself). A [`frontend::Frontend`]
//! reads a new client's first packet (answering encryption requests `N`) and hands on its
//! StartupMessage or CancelRequest. Every server connection has a [`ServerId`] the caller
//! picks: one for the first server in [`Machine::new`], one for each transfer's new server in
//! [`Machine::request_transfer`]. Outputs name the server they are about, and bytes from any
//! server go to [`Machine::handle_server_input`] with its id. After every input the adapter
//! drains [`Machine::poll_output`]:
//!
//! - [`Output::Transmit`]: write the bytes to that peer, in order.
//! - [`Output::DialNewServer`]: connect, then call [`Machine::handle_new_server_connected`]
//!   (or [`Machine::handle_new_server_failed`]); feed what it sends to
//!   [`Machine::handle_server_input`]. Or offer a started connection with the same startup
//!   parameters with [`Machine::handle_new_server_started`].
//! - [`Output::CloseOldServer`]: close that server connection; the session is on the new one.
//!   [`Output::ReleaseOldServer`] is the same, except that the old connection may be reset
//!   with a [`reset::Reset`] and kept for a later transfer.
//! - [`Output::CloseNewServer`]: close that connection; the session stays where it was.
//! - [`Output::Closed`]: the session is over, close every connection. It is the last output.
//! - [`Output::Outcome`]: log it; the counters are in [`Machine::metrics`].
//!
//! Then it arms a timer for [`Machine::poll_timeout`] and calls [`Machine::handle_timeout`]
//! when it fires. An idle session has no deadline at all.
//!
//! Every machine here refuses a call only when the call changed nothing, with an error whose
//! [`Kind`](crate::error::Kind) says why ([`TransferError`], [`frontend::FrontendError`],
//! [`reset::ResetError`]); a peer that breaks the protocol ends the machine with one final
//! output instead ([`Output::Closed`], [`frontend::FrontendOutput::Closed`],
//! [`reset::ResetOutput::Failed`]).

mod config;
mod dialect;
mod error;
pub mod frame;
pub mod frontend;
mod machine;
pub mod message;
mod metrics;
mod migration;
mod new_server;
mod output;
mod prepared;
pub mod reset;
mod safepoint;

pub use config::Config;
pub use dialect::{
    Dialect, KEY_PLACEHOLDER, POSTGRES_EMULATION_SQL, STATE_COLUMNS, STATE_PLACEHOLDER,
    TOKEN_PLACEHOLDER,
};
pub use error::{CloseReason, Failure, FrameError, ParseError, TransferError};
pub use machine::{Machine, MAX_TRANSFER_KEY_LEN};
pub use metrics::Metrics;
pub use output::{
    CancelKeys, Output, Peer, ServerId, Source, TransferOutcome, TransferResult, Transmit,
};
pub use safepoint::SafePoint;
