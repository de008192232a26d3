"""weir.mux: two sessions driven against each other in memory on a virtual clock."""

import pytest

import weir
from weir import mux
from weir.mux import (
    Canceled,
    Closed,
    Config,
    Eof,
    Finished,
    Opened,
    Readable,
    RemoteCanceled,
    RemoteClosedSend,
    Session,
    Transmit,
)

SECOND = 1_000_000_000


def pump(now: int, a: Session, b: Session) -> tuple[list[mux.Output], list[mux.Output]]:
    """Moves bytes both ways until neither side has any; returns each side's other outputs."""
    reports: tuple[list[mux.Output], list[mux.Output]] = ([], [])
    moved = True
    while moved:
        moved = False
        for side, (src, dst) in enumerate(((a, b), (b, a))):
            while (output := src.poll_output()) is not None:
                if isinstance(output, Transmit):
                    dst.handle_input(now, output.data)
                    src.handle_written(len(output.data))
                    moved = True
                else:
                    reports[side].append(output)
    return reports


def drain(session: Session, stream: int) -> list[bytes]:
    messages: list[bytes] = []
    while isinstance(message := session.read(stream), bytes):
        messages.append(message)
    return messages


def test_the_package_under_test_is_the_installed_wheel() -> None:
    assert "site-packages" in (weir.__file__ or "")
    assert weir.__version__ == "0.1.0"


def test_unary_call_in_compat_mode() -> None:
    client, server = Session("client"), Session("server", Config())
    stream = client.open_stream(0, "/echo.Echo/Unary", {"k": "v"})
    client.send(0, stream, b"hello")
    client.close_send(0, stream)
    _, served = pump(0, client, server)
    assert served[0] == Opened(stream, "/echo.Echo/Unary", {"k": "v"})
    assert Readable(stream) in served and RemoteClosedSend(stream) in served
    assert drain(server, stream) == [b"hello"]
    assert server.read(stream) == Eof()

    server.send(SECOND, stream, bytearray(b"HELLO"))
    server.close_send(SECOND, stream)
    answered, finished = pump(SECOND, client, server)
    assert Readable(stream) in answered
    assert drain(client, stream) == [b"HELLO"]
    assert client.read(stream) == Eof()
    _, more = pump(SECOND, client, server)
    assert Finished(stream) in finished + more
    assert client.metrics.streams_opened == 1
    assert server.metrics.bytes_received == client.metrics.bytes_sent


def test_bidi_stream_in_mux_mode() -> None:
    client, server = Session("client", Config.mux()), Session("server", Config.mux())
    stream = client.open_stream(0, "/echo.Echo/Bidi")
    for i in range(5):
        client.send(i, stream, memoryview(f"ping {i}".encode()))
        _, served = pump(i, client, server)
        for message in drain(server, stream):
            server.send(i, stream, message.replace(b"ping", b"pong"))
        pump(i, client, server)
        assert drain(client, stream) == [f"pong {i}".encode()]
    client.cancel(10, stream)
    _, served = pump(10, client, server)
    assert RemoteCanceled(stream) in served
    assert server.read(stream) == Canceled()


def test_outputs_match_by_position() -> None:
    match Opened(3, "/a", {}):
        case Opened(stream, rpc, metadata):
            assert (stream, rpc, metadata) == (3, "/a", {})
    match Transmit(b"xy"):
        case Transmit(data):
            assert data == b"xy"
    assert repr(Readable(4)) == "Readable(4)"
    assert repr(Opened(1, "/a", {"k": "v"})) == "Opened(1, '/a', {'k': 'v'})"
    assert repr(Closed("gone", True)) == "Closed('gone', is_limit=True)"
    assert Readable(4) != Finished(4)


def test_a_peer_breaking_the_protocol_closes_the_session() -> None:
    server = Session("server", Config.mux())
    server.handle_input(0, b"\xff" * 32)
    output = server.poll_output()
    assert isinstance(output, Closed) and not output.is_limit
    assert "protocol error" in output.reason
    assert server.poll_output() is None and server.is_closed()
    with pytest.raises(weir.ClosedError):
        server.handle_input(1, b"\x00")
    with pytest.raises(weir.ClosedError):
        server.send(1, 1, b"late")


def test_an_idle_server_closes_at_its_deadline() -> None:
    server = Session("server", Config(idle_timeout_ns=5 * SECOND, handshake_timeout_ns=None))
    server.handle_input(0, b"")
    deadline = server.poll_timeout()
    assert deadline == 5 * SECOND
    server.handle_timeout(deadline)
    output = server.poll_output()
    assert isinstance(output, Closed) and output.is_limit


def test_config_defaults_are_the_cores() -> None:
    assert Config(mode="mux", max_unread_per_stream=16 << 20) == Config.mux()
    assert Config().mode == "compat" and Config.mux().mode == "mux"
    assert Config().handshake_timeout_ns == 10 * SECOND
