//! The DRPC wire codec beside a plain memcpy of the same bytes, in one run.
//!
//! `make bench-codec` runs the quick mode; `cargo bench -p weir --bench codec` the full one.
//!
//! Go DRPC's reader runs in the same run on the same bytes: the program `WEIR_GO_BENCH` names
//! (default `target/drpc-go-bench`, built by `make go-bench` from tests/interop/go/bench) reads
//! the same 1,000-packet batches through `drpcwire.Reader`, and `assemble_small_ratio_vs_go` is
//! its nanoseconds per packet over weir's. Without the program the benchmark fails.

mod support;

use std::hint::black_box;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::BytesMut;
use criterion::Throughput;
use support::{figure, Figures};
use weir::mux::wire::{
    parse_frame, FrameDecoder, Id, Kind, Packet, PacketLimit, PacketReader, SplitSize,
};

/// Frames per buffer in the small-frame cases.
const SMALL_COUNT: usize = 1000;
/// Data bytes per small frame: 16, so 20 bytes on the wire with its 4-byte header.
const SMALL_DATA: usize = 16;
const ONE_MIB: usize = 1 << 20;

fn message(stream: u64, message: u64, len: usize) -> Packet {
    Packet {
        kind: Kind::MESSAGE,
        control: false,
        id: Id::new(stream, message),
        data: (0..len)
            .map(|i| (i * 7 + 3) as u8)
            .collect::<Vec<_>>()
            .into(),
    }
}

/// `count` packets of `len` bytes on stream 1 with message ids from `first`, split at 64 KiB.
fn packets_wire(first: u64, count: usize, len: usize) -> BytesMut {
    let mut wire = BytesMut::new();
    for i in 0..count as u64 {
        message(1, first + i, len)
            .encode(SplitSize::DEFAULT, &mut wire)
            .unwrap();
    }
    wire
}

/// The Go benchmark program, from `WEIR_GO_BENCH` or where `make go-bench` puts it.
fn go_bench_program() -> std::path::PathBuf {
    match std::env::var_os("WEIR_GO_BENCH") {
        Some(path) => path.into(),
        None => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/drpc-go-bench"),
    }
}

/// Go's `drpcwire.Reader` over the same batches as the "assemble_packets" case, for as long as
/// criterion warms up and measures it: `wire` (the first batch) goes to the program on stdin,
/// and the program checks that the batches it builds with Go's own encoder start with exactly
/// these bytes. Returns the program's `name=value` lines; panics on any failure, so that a
/// missing or broken Go side is an error and never a figure.
fn go_assemble(wire: &[u8], warm_up: Duration, measure: Duration) -> Vec<(String, f64)> {
    let program = go_bench_program();
    let mut child = Command::new(&program)
        .args(["-mode", "assemble"])
        .arg(format!("-warmup={}ms", warm_up.as_millis()))
        .arg(format!("-measure={}ms", measure.as_millis()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run the Go benchmark {} ({e}): build it with `make go-bench`",
                program.display()
            )
        });
    child.stdin.take().unwrap().write_all(wire).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "the Go benchmark failed: {}",
        output.status
    );
    let lines: Vec<(String, f64)> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let (name, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("the Go benchmark printed {line:?}"));
            let value: f64 = value.parse().unwrap();
            assert!(
                value.is_finite() && value > 0.0,
                "the Go benchmark's {name} is {value}"
            );
            (name.to_owned(), value)
        })
        .collect();
    lines
}

