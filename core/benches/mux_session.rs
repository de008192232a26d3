//! Messages through a client and a server `Session` joined in memory (mux mode, no sockets):
//! the client sends, the server reads (returning credit), and window updates flow back.
//!
//! `make bench-mux-core` runs the quick mode; `cargo bench -p weir --bench mux_session` the full.

mod support;

use std::hint::black_box;

use bytes::Bytes;
use criterion::Throughput;
use support::{figure, Figures};
use weir::mux::session::{Config, Output, Recv, Role, Session};
use weir::mux::wire::Metadata;
use weir::time::Instant;

const NOW: Instant = Instant::ZERO;

/// A client with `streams` open streams and the server that accepted them.
struct Pair {
    client: Session,
    server: Session,
    streams: Vec<u64>,
}

impl Pair {
    fn new(streams: usize) -> Pair {
        let config = Config {
            max_concurrent_streams: 256,
            ..Config::mux()
        };
        let mut pair = Pair {
            client: Session::new(Role::Client, config),
            server: Session::new(Role::Server, config),
            streams: Vec::new(),
        };
        for _ in 0..streams {
            let id = pair
                .client
                .open_stream(NOW, "/bench", &Metadata::new())
                .unwrap();
            pair.streams.push(id);
        }
        for report in pair.deliver() {
            assert!(matches!(report, Output::Opened { .. }), "{report:?}");
        }
        pair
    }

    /// Move every pending byte in both directions until both sides are quiet; returns the
    /// server's reports.
    fn deliver(&mut self) -> Vec<Output> {
        let mut reports = Vec::new();
        loop {
            let mut moved = false;
            while let Some(output) = self.client.poll_output() {
                if let Output::Transmit(bytes) = output {
                    self.client.handle_written(bytes.len());
                    self.server.handle_input(NOW, &bytes).unwrap();
                    moved = true;
                }
            }
            while let Some(output) = self.server.poll_output() {
                match output {
                    Output::Transmit(bytes) => {
                        self.server.handle_written(bytes.len());
                        self.client.handle_input(NOW, &bytes).unwrap();
                        moved = true;
                    }
                    report => reports.push(report),
                }
            }
            if !moved {
                return reports;
            }
        }
    }

    /// The client's next bytes, passing over its reports.
    fn client_transmit(&mut self) -> Option<Bytes> {
        while let Some(output) = self.client.poll_output() {
            if let Output::Transmit(bytes) = output {
                self.client.handle_written(bytes.len());
                return Some(bytes);
            }
        }
        None
    }

    /// One message on every stream, through to the server's application.
    fn round(&mut self, message: &Bytes) {
        for &stream in &self.streams {
            self.client.send(NOW, stream, message.clone()).unwrap();
        }
        while let Some(bytes) = self.client_transmit() {
            self.server.handle_input(NOW, &bytes).unwrap();
            while let Some(output) = self.server.poll_output() {
                match output {
                    Output::Readable(stream) => {
                        while let Recv::Message(m) = self.server.read(stream).unwrap() {
                            black_box(m);
                        }
                    }
                    Output::Transmit(bytes) => {
                        self.server.handle_written(bytes.len());
                        self.client.handle_input(NOW, &bytes).unwrap();
                    }
                    _ => {}
                }
            }
        }
    }
}

fn main() {
    let mut c = support::criterion();
    let figures = Figures::default();
    for (size, label) in [(64usize, "64b"), (64 << 10, "64k")] {
        let message = Bytes::from(vec![0x5a; size]);
        let mut group = c.benchmark_group(format!("session_{label}"));
        for streams in [1usize, 64] {
            group.throughput(Throughput::Bytes((size * streams) as u64));
            let id = format!("{label}_{streams}");
            let mut pair = Pair::new(streams);
            group.bench_function(format!("{streams}_streams"), |b| {
                figures.time(b, &id, || pair.round(&message))
            });
        }
        group.finish();
    }
    c.final_summary();

    let msgs = |id: &str, streams: usize| figures.per_sec(id) * streams as f64;
    let gbytes = |id: &str, streams: usize| msgs(id, streams) * (64 << 10) as f64 / 1e9;
    figure("session_small_1_stream_msgs_per_sec", msgs("64b_1", 1));
    figure(
        "session_64k_64_streams_gbytes_per_sec",
        gbytes("64k_64", 64),
    );
    figure("session_small_msgs_per_sec", msgs("64b_64", 64));
    figure("session_64k_gbytes_per_sec", gbytes("64k_1", 1));
}
