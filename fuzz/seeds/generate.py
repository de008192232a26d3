#!/usr/bin/env python3
"""Writes the seed corpora of the wire fuzz targets from the Go-produced DRPC vectors.

Run from the fuzz/ folder: python3 seeds/generate.py. The output is committed; rerun it when the
vectors or the targets' input layouts change.
"""
import json
import pathlib

HERE = pathlib.Path(__file__).resolve().parent
VECTORS = HERE.parent.parent / "tests" / "vectors" / "drpc"
LARGEST = 4096  # keep seeds small: libFuzzer mutates short inputs far faster


def load(name):
    return json.loads((VECTORS / name).read_text())


def write(target, name, data):
    folder = HERE / target
    folder.mkdir(exist_ok=True)
    (folder / name).write_bytes(data[:LARGEST])


def main():
    transcripts = load("transcripts.json")
    streams = []
    for t in transcripts:
        streams.append((t["name"] + "-c2s", bytes.fromhex(t["client_to_server_hex"])))
        streams.append((t["name"] + "-s2c", bytes.fromhex(t["server_to_client_hex"])))

    # wire_frames: one chunk-size byte, then wire bytes.
    for case in load("frames.json"):
        wire = bytes.fromhex(case["wire_hex"])
        if len(wire) <= LARGEST:
            write("wire_frames", "frame-" + case["name"], bytes([7]) + wire)
    for case in load("frames_parse.json"):
        write("wire_frames", "parse-" + case["name"], bytes([3]) + bytes.fromhex(case["input_hex"]))
    for name, wire in streams:
        write("wire_frames", "transcript-" + name, bytes([15]) + wire)

    # wire_packets: mode, limit and chunk bytes, then wire bytes (both modes for each input).
    for case in load("reader.json"):
        wire = bytes.fromhex(case["input_hex"])
        if len(wire) <= LARGEST:
            for mode in (0, 1):
                write("wire_packets", f"reader-{mode}-{case['name']}", bytes([mode, 3, 5]) + wire)
    for name, wire in streams:
        for mode in (0, 1):
            write("wire_packets", f"transcript-{mode}-{name}", bytes([mode, 3, 15]) + wire)

    # mux_session_bytes: mode (0 client, 1 server) and chunk bytes, then what the peer sent.
    for t in transcripts:
        write("mux_session_bytes", "server-" + t["name"], bytes([1, 7]) + bytes.fromhex(t["client_to_server_hex"]))
        write("mux_session_bytes", "client-" + t["name"], bytes([0, 7]) + bytes.fromhex(t["server_to_client_hex"]))

    # wire_bodies: raw metadata and error bodies.
    metadata = load("metadata.json")
    for case in metadata["encode"]:
        write("wire_bodies", "metadata-encode-" + case["name"], bytes.fromhex(case["hex"]))
    for case in metadata["decode"]:
        write("wire_bodies", "metadata-decode-" + case["name"], bytes.fromhex(case["input_hex"]))
    errors = load("errors.json")
    for case in errors["encode"] + errors["decode"]:
        write("wire_bodies", "error-" + case["name"], bytes.fromhex(case["wire_hex"]))


if __name__ == "__main__":
    main()
