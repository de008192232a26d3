//! A stream the peer opened, as the connection task hands it to the server.

use std::ops::{Deref, DerefMut};

use weir::mux::wire::Metadata;

use crate::handle::Stream;

/// A stream the peer opened: the rpc it calls, its metadata, and the [`Stream`] itself
/// (through `Deref`).
#[derive(Debug)]
pub struct IncomingStream {
    rpc: String,
    metadata: Metadata,
    stream: Stream,
}

impl IncomingStream {
    pub(crate) fn new(rpc: String, metadata: Metadata, stream: Stream) -> IncomingStream {
        IncomingStream {
            rpc,
            metadata,
            stream,
        }
    }

    /// The rpc name, as the peer sent it.
    pub fn rpc(&self) -> &str {
        &self.rpc
    }

    /// The metadata the peer sent with the call (empty if none).
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The stream alone.
    pub fn into_stream(self) -> Stream {
        self.stream
    }

    /// The rpc name, the metadata and the stream, taken apart.
    pub(crate) fn into_parts(self) -> (String, Metadata, Stream) {
        (self.rpc, self.metadata, self.stream)
    }
}

impl Deref for IncomingStream {
    type Target = Stream;
    fn deref(&self) -> &Stream {
        &self.stream
    }
}

impl DerefMut for IncomingStream {
    fn deref_mut(&mut self) -> &mut Stream {
        &mut self.stream
    }
}
