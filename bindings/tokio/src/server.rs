//! The server side: accept streams, or let a [`Router`] answer them.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use weir::mux::session::{Config, Metrics, Role};
use weir::mux::wire::Metadata;

use crate::budget::{Account, Gauge, ServeMetrics};
use crate::driver;
use crate::handle::Handle;
use crate::incoming::IncomingStream;

/// The server end of a connection. The connection ends when the server and all the streams
/// it accepted are dropped.
#[derive(Debug)]
pub struct Server {
    // Keeps the connection task alive while the server exists.
    handle: Handle,
    incoming: mpsc::Receiver<IncomingStream>,
}

impl Server {
    /// Start a server session on `io`. The connection runs in a task of its own, so this must
    /// be called within a tokio runtime.
    pub fn new<IO>(io: IO, config: Config) -> Server
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        Server::spawn(io, config, None)
    }

    fn spawn<IO>(io: IO, config: Config, budget: Option<Account>) -> Server
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (handle, incoming) = driver::spawn(io, Role::Server, config, budget);
        let incoming = incoming.unwrap_or_else(|| mpsc::channel(1).1);
        Server { handle, incoming }
    }

    /// The connection's counters so far (see [`Metrics`]): among them the most bytes that
    /// waited for a peer that reads slowly, or not at all.
    pub async fn metrics(&self) -> Result<Metrics, crate::Error> {
        self.handle.metrics().await
    }

    /// The next stream the peer opened, or `None` once the peer has closed the connection (or
    /// it failed).
    pub async fn accept(&mut self) -> Option<IncomingStream> {
        self.incoming.recv().await
    }
}

/// How [`Router::serve_tcp_with`] serves a listener.
#[derive(Debug, Clone, Copy)]
pub struct ServeConfig {
    /// Every connection's session configuration.
    pub session: Config,
    /// Connections served at once at most; one accepted past it is closed at once. Each holds
    /// a file descriptor, a task and its session's buffers, so keep it under the process's
    /// `RLIMIT_NOFILE`. Default 10,000.
    pub max_connections: usize,
    /// Bytes received and held at once across the connections (partial frames, unfinished
    /// packets, messages their handlers have not read), whatever each connection's own limits
    /// allow. Over it, a connection accepted is closed at once, and the connections stop
    /// reading until the total falls under it again, except that each may still read up to
    /// 64 KiB of its own (small calls are answered) and one at a time whose handler waits
    /// for a message it holds in part reads on until it has it (the messages the budget's
    /// holders wait for complete one by one rather than none ever). The total may pass it by
    /// that much. Counted across every listener the same [`Router`] (or a clone) serves;
    /// see [`Router::serve_metrics`]. Default 256 MiB.
    pub max_buffered_bytes: usize,
}

impl ServeConfig {
    /// `session` for every connection, and the default limits.
    pub fn new(session: Config) -> ServeConfig {
        ServeConfig {
            session,
            max_connections: 10_000,
            max_buffered_bytes: 256 << 20,
        }
    }
}

/// An error a handler returns: the peer receives its code and message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// The error code (DRPC's `errs` code; 0 for none).
    pub code: u64,
    /// The message.
    pub message: String,
}

impl Status {
    /// An error with `code` and `message`.
    pub fn new(code: u64, message: impl Into<String>) -> Status {
        Status {
            code,
            message: message.into(),
        }
    }
}

impl From<crate::Error> for Status {
    fn from(e: crate::Error) -> Status {
        match e {
            crate::Error::Remote { code, message } => Status { code, message },
            other => Status::new(0, other.to_string()),
        }
    }
}

/// What a unary handler receives.
#[derive(Clone, Debug)]
pub struct Request {
    /// The rpc called.
    pub rpc: String,
    /// The metadata sent with the call.
    pub metadata: Metadata,
    /// The request message.
    pub message: Bytes,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type UnaryFn = dyn Fn(Request) -> BoxFuture<Result<Bytes, Status>> + Send + Sync;
type StreamingFn = dyn Fn(IncomingStream) -> BoxFuture<Result<(), Status>> + Send + Sync;

#[derive(Clone)]
enum Route {
    Unary(Arc<UnaryFn>),
    Streaming(Arc<StreamingFn>),
}

/// Maps rpc names to async handlers and serves connections with them. An rpc with no handler
/// gets the Error reply Go DRPC sends: code 0, `protocol error: unknown rpc: "<rpc>"`.
#[derive(Clone, Default)]
pub struct Router {
    routes: Arc<HashMap<String, Route>>,
    /// What the connections it serves over TCP buffer, shared by its clones.
    gauge: Arc<Gauge>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&String> = self.routes.keys().collect();
        names.sort();
        f.debug_struct("Router").field("rpcs", &names).finish()
    }
}

impl Router {
    /// A router with no rpcs.
    pub fn new() -> Router {
        Router::default()
    }

