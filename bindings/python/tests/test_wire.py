"""weir.wire: the Go-recorded DRPC vectors in tests/vectors/drpc replayed through the binding,
every case and every field, as the Rust vector tests do, and the codec's errors."""

import json
from pathlib import Path
from typing import Any

import pytest

import weir
from weir.wire import (
    DEFAULT_MAX_PACKET_LEN,
    DEFAULT_SPLIT_SIZE,
    Frame,
    Packet,
    PacketReader,
    parse_frame,
)

VECTORS = Path(__file__).resolve().parents[3] / "tests" / "vectors" / "drpc"


def load(name: str) -> Any:
    return json.loads((VECTORS / name).read_text())


def pattern(length: int) -> bytes:
    """The vectors' data pattern: byte i is (i*7 + 3) mod 256."""
    return bytes((i * 7 + 3) % 256 for i in range(length))


def go_split(size: int) -> int | None:
    """Go's SplitSize: 0 is the default, negative never splits."""
    if size == 0:
        return DEFAULT_SPLIT_SIZE
    return None if size < 0 else size


def fields(frame: Frame) -> tuple[int, bool, bool, int, int, int]:
    return (frame.kind, frame.done, frame.control, frame.stream, frame.message, len(frame.data))


def summary(want: dict[str, Any]) -> tuple[int, bool, bool, int, int, int]:
    return (
        want["kind"],
        want["done"],
        want["control"],
        int(want["stream"]),
        int(want["message"]),
        want["data_len"],
    )


def test_frames() -> None:
    cases = load("frames.json")
    for case in cases:
        data = bytes.fromhex(case["data_hex"])
        frame = Frame(
            case["kind"],
            case["done"],
            case["control"],
            int(case["stream"]),
            int(case["message"]),
            data,
        )
        wire = frame.encode()
        assert wire == bytes.fromhex(case["wire_hex"]), case["name"]
        assert frame.encoded_len() == len(wire), case["name"]
        parsed = parse_frame(wire)
        assert parsed is not None, case["name"]
        got, used = parsed
        assert used == len(wire), case["name"]
        if case["roundtrips"]:
            assert got == frame, case["name"]
            assert got.data == data, case["name"]
        else:
            assert fields(got) == summary(case["parsed"]), case["name"]
    assert len(cases) == 56


def test_frames_parse() -> None:
    cases = load("frames_parse.json")
    for case in cases:
        data = bytes.fromhex(case["input_hex"])
        try:
            parsed = parse_frame(data)
        except weir.RemoteProtocolError as error:
            assert not case["ok"], case["name"]
            assert str(error) == case["error"], case["name"]
            continue
        if parsed is None:
            assert not case["ok"] and case["error"] is None, case["name"]
            assert data == bytes.fromhex(case["rest_hex"]), case["name"]
            continue
        assert case["ok"], f"{case['name']}: parsed but Go did not"
        frame, used = parsed
        want = case["frame"]
        assert frame == Frame(
            want["kind"],
            want["done"],
            want["control"],
            int(want["stream"]),
            int(want["message"]),
            bytes.fromhex(want["data_hex"]),
        ), case["name"]
        assert data[used:] == bytes.fromhex(case["rest_hex"]), case["name"]
    assert len(cases) == 24


def packet_of(want: dict[str, Any]) -> Packet:
    return Packet(
        want["kind"],
        want["control"],
        int(want["stream"]),
        int(want["message"]),
        bytes.fromhex(want["data_hex"]),
    )


def read_all(maximum_buffer_size: int, data: bytes, chunk: int) -> tuple[list[Packet], str]:
    """Feeds `data` in pieces of `chunk` bytes; the packets, and Go's text for how the stream
    ended (`EOF` when the input ran out)."""
    reader = PacketReader.go(maximum_buffer_size)
    packets: list[Packet] = []
    for start in range(0, len(data), max(chunk, 1)):
        reader.feed(data[start : start + max(chunk, 1)])
        try:
            while (packet := reader.read()) is not None:
                packets.append(packet)
        except weir.RemoteProtocolError as error:
            return packets, f"protocol error: {error}"
    return packets, "EOF"


def test_reader() -> None:
    cases = load("reader.json")
    for case in cases:
        data = bytes.fromhex(case["input_hex"])
        whole = read_all(case["max_buffer_size"], data, len(data))
        bytewise = read_all(case["max_buffer_size"], data, 1)
        assert whole == bytewise, f"{case['name']}: the result depends on chunking"
        go_whole = ([packet_of(p) for p in case["packets"]], case["error"])
        if case["chunking_sensitive"]:
            # Go's raw read-buffer check depends on how many bytes each Read returns; a reader
            # that decodes as bytes arrive may match either of Go's results.
            one = case["one_byte_reader"]
            go_bytewise = ([packet_of(p) for p in one["packets"]], one["error"])
            assert whole in (go_whole, go_bytewise), case["name"]
        else:
            assert whole == go_whole, case["name"]
    assert len(cases) == 44


