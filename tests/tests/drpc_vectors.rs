//! Replays every case of the Go-produced DRPC vectors in `tests/vectors/drpc/` against the codec.

use std::path::PathBuf;

use bytes::{Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use weir::mux::wire::{
    parse_frame, put_varint, read_varint, ErrorBody, Frame, Id, Kind, Metadata, Packet,
    PacketLimit, PacketReader, SplitSize, WireError,
};
use weir_tests::drpc::{hex, pattern};

fn load<T: DeserializeOwned>(file: &str) -> T {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("vectors/drpc")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn num(text: &str) -> u64 {
    text.parse().expect("u64 as decimal string")
}

/// Go's text for an error returned by `drpcwire.Reader`, which wraps everything in its class.
fn reader_error_text(error: &WireError) -> String {
    format!("protocol error: {error}")
}

#[derive(Deserialize)]
struct Varints {
    valid: Vec<ValidVarint>,
    invalid: Vec<InvalidVarint>,
    decode_extra: Vec<ExtraVarint>,
}
#[derive(Deserialize)]
struct ValidVarint {
    value: String,
    hex: String,
}
#[derive(Deserialize)]
struct InvalidVarint {
    name: String,
    hex: String,
    error: String,
}
#[derive(Deserialize)]
struct ExtraVarint {
    name: String,
    hex: String,
    value: String,
    rest_hex: String,
}

#[test]
fn varints() {
    let v: Varints = load("varints.json");
    for case in &v.valid {
        let value = num(&case.value);
        let mut out = Vec::new();
        put_varint(&mut out, value);
        assert_eq!(out, hex(&case.hex), "encode {value}");
        assert_eq!(
            read_varint(&out),
            Ok(Some((value, out.len()))),
            "decode {value}"
        );
    }
    for case in &v.invalid {
        let got = match read_varint(&hex(&case.hex)) {
            Ok(None) => "incomplete".to_owned(),
            Ok(Some(value)) => panic!("{}: decoded {value:?}", case.name),
            Err(e) => e.to_string(),
        };
        assert_eq!(got, case.error, "{}", case.name);
    }
    for case in &v.decode_extra {
        let input = hex(&case.hex);
        let (value, used) = read_varint(&input).unwrap().unwrap();
        assert_eq!(value, num(&case.value), "{}", case.name);
        assert_eq!(input[used..], hex(&case.rest_hex), "{}", case.name);
    }
    assert_eq!(
        (v.valid.len(), v.invalid.len(), v.decode_extra.len()),
        (19, 10, 9)
    );
}

#[derive(Deserialize)]
struct FrameCase {
    name: String,
    kind: u8,
    done: bool,
    control: bool,
    stream: String,
    message: String,
    data_hex: String,
    wire_hex: String,
    roundtrips: bool,
    parsed: Option<ParsedFrame>,
}
#[derive(Deserialize)]
struct ParsedFrame {
    kind: u8,
    done: bool,
    control: bool,
    stream: String,
    message: String,
    data_len: usize,
}

#[test]
fn frames() {
    let cases: Vec<FrameCase> = load("frames.json");
    for case in &cases {
        let data = hex(&case.data_hex);
        let frame = Frame {
            kind: Kind(case.kind),
            done: case.done,
            control: case.control,
            id: Id::new(num(&case.stream), num(&case.message)),
            data: &data[..],
        };
        let mut wire = Vec::new();
        frame.encode(&mut wire).unwrap();
        assert_eq!(wire, hex(&case.wire_hex), "{}", case.name);
        assert_eq!(wire.len(), frame.encoded_len(), "{}", case.name);

        let (parsed, used) = parse_frame(&wire).unwrap().expect("a whole frame");
        assert_eq!(used, wire.len(), "{}", case.name);
        if case.roundtrips {
            assert_eq!(parsed, frame, "{}", case.name);
        } else {
            let want = case
                .parsed
                .as_ref()
                .expect("parsed is given when not roundtripping");
            let got = (
                parsed.kind,
                parsed.done,
                parsed.control,
                parsed.id,
                parsed.data.len(),
            );
            let want = (
                Kind(want.kind),
                want.done,
                want.control,
                Id::new(num(&want.stream), num(&want.message)),
                want.data_len,
            );
            assert_eq!(got, want, "{}", case.name);
        }
    }
    assert_eq!(cases.len(), 56);
}

#[derive(Deserialize)]
struct ParseCase {
    name: String,
    input_hex: String,
    ok: bool,
    error: Option<String>,
    frame: Option<SummaryFrame>,
    rest_hex: String,
}
#[derive(Deserialize)]
struct SummaryFrame {
    kind: u8,
    done: bool,
    control: bool,
    stream: String,
    message: String,
    data_hex: String,
}

#[test]
fn frames_parse() {
    let cases: Vec<ParseCase> = load("frames_parse.json");
    for case in &cases {
        let input = hex(&case.input_hex);
        match parse_frame(&input) {
            Ok(Some((frame, used))) => {
                assert!(case.ok, "{}: parsed but Go did not", case.name);
                let want = case.frame.as_ref().expect("frame when ok");
                let want_data = hex(&want.data_hex);
                let want = Frame {
                    kind: Kind(want.kind),
                    done: want.done,
                    control: want.control,
                    id: Id::new(num(&want.stream), num(&want.message)),
                    data: &want_data[..],
                };
                assert_eq!(frame, want, "{}", case.name);
                assert_eq!(input[used..], hex(&case.rest_hex), "{}", case.name);
            }
            Ok(None) => {
                assert!(
                    !case.ok && case.error.is_none(),
                    "{}: incomplete",
                    case.name
                );
                assert_eq!(input, hex(&case.rest_hex), "{}", case.name);
            }
            Err(e) => {
                assert!(!case.ok, "{}", case.name);
                assert_eq!(Some(e.to_string()), case.error, "{}", case.name);
            }
        }
    }
    assert_eq!(cases.len(), 24);
}

#[derive(Deserialize)]
struct ReaderCase {
    name: String,
    max_buffer_size: i64,
    input_hex: String,
    packets: Vec<SummaryPacket>,
    error: String,
    chunking_sensitive: bool,
    one_byte_reader: Option<ReaderResult>,
}
#[derive(Deserialize)]
struct ReaderResult {
    packets: Vec<SummaryPacket>,
    error: String,
}
#[derive(Deserialize)]
struct SummaryPacket {
    kind: u8,
    control: bool,
    stream: String,
    message: String,
    data_hex: String,
}

impl SummaryPacket {
    fn to_packet(&self) -> Packet {
        Packet {
            kind: Kind(self.kind),
            control: self.control,
            id: Id::new(num(&self.stream), num(&self.message)),
            data: hex(&self.data_hex).into(),
        }
    }
}

/// Feed `input` to a compat reader in chunks of `chunk` bytes; the packets and Go's text for how
/// the stream ended (`EOF` when the input ran out).
fn read_all(limit: PacketLimit, input: &[u8], chunk: usize) -> (Vec<Packet>, String) {
    let mut reader = PacketReader::compat(limit);
    let mut buf = BytesMut::new();
    let mut packets = Vec::new();
    for piece in input.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
        loop {
            match reader.read(&mut buf) {
                Ok(Some(packet)) => packets.push(packet),
                Ok(None) => break,
                Err(e) => return (packets, reader_error_text(&e)),
            }
        }
    }
    (packets, "EOF".to_owned())
}

#[test]
fn reader() {
    let cases: Vec<ReaderCase> = load("reader.json");
    for case in &cases {
        let input = hex(&case.input_hex);
        let limit = PacketLimit::from_go(case.max_buffer_size);
        let whole = read_all(limit, &input, input.len());
        let bytewise = read_all(limit, &input, 1);
        assert_eq!(whole, bytewise, "{}: result depends on chunking", case.name);

        let expected = |packets: &[SummaryPacket], error: &str| {
            (
                packets
                    .iter()
                    .map(SummaryPacket::to_packet)
                    .collect::<Vec<_>>(),
                error.to_owned(),
            )
        };
        let go_whole = expected(&case.packets, &case.error);
        if case.chunking_sensitive {
            // Go's raw read-buffer check depends on how many bytes each Read returns; a reader that
            // decodes as bytes arrive may match either of Go's results.
            let one = case
                .one_byte_reader
                .as_ref()
                .expect("one_byte_reader when sensitive");
            let go_bytewise = expected(&one.packets, &one.error);
            assert!(
                whole == go_whole || whole == go_bytewise,
                "{}: {whole:?}",
                case.name
            );
        } else {
            assert_eq!(whole, go_whole, "{}", case.name);
        }
    }
    assert_eq!(cases.len(), 44);
}

#[derive(Deserialize)]
struct SplitCase {
    name: String,
    split_size: i64,
    packet: SplitPacket,
    frame_count: usize,
    frames: Option<Vec<SplitFrame>>,
    frame_runs: Vec<FrameRun>,
}
#[derive(Deserialize)]
struct SplitPacket {
    kind: u8,
    control: bool,
    stream: String,
    message: String,
    data_len: usize,
    data_hex: Option<String>,
}
#[derive(Deserialize)]
struct SplitFrame {
    kind: u8,
    done: bool,
    control: bool,
    stream: String,
    message: String,
    data_len: usize,
    data_offset: usize,
    data_hex: Option<String>,
}
#[derive(Deserialize)]
struct FrameRun {
    count: usize,
    kind: u8,
    done: bool,
    control: bool,
    stream: String,
    message: String,
    data_len: usize,
    first_data_offset: usize,
}

fn go_split_size(n: i64) -> SplitSize {
    match n {
        0 => SplitSize::DEFAULT,
        n if n < 0 => SplitSize::NEVER,
        n => SplitSize::new(n as usize).expect("positive"),
    }
}

#[test]
fn split() {
    let cases: Vec<SplitCase> = load("split.json");
    for case in &cases {
        let p = &case.packet;
        let data = match &p.data_hex {
            Some(h) => hex(h),
            None => pattern(p.data_len).to_vec(),
        };
        assert_eq!(data.len(), p.data_len, "{}", case.name);
        let data = Bytes::from(data);
        let packet = Packet {
            kind: Kind(p.kind),
            control: p.control,
            id: Id::new(num(&p.stream), num(&p.message)),
            data: data.clone(),
        };
        let split = go_split_size(case.split_size);
        let frames: Vec<Frame> = packet.frames(split).collect();
        assert_eq!(frames.len(), case.frame_count, "{}", case.name);

        // The run-length form covers every case.
        let mut want = Vec::new();
        for run in &case.frame_runs {
            for k in 0..run.count {
                let start = run.first_data_offset + k * run.data_len;
                want.push(Frame {
                    kind: Kind(run.kind),
                    done: run.done,
                    control: run.control,
                    id: Id::new(num(&run.stream), num(&run.message)),
                    data: data.slice(start..start + run.data_len),
                });
            }
        }
        assert_eq!(frames, want, "{}", case.name);

        if let Some(listed) = &case.frames {
            assert_eq!(listed.len(), frames.len(), "{}", case.name);
            for (frame, f) in frames.iter().zip(listed) {
                let slice = data.slice(f.data_offset..f.data_offset + f.data_len);
                if let Some(h) = &f.data_hex {
                    assert_eq!(slice[..], hex(h)[..], "{}", case.name);
                }
                let want = Frame {
                    kind: Kind(f.kind),
                    done: f.done,
                    control: f.control,
                    id: Id::new(num(&f.stream), num(&f.message)),
                    data: slice,
                };
                assert_eq!(*frame, want, "{}", case.name);
            }
        }

        let mut direct = Vec::new();
        packet.encode(split, &mut direct).unwrap();
        let mut framed = Vec::new();
        for frame in &frames {
            frame.encode(&mut framed).unwrap();
        }
        assert_eq!(direct, framed, "{}", case.name);
    }
    assert_eq!(cases.len(), 36);
}

#[derive(Deserialize)]
struct Errors {
    encode: Vec<ErrorEncode>,
    decode: Vec<ErrorDecode>,
}
#[derive(Deserialize)]
struct ErrorEncode {
    name: String,
    code: String,
    message_hex: String,
    wire_hex: String,
}
#[derive(Deserialize)]
struct ErrorDecode {
    name: String,
    wire_hex: String,
    message_hex: String,
    code: String,
}

#[test]
fn error_bodies() {
    let e: Errors = load("errors.json");
    for case in &e.encode {
        let body = ErrorBody::new(num(&case.code), hex(&case.message_hex));
        let mut wire = Vec::new();
        body.encode(&mut wire).unwrap();
        assert_eq!(wire, hex(&case.wire_hex), "{}", case.name);
    }
    for case in &e.decode {
        let body = ErrorBody::decode(hex(&case.wire_hex).into());
        assert_eq!(body.code, num(&case.code), "{}", case.name);
        assert_eq!(
            body.message[..],
            hex(&case.message_hex)[..],
            "{}",
            case.name
        );
    }
    assert_eq!((e.encode.len(), e.decode.len()), (16, 13));
}

#[derive(Deserialize)]
struct MetadataVectors {
    encode: Vec<MetadataEncode>,
    decode: Vec<MetadataDecode>,
}
#[derive(Deserialize)]
struct MetadataEncode {
    name: String,
    pairs_hex: Vec<(String, String)>,
    hex: String,
}
#[derive(Deserialize)]
struct MetadataDecode {
    name: String,
    input_hex: String,
    ok: bool,
    pairs_hex: Vec<(String, String)>,
    error: Option<String>,
}

fn pairs(pairs_hex: &[(String, String)]) -> Vec<(Vec<u8>, Vec<u8>)> {
    pairs_hex.iter().map(|(k, v)| (hex(k), hex(v))).collect()
}

#[test]
fn metadata() {
    let m: MetadataVectors = load("metadata.json");
    for case in &m.encode {
        let metadata: Metadata = pairs(&case.pairs_hex).into_iter().collect();
        let mut wire = Vec::new();
        metadata.encode(&mut wire).unwrap();
        assert_eq!(wire, hex(&case.hex), "{}", case.name);
        assert_eq!(wire.len(), metadata.encoded_len(), "{}", case.name);
    }
    for case in &m.decode {
        match Metadata::decode(&hex(&case.input_hex).into()) {
            Ok(metadata) => {
                assert!(case.ok, "{}: decoded but Go failed", case.name);
                let got: Vec<_> = metadata
                    .iter()
                    .map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .collect();
                assert_eq!(got, pairs(&case.pairs_hex), "{}", case.name);
            }
            Err(e) => {
                assert!(!case.ok, "{}: {e}", case.name);
                assert_eq!(Some(e.to_string()), case.error, "{}", case.name);
            }
        }
    }
    assert_eq!((m.encode.len(), m.decode.len()), (14, 25));
}

#[derive(Deserialize)]
struct Transcript {
    name: String,
    client_to_server_hex: String,
    server_to_client_hex: String,
    client_to_server_frames: Vec<TranscriptFrame>,
    server_to_client_frames: Vec<TranscriptFrame>,
}
#[derive(Deserialize)]
struct TranscriptFrame {
    kind: u8,
    done: bool,
    control: bool,
    stream: String,
    message: String,
    data_len: usize,
    data_hex: Option<String>,
}

#[test]
fn transcripts_decode_and_reencode_exactly() {
    let transcripts: Vec<Transcript> = load("transcripts.json");
    for t in &transcripts {
        let directions = [
            (
                "client_to_server",
                &t.client_to_server_hex,
                &t.client_to_server_frames,
            ),
            (
                "server_to_client",
                &t.server_to_client_hex,
                &t.server_to_client_frames,
            ),
        ];
        for (direction, wire_hex, summary) in directions {
            let wire = hex(wire_hex);
            let what = format!("{} {direction}", t.name);

            // Frame by frame, against the recorded summary.
            let mut rest = &wire[..];
            let mut count = 0;
            while let Some((frame, used)) = parse_frame(rest).unwrap() {
                let want = summary
                    .get(count)
                    .unwrap_or_else(|| panic!("{what}: extra frame"));
                let got = (
                    frame.kind,
                    frame.done,
                    frame.control,
                    frame.id,
                    frame.data.len(),
                );
                let id = Id::new(num(&want.stream), num(&want.message));
                assert_eq!(
                    got,
                    (Kind(want.kind), want.done, want.control, id, want.data_len),
                    "{what}"
                );
                if let Some(h) = &want.data_hex {
                    assert_eq!(frame.data, &hex(h)[..], "{what}");
                }
                rest = &rest[used..];
                count += 1;
            }
            assert!(
                rest.is_empty() && count == summary.len(),
                "{what}: trailing bytes"
            );

            // Whole packets with Go's reader rules, then back to bytes with Go's split rules.
            let mut reader = PacketReader::compat(PacketLimit::DEFAULT);
            let mut buf = BytesMut::from(&wire[..]);
            let mut reencoded = Vec::new();
            while let Some(packet) = reader
                .read(&mut buf)
                .unwrap_or_else(|e| panic!("{what}: {e}"))
            {
                packet.encode(SplitSize::DEFAULT, &mut reencoded).unwrap();
            }
            assert!(buf.is_empty(), "{what}: {} bytes left undecoded", buf.len());
            assert_eq!(reencoded, wire, "{what}: re-encoding differs");
        }
    }
    assert_eq!(transcripts.len(), 13);
}
