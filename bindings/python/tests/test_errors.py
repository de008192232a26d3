"""Every error kind, provoked once and checked by class."""

import pytest

import weir
from weir.frontier import Span
from weir.mux import Config, Session


def test_the_hierarchy() -> None:
    for error in (
        weir.UsageError,
        weir.LimitError,
        weir.ClosedError,
        weir.RemoteProtocolError,
        weir.RemoteError,
    ):
        assert issubclass(error, weir.WeirError)
    assert issubclass(weir.WeirError, Exception)


def test_usage() -> None:
    with pytest.raises(weir.UsageError):
        Span(b"b", b"a")
    with pytest.raises(weir.UsageError):
        Session("client").read(7)
    with pytest.raises(weir.UsageError):
        Session("server").open_stream(0, "/a")
    with pytest.raises(weir.UsageError):
        Session("neither")
    with pytest.raises(weir.UsageError):
        Config(mode="fast")


def test_limit() -> None:
    client = Session("client")
    client.open_stream(0, "/a")
    with pytest.raises(weir.LimitError):
        client.open_stream(0, "/b")
    muxed = Session("client", Config(mode="mux", max_concurrent_streams=1))
    muxed.open_stream(0, "/a")
    with pytest.raises(weir.LimitError):
        muxed.open_stream(0, "/b")


def test_closed() -> None:
    server = Session("server")
    server.handle_input(0, b"\xff" * 16)
    while server.poll_output() is not None:
        pass
    with pytest.raises(weir.ClosedError):
        server.handle_input(0, b"")


def test_remote_error_carries_code_and_message() -> None:
    error = weir.RemoteError(5, "not found")
    assert (error.code, error.message) == (5, "not found")
    assert str(error) == "remote error 5: not found"
