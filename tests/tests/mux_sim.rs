//! A deterministic two-peer simulation of mux mode on a virtual clock.
//!
//! A client and a server session are joined by a simulated link (latency, bounded bandwidth,
//! random chunking). The client opens many streams, each sending messages of random sizes and
//! reading the echoes at random times, and cancels some streams midway; the server echoes every
//! message, reading at random times too. Checked at every tick: buffered bytes stay within the
//! windows, and every message arrives once, in order, intact. Checked at the end: every stream
//! finished (no deadlock), and every byte of credit is back where it started.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use weir::mux::session::{Config, Output, Recv, Role, Session, SessionError};
use weir::mux::wire::{Metadata, SplitSize};
use weir::time::Instant;

/// splitmix64: small, deterministic, good enough for a simulation.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// One direction of the link: bytes leave in random chunks, wait for the bandwidth, then for
/// the latency.
struct Link {
    in_flight: VecDeque<(Instant, Vec<u8>)>,
    free_at: Instant,
    bytes_per_us: u64,
    latency: Duration,
}

impl Link {
    fn new() -> Link {
        Link {
            in_flight: VecDeque::new(),
            free_at: Instant::ZERO,
            bytes_per_us: 200,
            latency: Duration::from_micros(500),
        }
    }

    fn send(&mut self, now: Instant, bytes: &[u8], rng: &mut Rng) {
        let mut rest = bytes;
        while !rest.is_empty() {
            let n = (1 + rng.below(8192) as usize).min(rest.len());
            let start = self.free_at.max(now);
            self.free_at = start + Duration::from_micros((n as u64).div_ceil(self.bytes_per_us));
            self.in_flight
                .push_back((self.free_at + self.latency, rest[..n].to_vec()));
            rest = &rest[n..];
        }
    }

    fn deliver(&mut self, now: Instant, to: &mut Session) {
        while self.in_flight.front().is_some_and(|(at, _)| *at <= now) {
            let (_, bytes) = self.in_flight.pop_front().unwrap();
            to.handle_input(now, &bytes)
                .unwrap_or_else(|e| panic!("the connection was closed already: {e}"));
        }
    }
}

/// Message `index` of `stream`: a header naming it, then bytes derived from it.
fn message(stream: u64, index: u32, len: usize) -> Bytes {
    let mut data = Vec::with_capacity(len.max(16));
    data.extend_from_slice(&stream.to_be_bytes());
    data.extend_from_slice(&index.to_be_bytes());
    data.extend_from_slice(&(len as u32).to_be_bytes());
    let seed = stream.wrapping_mul(31).wrapping_add(u64::from(index));
    data.extend((16..len.max(16)).map(|i| (seed.wrapping_add(i as u64 * 7) % 251) as u8));
    data.into()
}

fn check_message(data: &Bytes, stream: u64, index: u32) {
    assert!(data.len() >= 16, "stream {stream}: short message");
    let len = u32::from_be_bytes(data[12..16].try_into().unwrap()) as usize;
    assert_eq!(
        *data,
        message(stream, index, len),
        "stream {stream}: message {index} differs"
    );
}

#[derive(Default)]
struct ClientStream {
    to_send: VecDeque<Bytes>,
    sent: u32,
    echoes_read: u32,
    cancel_after: Option<u32>,
    done: bool,
}

#[derive(Default)]
struct ServerStream {
    read: u32,
    echo_queue: VecDeque<Bytes>,
    eof: bool,
    closed: bool,
}

fn config() -> Config {
    Config {
        split_size: SplitSize::new(4096).unwrap(),
        send_buffer_per_stream: 32 << 10,
        max_transmit: 16 << 10,
        max_concurrent_streams: 32,
        initial_stream_window: 16 << 10,
        max_stream_window: 64 << 10,
        max_buffered_per_connection: 1 << 20,
        initial_connection_window: 64 << 10,
        max_connection_window: 256 << 10,
        autotune_interval: Duration::from_millis(5),
        ..Config::mux()
    }
}

fn message_len(rng: &mut Rng) -> usize {
    match rng.below(100) {
        0..=69 => 16 + rng.below(200) as usize,
        70..=94 => 16 + rng.below(8 << 10) as usize,
        _ => 16 + rng.below(200 << 10) as usize,
    }
}

