//! The client side: open streams and call rpcs.

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use weir::mux::session::{Config, Metrics, Role};
use weir::mux::wire::Metadata;

use crate::driver;
use crate::handle::{Handle, Stream};
use crate::Error;

/// The client end of a connection. Cheap to clone; every clone opens streams on the same
/// connection. The connection ends when the client and all its streams are dropped.
#[derive(Clone, Debug)]
pub struct Client {
    handle: Handle,
}

impl Client {
    /// Start a client session on `io` (a TCP stream, a Unix socket, an in-memory duplex...).
    /// The connection runs in a task of its own, so this must be called within a tokio runtime.
    pub fn connect<IO>(io: IO, config: Config) -> Client
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (handle, _) = driver::spawn(io, Role::Client, config, None);
        Client { handle }
    }

    /// Open a stream calling `rpc`, sending `metadata` ahead of it if not empty. In compat mode
    /// this waits for the previous stream to finish; in mux mode, for a free stream slot.
    pub async fn open(&self, rpc: &str, metadata: &Metadata) -> Result<Stream, Error> {
        self.handle
            .open(Bytes::copy_from_slice(rpc.as_bytes()), metadata.clone())
            .await
    }

    /// The connection's counters so far (see [`Metrics`]).
    pub async fn metrics(&self) -> Result<Metrics, Error> {
        self.handle.metrics().await
    }

    /// A unary call, as Go DRPC's `Invoke`: open, send `request`, close the send side, read one
    /// reply, then close the stream.
    pub async fn call(&self, rpc: &str, request: impl Into<Bytes>) -> Result<Bytes, Error> {
        self.call_with_metadata(rpc, &Metadata::new(), request)
            .await
    }

    /// [`Client::call`] with `metadata` sent ahead of the request.
    pub async fn call_with_metadata(
        &self,
        rpc: &str,
        metadata: &Metadata,
        request: impl Into<Bytes>,
    ) -> Result<Bytes, Error> {
        // One request to the connection task does it all, as `open`, `send`, `close_send`,
        // `recv` and `close` would one after the other.
        self.handle
            .call(
                Bytes::copy_from_slice(rpc.as_bytes()),
                metadata.clone(),
                request.into(),
            )
            .await
    }
}
