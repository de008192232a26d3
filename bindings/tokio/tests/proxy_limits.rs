//! The proxy's limit on client connections, seen from a raw TCP client: no PostgreSQL is
//! needed, since a refusal comes before any backend is involved.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use weir::transfer::message::ErrorFields;
use weir_tokio::proxy::{Proxy, ProxyConfig};

const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];

#[tokio::test]
async fn past_max_client_connections_a_client_hears_53300() {
    // No backend listens there: these clients never get that far.
    let mut config = ProxyConfig::new(vec!["127.0.0.1:9".parse().unwrap()]);
    config.max_client_connections = 2;
    let proxy = Proxy::bind("127.0.0.1:0", config).await.unwrap();
    let addr = proxy.local_addr();

    // Two clients that say nothing take both places (the proxy accepts in order).
    let mut silent = Vec::new();
    for _ in 0..2 {
        silent.push(TcpStream::connect(addr).await.unwrap());
    }
    let mut third = TcpStream::connect(addr).await.unwrap();
    let mut reply = Vec::new();
    timeout(Duration::from_secs(5), third.read_to_end(&mut reply))
        .await
        .expect("refused at once")
        .unwrap();
    assert_eq!(reply.first(), Some(&b'E'), "{reply:?}");
    let len = u32::from_be_bytes(reply[1..5].try_into().unwrap()) as usize;
    assert_eq!(len, reply.len() - 1, "one ErrorResponse, then the end");
    let fields = ErrorFields::parse(&reply[5..]).unwrap();
    assert_eq!(fields.get(b'S'), Some("FATAL"));
    assert_eq!(fields.get(b'C'), Some("53300"));
    assert!(fields.get(b'M').unwrap().contains("too many connections"));
    assert_eq!(proxy.metrics().connections_over_limit, 1);

    // A place that frees up is taken by the next client: it is answered, not refused.
    drop(silent.pop());
    let start = Instant::now();
    loop {
        let mut client = TcpStream::connect(addr).await.unwrap();
        client.write_all(&SSL_REQUEST).await.unwrap();
        let mut first = [0u8; 1];
        let read = timeout(Duration::from_secs(5), client.read_exact(&mut first)).await;
        if first == *b"N" {
            break;
        }
        assert!(
            read.is_ok() && start.elapsed() < Duration::from_secs(5),
            "no place freed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
