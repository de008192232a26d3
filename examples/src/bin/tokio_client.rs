//! A weir-tokio client that runs a fixed set of calls against a DRPC echo server, for the
//! bindings' interop tests (`make node` runs it against the `weir/net` server of
//! `bindings/node`). Prints `PASS NAME` per case, or `FAIL NAME: why` and exits 1.
//!
//! The server answers `/echo.Echo/Unary` with the request, `/echo.Echo/Bidi` with each message,
//! `/echo.Echo/Metadata` with the metadata as sorted `key=value` lines, and `/echo.Echo/Fail`
//! with the error code 42 and `boom: ` followed by the request.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpStream;
use weir::mux::session::Config;
use weir::mux::wire::Metadata;
use weir_tokio::{Client, Error};

const USAGE: &str = "usage: tokio_client --addr HOST:PORT [--mode mux|compat]";

fn main() {
    let (addr, mode) = match parse(std::env::args().skip(1)) {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("error: {message}\n{USAGE}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let failed = runtime.block_on(async move {
        let tcp = match TcpStream::connect(&addr).await {
            Ok(tcp) => tcp,
            Err(e) => {
                println!("FAIL connect: {e}");
                return 1;
            }
        };
        tcp.set_nodelay(true).expect("nodelay on a TCP stream");
        let config = if mode == "mux" {
            Config::mux()
        } else {
            Config::default()
        };
        run_all(&Client::connect(tcp, config)).await
    });
    std::process::exit(i32::from(failed > 0));
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<(String, String), String> {
    let (mut addr, mut mode) = (None, "compat".to_owned());
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--addr" => addr = Some(value),
            "--mode" if value == "mux" || value == "compat" => mode = value,
            _ => return Err(format!("unknown flag or value: {flag} {value}")),
        }
    }
    Ok((addr.ok_or("--addr is required")?, mode))
}

/// Runs every case; returns how many failed.
async fn run_all(client: &Client) -> usize {
    let mut failed = 0;
    failed += report("unary", unary(client)).await;
    failed += report("error", error(client)).await;
    failed += report("unknown", unknown(client)).await;
    failed += report("metadata", metadata(client)).await;
    failed += report("bidi", bidi(client)).await;
    failed += report("large-1m", large(client)).await;
    failed += report("concurrent", concurrent(client)).await;
    failed
}

async fn report(name: &str, case: impl Future<Output = Result<(), String>>) -> usize {
    match tokio::time::timeout(Duration::from_secs(20), case).await {
        Ok(Ok(())) => {
            println!("PASS {name}");
            0
        }
        Ok(Err(why)) => {
            println!("FAIL {name}: {why}");
            1
        }
        Err(_) => {
            println!("FAIL {name}: no answer within 20 s");
            1
        }
    }
}

fn expect(got: &[u8], want: &[u8]) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!(
            "got {} bytes ({:?}...), want {} bytes",
            got.len(),
            String::from_utf8_lossy(&got[..got.len().min(32)]),
            want.len()
        ))
    }
}

async fn echo(client: &Client, message: Bytes) -> Result<(), String> {
    let reply = client
        .call("/echo.Echo/Unary", message.clone())
        .await
        .map_err(|e| e.to_string())?;
    expect(&reply, &message)
}

async fn unary(client: &Client) -> Result<(), String> {
    echo(client, Bytes::from_static(b"hello from tokio")).await?;
    echo(client, Bytes::new()).await
}

fn remote(result: Result<Bytes, Error>, code: u64, message: &str) -> Result<(), String> {
    match result {
        Err(Error::Remote {
            code: c,
            message: m,
        }) if c == code && m == message => Ok(()),
        other => Err(format!(
            "got {other:?}, want the remote error {code}: {message}"
        )),
    }
}

async fn error(client: &Client) -> Result<(), String> {
    let result = client.call("/echo.Echo/Fail", &b"tokio"[..]).await;
    remote(result, 42, "boom: tokio")?;
    echo(client, Bytes::from_static(b"after error")).await
}

async fn unknown(client: &Client) -> Result<(), String> {
    let result = client.call("/echo.Echo/Nope", &b"x"[..]).await;
    remote(
        result,
        0,
        r#"protocol error: unknown rpc: "/echo.Echo/Nope""#,
    )?;
    echo(client, Bytes::from_static(b"after unknown")).await
}

async fn metadata(client: &Client) -> Result<(), String> {
    let metadata: Metadata = [("tenant", "acme"), ("trace", "ü-1"), ("empty", "")]
        .into_iter()
        .map(|(k, v)| (Bytes::from(k), Bytes::from(v)))
        .collect();
    let reply = client
        .call_with_metadata("/echo.Echo/Metadata", &metadata, Bytes::new())
        .await
        .map_err(|e| e.to_string())?;
    expect(&reply, "empty=\ntenant=acme\ntrace=ü-1".as_bytes())
}

async fn bidi(client: &Client) -> Result<(), String> {
    let mut stream = client
        .open("/echo.Echo/Bidi", &Metadata::new())
        .await
        .map_err(|e| e.to_string())?;
    for i in 0..10 {
        let message = Bytes::from(format!("ping {i}"));
        stream
            .send(message.clone())
            .await
            .map_err(|e| e.to_string())?;
        let back = stream.recv().await.map_err(|e| e.to_string())?;
        expect(&back.unwrap_or_default(), &message)?;
    }
    stream.close_send().await.map_err(|e| e.to_string())?;
    match stream.recv().await {
        Ok(None) => Ok(()),
        other => Err(format!("after close_send: got {other:?}, want the end")),
    }
}

async fn large(client: &Client) -> Result<(), String> {
    let message: Bytes = (0..1usize << 20)
        .map(|i| ((i * 31 + (i >> 8)) % 251) as u8)
        .collect::<Vec<u8>>()
        .into();
    echo(client, message).await
}

async fn concurrent(client: &Client) -> Result<(), String> {
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..32 {
        let client = client.clone();
        calls.spawn(async move { echo(&client, Bytes::from(format!("call {i}"))).await });
    }
    while let Some(result) = calls.join_next().await {
        result.map_err(|e| e.to_string())??;
    }
    Ok(())
}
