//! Frame and packet kinds.

use core::fmt;

/// The kind of a frame or packet: six bits on the wire.
///
/// A plain number, like Go's `drpcwire.Kind`, so that unknown kinds survive decoding as data: the
/// codec passes them through and the session decides (an unknown kind with the control bit set is
/// ignored, without it the connection fails).
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub struct Kind(pub u8);

impl Kind {
    /// Starts a stream; data is the rpc name.
    pub const INVOKE: Kind = Kind(1);
    /// An application message.
    pub const MESSAGE: Kind = Kind(2);
    /// The stream failed; data is an 8-byte big-endian code, then the message text.
    pub const ERROR: Kind = Kind(3);
    /// The sender gives up on the stream (sent with the control bit set).
    pub const CANCEL: Kind = Kind(4);
    /// The sender is done with the stream in both directions.
    pub const CLOSE: Kind = Kind(5);
    /// The sender will send no more messages on the stream.
    pub const CLOSE_SEND: Kind = Kind(6);
    /// Metadata for the Invoke that follows; data is protobuf-encoded key/value entries.
    pub const INVOKE_METADATA: Kind = Kind(7);
    /// Receive credit (sent with the control bit set); data is a varint byte count, stream 0 means
    /// the whole connection. An extension of the cockroachdb fork of DRPC.
    pub const WINDOW_UPDATE: Kind = Kind(8);
    /// (weir, mux mode only) Asks the peer for a [`Kind::PONG`] with the same data, to time a
    /// round trip; sent with the control bit set on stream 0, data is a varint token. A peer
    /// that does not know it ignores it, as any control packet of an unknown kind.
    pub const PING: Kind = Kind(9);
    /// (weir, mux mode only) The answer to a [`Kind::PING`], carrying its token.
    pub const PONG: Kind = Kind(10);

    /// The name of a known kind, or `None`. weir's own kinds ([`Kind::PING`], [`Kind::PONG`])
    /// have none, so that errors read as Go's do (`Kind(9)`).
    pub const fn name(self) -> Option<&'static str> {
        Some(match self {
            Kind::INVOKE => "Invoke",
            Kind::MESSAGE => "Message",
            Kind::ERROR => "Error",
            Kind::CANCEL => "Cancel",
            Kind::CLOSE => "Close",
            Kind::CLOSE_SEND => "CloseSend",
            Kind::INVOKE_METADATA => "InvokeMetadata",
            Kind::WINDOW_UPDATE => "WindowUpdate",
            _ => return None,
        })
    }
}

impl fmt::Display for Kind {
    /// The name, or `Kind(N)` for an unknown kind, as Go prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "Kind({})", self.0),
        }
    }
}

impl fmt::Debug for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
