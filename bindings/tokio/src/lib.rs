//! weir's DRPC session over real IO with tokio.
//!
//! A [`Client`] or [`Server`] drives one [`weir::mux::session::Session`] over any
//! `AsyncRead + AsyncWrite` transport (TCP, a Unix socket, an in-memory duplex) in a single
//! task: the task owns the session and the transport, and the handles talk to it over bounded
//! channels. Frames go out in batches (many frames per write), and a stream's `send` waits
//! while its send queue is full, so a slow receiver slows the sender instead of growing a
//! buffer. Both session modes work: [`Mode::Compat`](weir::mux::session::Mode::Compat) speaks
//! to a stock Go DRPC peer, [`Mode::Mux`](weir::mux::session::Mode::Mux) runs many streams
//! at once with credit-based flow control.
//!
//! ```
//! use bytes::Bytes;
//! use weir::mux::session::Config;
//! use weir_tokio::{Client, Router, Server, Status};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let (client_io, server_io) = tokio::io::duplex(64 << 10);
//!
//! let router = Router::new()
//!     .unary("/echo.Echo/Unary", |request| async move { Ok(request.message) })
//!     .unary("/echo.Echo/Fail", |_| async { Err::<Bytes, _>(Status::new(7, "boom")) });
//! tokio::spawn(async move { router.serve(Server::new(server_io, Config::mux())).await });
//!
//! let client = Client::connect(client_io, Config::mux());
//! assert_eq!(client.call("/echo.Echo/Unary", "hello").await?, "hello");
//!
//! let error = client.call("/echo.Echo/Fail", "x").await.unwrap_err();
//! assert_eq!(error.code(), Some(7));
//!
//! let error = client.call("/echo.Echo/Nope", "x").await.unwrap_err();
//! assert_eq!(error.to_string(), r#"remote error (code 0): protocol error: unknown rpc: "/echo.Echo/Nope""#);
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

mod accept;
mod budget;
mod client;
mod driver;
mod error;
mod handle;
mod incoming;
pub mod proxy;
mod server;

pub use budget::ServeMetrics;
pub use client::Client;
pub use error::Error;
pub use handle::Stream;
pub use incoming::IncomingStream;
pub use server::{Request, Router, ServeConfig, Server, Status};
