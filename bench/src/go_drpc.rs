//! weir beside stock Go DRPC (storj.io/drpc v1.1.0): each side's own client against its own
//! server, both in compat mode (one stream at a time, Go's semantics) on one loopback TCP
//! connection, with the same messages and the same number of them.
//!
//! Go's side is the program `WEIR_GO_BENCH` names (default `target/drpc-go-bench`, built by
//! `make go-bench` from tests/interop/go/bench): it runs its own server and client in one process
//! (GOMAXPROCS defaults to the machine's cores, as this benchmark's tokio runtime has two
//! workers) and prints its figures. A missing program, a failed run or a figure that is not a
//! positive number is an error, never a 0.
//!
//! - Unary: a warm-up of 1,000 calls, then `calls` sequential 64-byte echo calls (weir's
//!   `Client::call`, Go's `Conn.Invoke`).
//! - Bulk: a warm-up stream of 32 messages, then one stream of `messages` 1 MiB messages to a
//!   sink that counts the bytes and answers the total; timed from the stream's opening to the
//!   answer.

use std::path::PathBuf;
use std::time::Instant;

use bytes::Bytes;
use weir::mux::session::Config;
use weir::mux::wire::Metadata;
use weir_tokio::Client;

use crate::{router, tcp_pair, MIB};

/// The size of one unary request, as in the mux unary phase.
pub const UNARY_SIZE: usize = 64;

fn program() -> PathBuf {
    match std::env::var_os("WEIR_GO_BENCH") {
        Some(path) => path.into(),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/drpc-go-bench"),
    }
}

/// Runs the Go program with `args` and returns the value of its `figure` line.
async fn go(args: &[String], figure: &str) -> f64 {
    let program = program();
    let output = tokio::process::Command::new(&program)
        .args(args)
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot run the Go benchmark {} ({e}): build it with `make go-bench`",
                program.display()
            )
        });
    assert!(
        output.status.success(),
        "the Go benchmark {args:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let value: f64 = stdout
        .lines()
        .find_map(|line| line.strip_prefix(figure)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("the Go benchmark printed no {figure}: {stdout:?}"))
        .parse()
        .unwrap();
    assert!(
        value.is_finite() && value > 0.0,
        "the Go benchmark's {figure} is {value}"
    );
    value
}

/// A weir client and server in compat mode with default settings (Go's limits).
async fn weir_compat() -> Client {
    let (client, server) = tcp_pair().await;
    tokio::spawn(async move {
        router()
            .serve(weir_tokio::Server::new(server, Config::default()))
            .await
    });
    Client::connect(client, Config::default())
}

fn per_sec(count: f64, started: Instant) -> f64 {
    let seconds = started.elapsed().as_secs_f64();
    assert!(count > 0.0 && seconds > 0.0, "nothing was timed");
    count / seconds
}

/// weir's sequential echo calls per second. The caller is a task on the runtime's workers, as
/// Go's caller is a goroutine, not the thread that blocks on the runtime.
pub async fn unary_weir(calls: usize) -> f64 {
    tokio::spawn(unary_weir_task(calls)).await.unwrap()
}

async fn unary_weir_task(calls: usize) -> f64 {
    let client = weir_compat().await;
    let request = Bytes::from(vec![7u8; UNARY_SIZE]);
    for _ in 0..1000 {
        assert_eq!(
            client.call("/echo", request.clone()).await.unwrap(),
            request
        );
    }
    let started = Instant::now();
    for _ in 0..calls {
        assert_eq!(
            client.call("/echo", request.clone()).await.unwrap(),
            request
        );
    }
    per_sec(calls as f64, started)
}

/// Go's sequential echo calls per second.
pub async fn unary_go(calls: usize) -> f64 {
    let args = [
        "-mode=unary".to_owned(),
        format!("-calls={calls}"),
        format!("-size={UNARY_SIZE}"),
    ];
    go(&args, "calls_per_sec").await
}

async fn sink(client: &Client, chunk: &Bytes, messages: usize) {
    let mut stream = client.open("/sink", &Metadata::new()).await.unwrap();
    for _ in 0..messages {
        stream.send(chunk.clone()).await.unwrap();
    }
    stream.close_send().await.unwrap();
    let reply = stream.recv().await.unwrap().unwrap();
    let counted = u64::from_le_bytes(reply[..8].try_into().unwrap());
    assert_eq!(counted, (chunk.len() * messages) as u64);
}

/// weir's bulk bytes per second over one stream of 1 MiB messages, sent from a task on the
/// runtime as the calls are.
pub async fn bulk_weir(messages: usize) -> f64 {
    tokio::spawn(bulk_weir_task(messages)).await.unwrap()
}

async fn bulk_weir_task(messages: usize) -> f64 {
    let client = weir_compat().await;
    let chunk = Bytes::from(vec![0x5a; MIB]);
    sink(&client, &chunk, 32).await;
    let started = Instant::now();
    sink(&client, &chunk, messages).await;
    per_sec((messages * MIB) as f64, started)
}

/// Go's bulk bytes per second, the same way.
pub async fn bulk_go(messages: usize) -> f64 {
    let args = [
        "-mode=bulk".to_owned(),
        format!("-messages={messages}"),
        format!("-size={MIB}"),
    ];
    go(&args, "mib_per_sec").await * MIB as f64
}