def test_split() -> None:
    cases = load("split.json")
    for case in cases:
        p = case["packet"]
        data = bytes.fromhex(p["data_hex"]) if p["data_hex"] is not None else pattern(p["data_len"])
        assert len(data) == p["data_len"], case["name"]
        packet = Packet(p["kind"], p["control"], int(p["stream"]), int(p["message"]), data)
        split = go_split(case["split_size"])
        frames = packet.frames(split)
        assert len(frames) == case["frame_count"], case["name"]

        # The run-length form covers every case.
        want: list[Frame] = []
        for run in case["frame_runs"]:
            for k in range(run["count"]):
                start = run["first_data_offset"] + k * run["data_len"]
                want.append(
                    Frame(
                        run["kind"],
                        run["done"],
                        run["control"],
                        int(run["stream"]),
                        int(run["message"]),
                        data[start : start + run["data_len"]],
                    )
                )
        assert frames == want, case["name"]

        if case.get("frames") is not None:
            listed = case["frames"]
            assert len(listed) == len(frames), case["name"]
            for frame, f in zip(frames, listed):
                piece = data[f["data_offset"] : f["data_offset"] + f["data_len"]]
                if f.get("data_hex") is not None:
                    assert piece == bytes.fromhex(f["data_hex"]), case["name"]
                assert frame == Frame(
                    f["kind"],
                    f["done"],
                    f["control"],
                    int(f["stream"]),
                    int(f["message"]),
                    piece,
                ), case["name"]

        wire = packet.encode(split)
        assert wire == b"".join(frame.encode() for frame in frames), case["name"]
        assert packet.encoded_len(split) == len(wire), case["name"]
    assert len(cases) == 36


def test_transcripts_decode_and_reencode_exactly() -> None:
    transcripts = load("transcripts.json")
    for t in transcripts:
        for direction in ("client_to_server", "server_to_client"):
            wire = bytes.fromhex(t[f"{direction}_hex"])
            listed = t[f"{direction}_frames"]
            what = f"{t['name']} {direction}"

            # Frame by frame, against the recorded summary.
            rest = wire
            count = 0
            while (parsed := parse_frame(rest)) is not None:
                frame, used = parsed
                assert count < len(listed), f"{what}: extra frame"
                want = listed[count]
                assert fields(frame) == summary(want), what
                if want.get("data_hex") is not None:
                    assert frame.data == bytes.fromhex(want["data_hex"]), what
                rest = rest[used:]
                count += 1
            assert rest == b"" and count == len(listed), f"{what}: trailing bytes"

            # Whole packets with Go's reader rules, then back to bytes with Go's split rules.
            reader = PacketReader()
            reader.feed(wire)
            reencoded = b""
            while (packet := reader.read()) is not None:
                reencoded += packet.encode()
            assert reader.buffered_len() == 0, f"{what}: bytes left undecoded"
            assert reencoded == wire, f"{what}: re-encoding differs"
    assert len(transcripts) == 13


def test_values_and_reprs() -> None:
    frame = Frame(2, True, False, 1, 2, b"hi")
    assert frame.encode() == bytes([0x05, 1, 2, 2]) + b"hi"
    assert repr(frame) == "Frame(2, True, False, 1, 2, b'hi')"
    match frame:
        case Frame(2, True, _, stream, message, data):
            assert (stream, message, data) == (1, 2, b"hi")
        case _:
            pytest.fail("a done Message frame matches")
    packet = Packet(2, False, 1, 2, bytearray(b"hello"))
    assert repr(packet) == "Packet(2, False, 1, 2, b'hello')"
    assert [f.data for f in packet.frames(2)] == [b"he", b"ll", b"o"]
    assert [f.done for f in packet.frames(2)] == [False, False, True]
    assert len(packet.frames(None)) == 1 and len(packet.frames()) == 1
    assert Packet(2, False, 1, 2, memoryview(b"hello")) == packet
    assert parse_frame(frame.encode()[:-1]) is None
    assert (DEFAULT_SPLIT_SIZE, DEFAULT_MAX_PACKET_LEN) == (64 << 10, 4 << 20)


def test_the_reader_limit_and_its_errors() -> None:
    reader = PacketReader(max_packet_len=4)
    assert reader.max_packet_len == 4 and PacketReader().max_packet_len == DEFAULT_MAX_PACKET_LEN
    assert PacketReader.go(-1).max_packet_len is None
    big = Packet(2, False, 1, 1, b"hello")
    # A packet of five bytes in frames of two: past the limit of four once joined.
    reader.feed(big.encode(2))
    with pytest.raises(weir.RemoteProtocolError, match="data overflow"):
        while reader.read() is not None:
            pass
    with pytest.raises(weir.ClosedError):
        reader.read()
    with pytest.raises(weir.ClosedError):
        reader.feed(b"")
    # Ids only move up: the same packet twice is a replay.
    replay = PacketReader()
    replay.feed(Packet(2, False, 1, 1, b"a").encode() * 2)
    assert replay.read() == Packet(2, False, 1, 1, b"a")
    with pytest.raises(weir.RemoteProtocolError, match="id monotonicity violation"):
        replay.read()
    with pytest.raises(weir.RemoteProtocolError, match="varint too long"):
        parse_frame(b"\x05" + b"\xff" * 11)
    with pytest.raises(weir.UsageError, match="split_size"):
        big.encode(0)
    with pytest.raises(TypeError):
        parse_frame("text")  # type: ignore[arg-type]