    fn route(mut self, rpc: &str, route: Route) -> Router {
        Arc::make_mut(&mut self.routes).insert(rpc.to_owned(), route);
        self
    }

    /// Answer `rpc` with `handler`: one request in, one reply (or a [`Status`]) out.
    pub fn unary<F, Fut>(self, rpc: &str, handler: F) -> Router
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Bytes, Status>> + Send + 'static,
    {
        self.route(
            rpc,
            Route::Unary(Arc::new(move |request| Box::pin(handler(request)))),
        )
    }

    /// Answer `rpc` with `handler`, which gets the stream to read and write as it likes.
    /// When it returns, the router closes the stream's send side (or sends its [`Status`]).
    pub fn streaming<F, Fut>(self, rpc: &str, handler: F) -> Router
    where
        F: Fn(IncomingStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), Status>> + Send + 'static,
    {
        self.route(
            rpc,
            Route::Streaming(Arc::new(move |stream| Box::pin(handler(stream)))),
        )
    }

    /// What the connections this router (or a clone) serves over TCP hold now, the most they
    /// held, and the connections refused for it (see [`ServeConfig::max_buffered_bytes`]).
    pub fn serve_metrics(&self) -> ServeMetrics {
        self.gauge.metrics()
    }

    /// Answer every stream of `server`, each in a task of its own, until the peer closes the
    /// connection and every handler has returned.
    pub async fn serve(&self, mut server: Server) {
        let mut handlers = JoinSet::new();
        while let Some(incoming) = server.accept().await {
            handlers.spawn(self.clone().answer(incoming));
            // Reap finished handlers as we go, so the set stays small.
            while handlers.try_join_next().is_some() {}
        }
        drop(server);
        while handlers.join_next().await.is_some() {}
    }

    /// Serve every connection `listener` accepts, each in a task of its own, with `config`
    /// and the other defaults of [`ServeConfig`]. See [`Router::serve_tcp_with`].
    pub async fn serve_tcp(&self, listener: tokio::net::TcpListener, config: Config) {
        self.serve_tcp_with(listener, ServeConfig::new(config))
            .await
    }

    /// Serve every connection `listener` accepts, each in a task of its own, until this future
    /// is dropped; the connections' tasks outlive it.
    ///
    /// An accept error does not stop the server: it is logged, and the next accept waits a
    /// moment when the error is not one connection's own (out of file descriptors, say). A
    /// connection past [`ServeConfig::max_connections`] is closed as soon as it is accepted,
    /// with a warning in the log, and so is one accepted while the connections hold more than
    /// [`ServeConfig::max_buffered_bytes`].
    pub async fn serve_tcp_with(&self, listener: tokio::net::TcpListener, config: ServeConfig) {
        let open = Arc::new(Semaphore::new(config.max_connections));
        loop {
            let (socket, peer) = crate::accept::accept(&listener).await;
            let Ok(permit) = open.clone().try_acquire_owned() else {
                tracing::warn!(
                    %peer,
                    "connection closed: {} connections are open already",
                    config.max_connections
                );
                continue;
            };
            if !self.gauge.admits(config.max_buffered_bytes as u64) {
                tracing::warn!(
                    %peer,
                    "connection closed: the connections hold more than {} bytes",
                    config.max_buffered_bytes
                );
                continue;
            }
            if let Err(e) = socket.set_nodelay(true) {
                tracing::debug!(%peer, "connection closed: {e}");
                continue;
            }
            let router = self.clone();
            let session = config.session;
            let account = Account::new(self.gauge.clone(), config.max_buffered_bytes as u64);
            tokio::spawn(async move {
                router
                    .serve(Server::spawn(socket, session, Some(account)))
                    .await;
                drop(permit);
            });
        }
    }

    async fn answer(self, mut incoming: IncomingStream) {
        let Some(route) = self.routes.get(incoming.rpc()).cloned() else {
            let message = format!("protocol error: unknown rpc: {:?}", incoming.rpc());
            let _ = incoming.send_error(0, message).await;
            return;
        };
        let mut stream = incoming.share();
        let result = match route {
            Route::Unary(handler) => match incoming.recv().await {
                Ok(Some(message)) => {
                    let (rpc, metadata, incoming) = incoming.into_parts();
                    let request = Request {
                        rpc,
                        metadata,
                        message,
                    };
                    drop(incoming);
                    match handler(request).await {
                        // The reply and the end of the stream, in one request to the task.
                        Ok(reply) => match stream.send_last(reply).await {
                            Ok(()) => return,
                            Err(e) => Err(Status::from(e)),
                        },
                        Err(status) => Err(status),
                    }
                }
                Ok(None) => Err(Status::new(0, "EOF")),
                Err(e) => Err(e.into()),
            },
            Route::Streaming(handler) => handler(incoming).await,
        };
        // The stream may be over already (the peer canceled it, say): nothing to tell then.
        let _ = match result {
            Ok(()) => stream.close_send().await,
            Err(status) => stream.send_error(status.code, status.message).await,
        };
    }
}
