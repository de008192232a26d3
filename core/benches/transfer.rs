//! Transfer machine: the cost of relaying a session that is not moving.
//!
//! - `small`: 64 pipelined `SELECT 1` queries from the client in one read, then their 64
//!   responses (RowDescription, DataRow, CommandComplete, ReadyForQuery: 256 messages) from the
//!   server in one read. 320 messages per iteration.
//! - `large`: a 1 MiB DataRow arriving in 16 reads of 64 KiB, as a socket would deliver it.
//!
//! - `memcpy`: copying the same 1 MiB into a reused buffer, the least a proxy that buffers
//!   messages would pay; the machine relays slices of the caller's buffers instead.
//!
//! Every output is drained and dropped, as an adapter would after writing it.

mod support;

use std::hint::black_box;

use bytes::Bytes;
use weir::time::Instant;
use weir::transfer::message::{build_query, build_startup_message};
use weir::transfer::{Config, Machine, ServerId};

const QUERIES: usize = 64;
const MESSAGES_PER_QUERY: usize = 5;
const ROW_LEN: usize = 1 << 20;
const READ_LEN: usize = 64 << 10;

fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn response() -> Vec<u8> {
    let mut t = 1i16.to_be_bytes().to_vec();
    t.extend_from_slice(b"?column?\0");
    t.extend_from_slice(&[
        0, 0, 0, 0, 0, 0, 0, 0, 0, 23, 0, 4, 0xff, 0xff, 0xff, 0xff, 0, 0,
    ]);
    [
        msg(b'T', &t),
        msg(b'D', &[0, 1, 0, 0, 0, 1, b'1']),
        msg(b'C', b"SELECT 1\0"),
        msg(b'Z', b"I"),
    ]
    .concat()
}

/// A machine past its startup, idle.
fn session() -> Machine {
    let mut m = Machine::new(Config::default(), ServerId(0));
    let now = Instant::ZERO;
    let startup = build_startup_message([("user", "bench")], 10_000).expect("startup");
    m.handle_client_input(now, startup).expect("client");
    let greeting = [msg(b'R', &[0, 0, 0, 0]), msg(b'Z', b"I")].concat();
    m.handle_server_input(now, ServerId(0), Bytes::from(greeting))
        .expect("server");
    drain(&mut m);
    m
}

fn drain(m: &mut Machine) -> usize {
    let mut n = 0;
    while let Some(out) = m.poll_output() {
        black_box(out);
        n += 1;
    }
    n
}

fn main() {
    let mut c = support::criterion();
    let figures = support::Figures::default();
    let now = Instant::ZERO;

    let queries = Bytes::from(build_query("SELECT 1").expect("query").repeat(QUERIES));
    let responses = Bytes::from(response().repeat(QUERIES));
    let mut m = session();
    c.bench_function("transfer/relay_small_query_response_x64", |b| {
        figures.time(b, "small", || {
            m.handle_client_input(now, queries.clone()).expect("client");
            drain(&mut m);
            m.handle_server_input(now, ServerId(0), responses.clone())
                .expect("server");
            drain(&mut m);
        });
    });
    assert!(m.at_safe_point(), "every query was answered");

    let mut row = msg(b'D', &[]);
    row.truncate(1);
    let body_len = ROW_LEN - 5;
    row.extend_from_slice(&(body_len as u32 + 4).to_be_bytes());
    row.resize(ROW_LEN, 7);
    let row = Bytes::from(row);
    let reads: Vec<Bytes> = (0..ROW_LEN / READ_LEN)
        .map(|i| row.slice(i * READ_LEN..(i + 1) * READ_LEN))
        .collect();
    let mut m = session();
    m.handle_client_input(now, build_query("SELECT big").expect("query"))
        .expect("client");
    drain(&mut m);
    let before = m.metrics().server_bytes;
    c.bench_function("transfer/relay_1mib_data_row_in_64kib_reads", |b| {
        figures.time(b, "large", || {
            for read in &reads {
                m.handle_server_input(now, ServerId(0), read.clone())
                    .expect("server");
                drain(&mut m);
            }
        });
    });
    assert_eq!((m.metrics().server_bytes - before) % ROW_LEN as u64, 0);

    let mut copy = vec![0u8; ROW_LEN];
    c.bench_function("transfer/baseline_memcpy_1mib", |b| {
        figures.time(b, "memcpy", || {
            copy.copy_from_slice(black_box(&row[..]));
            black_box(&copy);
        });
    });

    c.final_summary();
    let bytes_per_sec = figures.per_sec("large") * ROW_LEN as f64;
    let small_bytes = (queries.len() + responses.len()) as f64;
    support::figure(
        "small_gbytes_per_sec",
        figures.per_sec("small") * small_bytes / 1e9,
    );
    support::figure(
        "memcpy_gbytes_per_sec",
        figures.per_sec("memcpy") * ROW_LEN as f64 / 1e9,
    );
    support::figure("passthrough_gbytes_per_sec", bytes_per_sec / 1e9);
    support::figure(
        "small_msgs_per_sec",
        figures.per_sec("small") * (QUERIES * MESSAGES_PER_QUERY) as f64,
    );
}
