//! How a session is set up.

use crate::mux::wire::SplitSize;

/// Which end of the connection a session is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Role {
    /// Opens streams (numbered 1, 2, 3, ...) and calls rpcs.
    Client,
    /// Accepts streams and answers them.
    Server,
}

/// The rules a session plays by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Mode {
    /// storj/drpc semantics: one active stream at a time, ids rising across the connection.
    /// Interoperates byte for byte with a stock Go DRPC peer.
    #[default]
    Compat,
}

/// Limits and settings of a session, with the defaults of Go DRPC where it has them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Config {
    /// The rules (default [`Mode::Compat`]).
    pub mode: Mode,
    /// The largest frame data this session writes (default 64 KiB, as Go).
    pub split_size: SplitSize,
    /// The largest packet accepted from the peer (default 4 MiB, as Go). A bigger one fails the
    /// connection.
    pub max_packet_len: usize,
    /// Message bytes received on one stream and not yet read by the application (default 4 MiB).
    /// Past it the connection fails: Go's reader would block instead, which a sans-IO core
    /// cannot do without holding the whole connection's input.
    pub max_unread_per_stream: usize,
    /// The largest metadata accepted with an Invoke (default 64 KiB).
    pub max_metadata_len: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            mode: Mode::Compat,
            split_size: SplitSize::DEFAULT,
            max_packet_len: 4 << 20,
            max_unread_per_stream: 4 << 20,
            max_metadata_len: 64 << 10,
        }
    }
}
