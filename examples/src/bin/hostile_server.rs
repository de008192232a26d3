//! The DRPC echo server `make hostile` attacks: weir-tokio's `Router::serve_tcp_with` on a
//! loopback port, with the default session configuration of the mode chosen and the limits the
//! flags override. Prints `listening on ADDR` once it accepts connections.

use std::time::Duration;

use tokio::net::TcpListener;
use weir::mux::session::Config;
use weir_tokio::{Router, ServeConfig};

const USAGE: &str = "\
usage: hostile_server [options]
  --mode mux|compat          the session rules (default mux)
  --handshake-timeout-ms N   close a connection without a whole frame after N ms
  --idle-timeout-ms N        close a connection without a stream after N ms
  --max-connections N        connections served at once at most";

fn main() {
    let serve = match parse(std::env::args().skip(1)) {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("error: {message}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        println!("listening on {}", listener.local_addr().expect("bound"));
        router().serve_tcp_with(listener, serve).await;
    });
}

fn router() -> Router {
    Router::new()
        .unary(
            "/echo.Echo/Unary",
            |request| async move { Ok(request.message) },
        )
        .streaming("/echo.Echo/Bidi", |mut stream| async move {
            while let Some(message) = stream.recv().await? {
                if stream.send(message).await.is_err() {
                    break;
                }
            }
            Ok::<(), weir_tokio::Status>(())
        })
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<ServeConfig, String> {
    let mut mode = "mux".to_owned();
    let (mut handshake, mut idle, mut max_connections) = (None, None, None);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| format!("{flag} takes a number, not {value:?}"))
        };
        match flag.as_str() {
            "--mode" => mode = value.clone(),
            "--handshake-timeout-ms" => handshake = Some(Duration::from_millis(number()?)),
            "--idle-timeout-ms" => idle = Some(Duration::from_millis(number()?)),
            "--max-connections" => max_connections = Some(number()? as usize),
            other => return Err(format!("unknown flag {other:?}")),
        }
    }
    let mut session = match mode.as_str() {
        "mux" => Config::mux(),
        "compat" => Config::default(),
        other => return Err(format!("--mode must be mux or compat, not {other:?}")),
    };
    session.handshake_timeout = handshake.or(session.handshake_timeout);
    session.idle_timeout = idle.or(session.idle_timeout);
    let mut serve = ServeConfig::new(session);
    serve.max_connections = max_connections.unwrap_or(serve.max_connections);
    Ok(serve)
}