fn main() {
    let quick = std::env::var("WEIR_BENCH_QUICK").is_ok_and(|v| v == "1");
    let mut c = support::criterion();
    let figures = Figures::default();
    let small = packets_wire(1, SMALL_COUNT, SMALL_DATA);
    let big = message(1, 1, ONE_MIB);

    let mut group = c.benchmark_group("small");
    group.throughput(Throughput::Elements(SMALL_COUNT as u64));
    let mut small_copy = Vec::with_capacity(small.len());
    group.bench_function("memcpy", |b| {
        figures.time(b, "memcpy_small", || {
            small_copy.clear();
            small_copy.extend_from_slice(black_box(&small[..]));
            black_box(&small_copy);
        })
    });
    group.bench_function("parse_frames_borrowed", |b| {
        figures.time(b, "parse_small", || {
            let mut rest = &small[..];
            while let Some((frame, used)) = parse_frame(rest).unwrap() {
                black_box(frame);
                rest = &rest[used..];
            }
        })
    });
    group.bench_function("decode_frames_owned", |b| {
        figures.time_with_setup(
            b,
            "decode_small_owned",
            || BytesMut::from(&small[..]),
            |buf| {
                let mut decoder = FrameDecoder::default();
                while let Some(frame) = decoder.decode(buf).unwrap() {
                    black_box(frame);
                }
            },
        )
    });
    group.bench_function("assemble_packets", |b| {
        // One reader for the whole run, as for one connection: ids keep rising across iterations.
        let mut reader = PacketReader::compat(PacketLimit::DEFAULT);
        let mut next_message = 1;
        figures.time_with_setup(
            b,
            "assemble_small",
            || {
                let wire = packets_wire(next_message, SMALL_COUNT, SMALL_DATA);
                next_message += SMALL_COUNT as u64;
                wire
            },
            |buf| {
                while let Some(packet) = reader.read(buf).unwrap() {
                    black_box(packet);
                }
            },
        )
    });
    group.finish();

    let mut group = c.benchmark_group("1mib");
    group.throughput(Throughput::Bytes(ONE_MIB as u64));
    let source = big.data.clone();
    let mut copy = Vec::with_capacity(ONE_MIB);
    // Two baselines, each in the cache state of the case it is beside: a copy of a warm source
    // for encoding (which reads the packet's data again and again), and a copy of a freshly
    // built wire buffer for assembly (whose input is a new receive buffer every time).
    group.bench_function("memcpy", |b| {
        figures.time(b, "memcpy_1m", || {
            copy.clear();
            copy.extend_from_slice(black_box(&source));
            black_box(&copy);
        })
    });
    let mut next_message = 1;
    group.bench_function("memcpy_fresh_source", |b| {
        figures.time_with_setup(
            b,
            "memcpy_fresh_1m",
            || {
                let wire = packets_wire(next_message, 1, ONE_MIB);
                next_message += 1;
                wire
            },
            |buf| {
                copy.clear();
                copy.extend_from_slice(&buf[..ONE_MIB]);
                black_box(&copy);
            },
        )
    });
    group.bench_function("assemble_split_64k", |b| {
        let mut reader = PacketReader::compat(PacketLimit::DEFAULT);
        let mut next_message = 1;
        figures.time_with_setup(
            b,
            "assemble_1m",
            || {
                let wire = packets_wire(next_message, 1, ONE_MIB);
                next_message += 1;
                wire
            },
            |buf| {
                let packet: Option<Packet> = reader.read(buf).unwrap();
                black_box(packet);
            },
        )
    });
    let mut out = Vec::with_capacity(big.encoded_len(SplitSize::DEFAULT));
    group.bench_function("encode_split_64k", |b| {
        figures.time(b, "encode_1m", || {
            out.clear();
            big.encode(SplitSize::DEFAULT, &mut out).unwrap();
            black_box(&out);
        })
    });
    group.finish();
    c.final_summary();

    // Go's reader for as long as criterion spends on one case (its defaults in the full mode).
    let (warm_up, measure) = if quick {
        (support::QUICK_WARM_UP, support::QUICK_MEASUREMENT)
    } else {
        (Duration::from_secs(3), Duration::from_secs(5))
    };
    let go = go_assemble(&small, warm_up, measure);
    let go_figure = |name: &str| {
        go.iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("the Go benchmark printed no {name}"))
            .1
    };
    let go_ns = go_figure("ns_per_packet");
    println!(
        "go drpcwire.Reader, the same batches: {go_ns:.2} ns per packet reading into the last packet's buffer (as drpcmanager), {:.2} ns with ReadPacket (a new buffer each); copying the bytes out of the io.Reader, which Go's reader must do, costs {:.2} ns of that",
        go_figure("ns_per_packet_alloc"),
        go_figure("copy_ns_per_packet"),
    );
    let weir_ns = figures.ns_per_iter("assemble_small") / SMALL_COUNT as f64;
    assert!(
        weir_ns.is_finite() && weir_ns > 0.0,
        "weir's assembly timed nothing"
    );

    let per_frame = |id: &str| figures.per_sec(id) * SMALL_COUNT as f64;
    let memcpy_small = figures.ns_per_iter("memcpy_small");
    let vs_small_memcpy = |id: &str| memcpy_small / figures.ns_per_iter(id);
    figure(
        "decode_small_ratio_vs_memcpy",
        vs_small_memcpy("parse_small"),
    );
    figure(
        "assemble_small_ratio_vs_memcpy",
        vs_small_memcpy("assemble_small"),
    );
    let memcpy = figures.ns_per_iter("memcpy_1m");
    let memcpy_fresh = figures.ns_per_iter("memcpy_fresh_1m");
    figure(
        "decode_small_frames_owned_per_sec",
        per_frame("decode_small_owned"),
    );
    figure("decode_small_frames_per_sec", per_frame("parse_small"));
    figure(
        "assemble_small_packets_per_sec",
        per_frame("assemble_small"),
    );
    figure(
        "assemble_1m_ratio_vs_memcpy",
        memcpy_fresh / figures.ns_per_iter("assemble_1m"),
    );
    figure(
        "encode_1m_ratio_vs_memcpy",
        memcpy / figures.ns_per_iter("encode_1m"),
    );
    figure("go_assemble_small_packets_per_sec", 1e9 / go_ns);
    figure("assemble_small_ratio_vs_go", go_ns / weir_ns);
}
