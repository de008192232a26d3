//! `Router::serve_tcp` under pressure: it outlives running out of file descriptors, and closes
//! connections past its limit at once.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::echo_router;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use weir::mux::session::Config;
use weir_tokio::{Client, ServeConfig};

/// Set in the environment of the child process that runs [`few_file_descriptors_server`].
const CHILD: &str = "WEIR_TEST_FEW_FILE_DESCRIPTORS_SERVER";

/// The server of [`serve_tcp_outlives_running_out_of_file_descriptors`], in a child process
/// of its own (this test binary again, with [`CHILD`] set) whose `RLIMIT_NOFILE` leaves room
/// for 16 more descriptors. Without [`CHILD`] it does nothing.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn few_file_descriptors_server() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(tracing::Level::WARN)
        .init();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let open = std::fs::read_dir("/proc/self/fd").unwrap().count() as libc::rlim_t;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: both calls only read or write the struct passed, which outlives them.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = open + 16;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
    println!("listening on {}", listener.local_addr().unwrap());
    echo_router().serve_tcp(listener, Config::mux()).await;
    println!("serve_tcp returned");
}

#[cfg(target_os = "linux")]
#[test]
fn serve_tcp_outlives_running_out_of_file_descriptors() {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["few_file_descriptors_server", "--exact", "--nocapture"])
        .env(CHILD, "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = Arc::new(Mutex::new(String::new()));
    std::thread::spawn({
        let stderr = stderr.clone();
        let mut pipe = child.stderr.take().unwrap();
        move || {
            let mut chunk = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut chunk) {
                stderr
                    .lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&chunk[..n]));
            }
        }
    });
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let addr = loop {
        let mut line = String::new();
        assert_ne!(stdout.read_line(&mut line).unwrap(), 0, "the child ended");
        if let Some(addr) = line.trim().strip_prefix("listening on ") {
            break addr.parse::<std::net::SocketAddr>().unwrap();
        }
    };

    // Forty idle connections: the server runs out of descriptors after sixteen of them.
    let idle: Vec<std::net::TcpStream> = (0..40)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    let start = Instant::now();
    while !stderr.lock().unwrap().contains("Too many open files") {
        let exited = child.try_wait().unwrap();
        assert!(
            exited.is_none() && start.elapsed() < Duration::from_secs(10),
            "the server stopped ({exited:?}) or never ran out of descriptors; its log:\n{}",
            stderr.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // It keeps trying, and serves again once descriptors are free.
    std::thread::sleep(Duration::from_millis(300));
    assert!(child.try_wait().unwrap().is_none(), "the server stopped");
    drop(idle);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let answered = runtime.block_on(async {
        let call = async {
            let client = Client::connect(TcpStream::connect(addr).await?, Config::mux());
            client
                .call("/echo.Echo/Unary", "still here")
                .await
                .map_err(std::io::Error::other)
        };
        timeout(Duration::from_secs(10), call).await
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(answered.unwrap().unwrap(), "still here");
}

async fn call(addr: std::net::SocketAddr) -> Result<(), weir_tokio::Error> {
    let socket = TcpStream::connect(addr)
        .await
        .map_err(weir_tokio::Error::from)?;
    let client = Client::connect(socket, Config::mux());
    client.call("/echo.Echo/Unary", "hi").await.map(drop)
}

#[tokio::test]
async fn a_connection_past_max_connections_is_closed_at_once() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = ServeConfig {
        max_connections: 2,
        ..ServeConfig::new(Config::mux())
    };
    tokio::spawn(async move { echo_router().serve_tcp_with(listener, config).await });

    let mut open = Vec::new();
    for _ in 0..2 {
        let client = Client::connect(TcpStream::connect(addr).await.unwrap(), Config::mux());
        assert_eq!(client.call("/echo.Echo/Unary", "in").await.unwrap(), "in");
        open.push(client);
    }
    // The third is closed as soon as it is accepted.
    let mut third = TcpStream::connect(addr).await.unwrap();
    let read = timeout(Duration::from_secs(5), third.read(&mut [0u8; 16])).await;
    assert_eq!(read.expect("closed at once").unwrap(), 0);
    // A connection that ends leaves its place to the next.
    drop(open.pop());
    let start = Instant::now();
    while !matches!(
        timeout(Duration::from_secs(1), call(addr)).await,
        Ok(Ok(()))
    ) {
        assert!(start.elapsed() < Duration::from_secs(5), "no place freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