fn run(seed: u64, streams: u64) {
    let mut rng = Rng(seed);
    let config = config();
    let mut client = Session::new(Role::Client, config);
    let mut server = Session::new(Role::Server, config);
    let (mut up, mut down) = (Link::new(), Link::new());
    let mut now = Instant::ZERO;
    let tick = Duration::from_micros(200);

    // Per stream: the lengths of its messages, and after how many it cancels (if it does).
    let mut plans: VecDeque<(Vec<usize>, Option<u32>)> = (0..streams)
        .map(|_| {
            let count = 1 + rng.below(6);
            let lens = (0..count).map(|_| message_len(&mut rng)).collect();
            (lens, rng.chance(10).then(|| rng.below(count) as u32))
        })
        .collect();
    let mut clients: BTreeMap<u64, ClientStream> = BTreeMap::new();
    let mut servers: BTreeMap<u64, ServerStream> = BTreeMap::new();
    let mut finished = 0u64;

    // No stream finishing for this long (virtual time) means the peers are stuck.
    let patience = Duration::from_secs(5);
    let mut last_progress = now;
    while finished < streams {
        if now.duration_since(last_progress) >= patience {
            let stuck: Vec<_> = clients
                .iter()
                .filter(|(_, s)| !s.done)
                .map(|(id, s)| (*id, s.sent, s.echoes_read, s.to_send.len()))
                .collect();
            let serving: Vec<_> = servers
                .iter()
                .map(|(id, s)| (*id, s.read, s.echo_queue.len(), s.eof))
                .collect();
            panic!(
                "seed {seed}: stalled with {finished} of {streams} streams finished\n client (id, sent, echoes read, to send): {stuck:?}\n server (id, read, echoes queued, eof): {serving:?}\n client {:?} {:?}\n server {:?} {:?}",
                client.connection_credit(),
                client.active_streams(),
                server.connection_credit(),
                server.active_streams(),
            );
        }
        now = now + tick;
        down.deliver(now, &mut client);
        up.deliver(now, &mut server);

        // The client opens streams while it may.
        while !plans.is_empty() {
            match client.open_stream(now, "/sim.Echo/Bidi", &Metadata::new()) {
                Ok(id) => {
                    let (lens, cancel_after) = plans.pop_front().unwrap();
                    let to_send = (0u32..)
                        .zip(lens)
                        .map(|(i, len)| message(id, i, len))
                        .collect();
                    clients.insert(
                        id,
                        ClientStream {
                            to_send,
                            cancel_after,
                            ..ClientStream::default()
                        },
                    );
                }
                Err(SessionError::TooManyStreams(_)) => break,
                Err(e) => panic!("open: {e}"),
            }
        }
        // Client: send what it can, read echoes now and then, cancel some streams.
        for (&id, s) in clients.iter_mut() {
            if s.done {
                continue;
            }
            while let Some(m) = s.to_send.front() {
                if s.cancel_after == Some(s.sent) {
                    client.cancel(now, id).unwrap();
                    s.to_send.clear();
                    s.done = true;
                    break;
                }
                match client.send(now, id, m.clone()) {
                    Ok(()) => {
                        s.to_send.pop_front();
                        s.sent += 1;
                        if s.to_send.is_empty() {
                            client.close_send(now, id).unwrap();
                        }
                    }
                    Err(SessionError::SendBufferFull(_)) => break,
                    Err(e) => panic!("seed {seed} stream {id}: send: {e}"),
                }
            }
            if s.done || !rng.chance(30) {
                continue;
            }
            loop {
                match client.read(id).unwrap() {
                    Recv::Message(m) => {
                        check_message(&m, id, s.echoes_read);
                        s.echoes_read += 1;
                    }
                    Recv::Pending => break,
                    Recv::Eof => {
                        assert_eq!(
                            s.echoes_read, s.sent,
                            "seed {seed} stream {id}: echoes missing"
                        );
                        s.done = true;
                        break;
                    }
                    other => panic!("seed {seed} stream {id}: {other:?}"),
                }
            }
        }
        // Server: echo what it reads, now and then.
        server_outputs(&mut server, &mut servers, &mut down, now, &mut rng, seed);
        for (&id, s) in servers.iter_mut() {
            if rng.chance(40) && !s.eof {
                loop {
                    match server.read(id).unwrap() {
                        Recv::Message(m) => {
                            check_message(&m, id, s.read);
                            s.read += 1;
                            s.echo_queue.push_back(m);
                        }
                        Recv::Pending => break,
                        Recv::Eof => {
                            s.eof = true;
                            break;
                        }
                        Recv::Canceled => break,
                        other => panic!("seed {seed} stream {id}: {other:?}"),
                    }
                }
            }
            while let Some(m) = s.echo_queue.front() {
                match server.send(now, id, m.clone()) {
                    Ok(()) => {
                        s.echo_queue.pop_front();
                    }
                    Err(SessionError::SendBufferFull(_)) | Err(SessionError::SendClosed(_)) => {
                        break
                    }
                    Err(e) => panic!("seed {seed} stream {id}: echo: {e}"),
                }
            }
            if s.eof && s.echo_queue.is_empty() && !s.closed {
                server.close_send(now, id).unwrap();
                s.closed = true;
            }
        }
        servers.retain(|_, s| !s.closed);
        while let Some(output) = client.poll_output() {
            match output {
                Output::Transmit(bytes) => {
                    up.send(now, &bytes, &mut rng);
                    client.handle_written(bytes.len());
                }
                Output::Finished(_) => {
                    finished += 1;
                    last_progress = now;
                }
                Output::Closed(reason) => panic!("seed {seed}: client closed: {reason}"),
                _ => {}
            }
        }
        server_outputs(&mut server, &mut servers, &mut down, now, &mut rng, seed);

        // Memory stays within the stream windows plus one packet, whatever the readers do.
        let bound = config
            .max_buffered_per_connection
            .max(config.max_concurrent_streams as u64 * config.initial_stream_window)
            + config.max_packet_len as u64;
        for side in [&client, &server] {
            assert!(
                side.buffered_bytes() <= bound,
                "seed {seed}: buffered past the bound"
            );
        }
    }

    // Let the last bytes (credit returns, closes) land, then check that nothing leaked.
    for _ in 0..100 {
        now = now + tick;
        down.deliver(now, &mut client);
        up.deliver(now, &mut server);
        while let Some(output) = client.poll_output() {
            match output {
                Output::Transmit(bytes) => {
                    up.send(now, &bytes, &mut rng);
                    client.handle_written(bytes.len());
                }
                Output::Closed(reason) => panic!("seed {seed}: client closed: {reason}"),
                _ => {}
            }
        }
        // A cancel may land after the client finished its side of the stream.
        server_outputs(&mut server, &mut servers, &mut down, now, &mut rng, seed);
    }
    assert!(
        up.in_flight.is_empty() && down.in_flight.is_empty(),
        "seed {seed}: link not drained"
    );
    assert_eq!(
        client.active_streams(),
        0,
        "seed {seed}: client streams left"
    );
    assert_eq!(
        server.active_streams(),
        0,
        "seed {seed}: server streams left"
    );
    let (c, s) = (client.connection_credit(), server.connection_credit());
    assert_eq!(
        c.send, s.receive_available,
        "seed {seed}: client's credit differs from the server's view"
    );
    assert_eq!(
        s.send, c.receive_available,
        "seed {seed}: server's credit differs from the client's view"
    );
    for credit in [c, s] {
        assert_eq!(
            credit.receive_available + credit.receive_unreturned,
            credit.receive_window,
            "seed {seed}: credit leaked"
        );
    }
}

/// Send the server's bytes down the link and follow its streams: a new one is served, a
/// canceled one dropped.
fn server_outputs(
    server: &mut Session,
    servers: &mut BTreeMap<u64, ServerStream>,
    down: &mut Link,
    now: Instant,
    rng: &mut Rng,
    seed: u64,
) {
    while let Some(output) = server.poll_output() {
        match output {
            Output::Transmit(bytes) => {
                down.send(now, &bytes, rng);
                server.handle_written(bytes.len());
            }
            Output::Opened { stream, .. } => {
                servers.insert(stream, ServerStream::default());
            }
            Output::RemoteCanceled(stream) => {
                server.drop_stream(stream);
                servers.remove(&stream);
            }
            Output::Closed(reason) => panic!("seed {seed}: server closed: {reason}"),
            _ => {}
        }
    }
}

#[test]
fn mux_streams_over_a_simulated_link() {
    let seeds: u64 = std::env::var("WEIR_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(24);
    for seed in 0..seeds {
        run(seed, 120);
    }
}
