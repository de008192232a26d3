//! Limits and timing of the migration machine.

use core::time::Duration;

use super::dialect::Dialect;
use super::frame::FramerLimits;

/// How a [`super::Machine`] behaves; every buffer it keeps is bounded by a field here.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Config {
    /// What the servers are asked. Default [`Dialect::cockroachdb`].
    pub dialect: Dialect,
    /// The whole transfer, waiting for a safe point included, must finish within this.
    /// Default 15 s (CockroachDB's).
    pub transfer_timeout: Duration,
    /// Client bytes held while a transfer runs. Past it, `handle_client_input` refuses input with
    /// [`super::TransferError::HeldClientBytesFull`]. Default 1 MiB.
    pub max_held_client_bytes: usize,
    /// Old-server bytes held while the new server is being set up (late notices); they reach
    /// the client if the transfer fails and are discarded (and counted) if it succeeds. Past
    /// the limit the transfer fails, recoverably. Default 64 KiB.
    pub max_held_server_bytes: usize,
    /// Largest state-query DataRow, counting its length field. Default 16 MiB.
    pub max_transfer_response_len: u32,
    /// Largest other message the machine reads whole during a transfer (RowDescription,
    /// CommandComplete, ErrorResponse, ParameterStatus ...). Default 4 KiB.
    pub max_small_message_len: u32,
    /// Framing limits for every stream.
    pub framer: FramerLimits,
    /// Hand the old server back instead of closing it: a successful transfer whose old server
    /// sent nothing after answering the state query (so it is idle, at a message boundary)
    /// ends with [`super::Output::ReleaseOldServer`] instead of a Terminate and
    /// [`super::Output::CloseOldServer`], and the adapter may reset that connection and move a
    /// later session onto it. Default `false`.
    pub reuse_old_server: bool,
    /// What the named prepared statements the machine keeps for a move may take (with a dialect
    /// whose [`Dialect::replay_prepared_statements`] is set): every Parse message and every
    /// Parse, Close or `DEALLOCATE` waiting for its answer, plus 64 bytes each. A session past
    /// it keeps running on its server, and its moves fail, recoverably, with
    /// [`super::Failure::PreparedStatementsOverLimit`] until `DISCARD ALL` or
    /// `DEALLOCATE ALL`. Default 1 MiB.
    pub max_prepared_statement_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            dialect: Dialect::default(),
            transfer_timeout: Duration::from_secs(15),
            max_held_client_bytes: 1 << 20,
            max_held_server_bytes: 64 << 10,
            max_transfer_response_len: 16 << 20,
            max_small_message_len: 4 << 10,
            framer: FramerLimits::default(),
            reuse_old_server: false,
            max_prepared_statement_bytes: 1 << 20,
        }
    }
}

impl Config {
    /// The default configuration with `dialect`.
    pub fn with_dialect(dialect: Dialect) -> Config {
        Config {
            dialect,
            ..Config::default()
        }
    }
}
