"""Arbitrary bytes into every byte-reading piece of weir.transfer and weir.wire: whatever comes
in, a call returns or raises a WeirError, never anything else (a panic in the native module
would surface as pyo3's PanicException, which is not one)."""

from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

import weir
from weir.transfer import Config, Frontend, FrontendConfig, Machine, Reset, build_startup_message
from weir.wire import PacketReader, parse_frame

chunks = st.lists(st.binary(max_size=64), max_size=12)


def survives(call: Callable[[], object]) -> None:
    """Runs `call`; a refusal must be one of weir's errors."""
    try:
        call()
    except weir.WeirError:
        pass


@given(chunks=chunks)
@settings(max_examples=200)
def test_the_frontend_takes_any_bytes(chunks: list[bytes]) -> None:
    frontend = Frontend(0, FrontendConfig(max_startup_len=64))
    for i, chunk in enumerate(chunks):
        survives(lambda: frontend.handle_input(i, chunk))
        while frontend.poll_output() is not None:
            pass
    assert frontend.buffered_len() <= 64


@given(chunks=chunks)
@settings(max_examples=200)
def test_the_reset_takes_any_bytes(chunks: list[bytes]) -> None:
    reset = Reset(0)
    for i, chunk in enumerate(chunks):
        survives(lambda: reset.handle_input(i, chunk))
        while reset.poll_output() is not None:
            pass


@given(client=chunks, server=chunks, transfer_at=st.integers(min_value=0, max_value=12))
@settings(max_examples=200)
def test_the_machine_takes_any_bytes_from_either_side(
    client: list[bytes], server: list[bytes], transfer_at: int
) -> None:
    machine = Machine(0, Config(max_held_client_bytes=256, max_small_message_len=128))
    survives(lambda: machine.handle_client_input(0, build_startup_message([("user", "u")])))
    for i in range(max(len(client), len(server))):
        if i == transfer_at:
            survives(lambda: machine.request_transfer(i, "k", 1))
        if i < len(client):
            survives(lambda: machine.handle_client_input(i, client[i]))
        if i < len(server):
            survives(lambda: machine.handle_server_input(i, 0, server[i]))
        # The transfer's new server, whether or not one is being dialled.
        new_server = server[i % len(server)] if server else b""
        survives(lambda: machine.handle_server_input(i, 1, new_server))
        while machine.poll_output() is not None:
            pass
    machine.handle_timeout(10**12)
    while machine.poll_output() is not None:
        pass
    assert not machine.is_transferring()


@given(chunks=chunks, limit=st.integers(min_value=-1, max_value=64))
@settings(max_examples=200)
def test_the_wire_codec_takes_any_bytes(chunks: list[bytes], limit: int) -> None:
    reader = PacketReader.go(limit)
    for chunk in chunks:
        survives(lambda: parse_frame(chunk))
        survives(lambda: reader.feed(chunk))
        try:
            while reader.read() is not None:
                pass
        except weir.WeirError:
            pass
