"""weir.transfer: whole moves driven in memory with hand-built pgwire bytes, the frontend, the
reset, and every error kind."""

import struct

import pytest

import weir
from weir.transfer import (
    MAX_TRANSFER_KEY_LEN,
    POSTGRES_EMULATION_SQL,
    STATE_COLUMNS,
    BackendKey,
    Cancel,
    CancelKeys,
    CancelRequest,
    CloseNewServer,
    CloseOldServer,
    Closed,
    Config,
    Dialect,
    DialNewServer,
    Frontend,
    FrontendClosed,
    FrontendConfig,
    FrontendTransmit,
    Machine,
    Metrics,
    Outcome,
    Output,
    ReleaseOldServer,
    Reset,
    ResetConfig,
    ResetDone,
    ResetFailed,
    ResetTransmit,
    Startup,
    Transmit,
    build_cancel_request,
    build_error_response,
    build_query,
    build_startup_message,
    build_terminate,
)

SECOND = 1_000_000_000
NOW = 100 * SECOND
KEY = "key-1"
STATE = b"c3RhdGU="
TOKEN = b"dG9rZW4="
TERMINATE = b"X\x00\x00\x00\x04"
SSL_REQUEST = bytes([0, 0, 0, 8, 0x04, 0xD2, 0x16, 0x2F])

# Hand-built backend messages: a type byte, an int32 length that counts itself, the body.


def msg(tag: bytes, body: bytes) -> bytes:
    return tag + struct.pack("!I", len(body) + 4) + body


def cstr(text: str) -> bytes:
    return text.encode() + b"\x00"


def query(sql: str) -> bytes:
    return msg(b"Q", cstr(sql))


def row_description(names: list[str] | tuple[str, ...]) -> bytes:
    body = struct.pack("!h", len(names))
    for name in names:
        # table oid, column number, type oid (text), type size, type modifier, format
        body += cstr(name) + struct.pack("!IhIhih", 0, 0, 25, -1, -1, 0)
    return msg(b"T", body)


def data_row(values: list[bytes | None]) -> bytes:
    body = struct.pack("!h", len(values))
    for value in values:
        body += struct.pack("!i", -1) if value is None else struct.pack("!i", len(value)) + value
    return msg(b"D", body)


def command_complete(tag: str) -> bytes:
    return msg(b"C", cstr(tag))


def ready(status: bytes = b"I") -> bytes:
    return msg(b"Z", status)


def error_response(text: str) -> bytes:
    return msg(b"E", b"SERROR\x00CXX000\x00M" + cstr(text) + b"\x00")


def greeting(pid: int) -> bytes:
    """AuthenticationOk, a ParameterStatus, BackendKeyData (secret 42) and ReadyForQuery."""
    return (
        msg(b"R", struct.pack("!i", 0))
        + msg(b"S", cstr("server_version") + cstr("15.0"))
        + msg(b"K", struct.pack("!II", pid, 42))
        + ready()
    )


def state_response(key: str, tag: str = "SHOW TRANSFER STATE 1") -> bytes:
    return (
        row_description(STATE_COLUMNS)
        + data_row([None, STATE, TOKEN, key.encode()])
        + command_complete(tag)
        + ready()
    )


def deserialize_response(column: str, value: bytes) -> bytes:
    return row_description([column]) + data_row([value]) + command_complete("SELECT 1") + ready()


def drain(m: Machine) -> list[Output]:
    outputs: list[Output] = []
    while (output := m.poll_output()) is not None:
        outputs.append(output)
    return outputs


STARTUP = build_startup_message([("user", "alice"), ("database", "db")])


def started(config: Config | None = None) -> Machine:
    """A session past its startup, idle on server 0 (whose BackendKeyData has pid 7)."""
    m = Machine(0, config)
    m.handle_client_input(NOW, STARTUP)
    assert drain(m) == [Transmit(0, "client", STARTUP)]
    m.handle_server_input(NOW, 0, greeting(7))
    assert drain(m) == [Transmit("client", "server", greeting(7))]
    return m


def key_of(pid: int) -> BackendKey:
    return BackendKey(pid, struct.pack("!I", 42))


def test_a_whole_move_in_cockroachdbs_dialect() -> None:
    m = started()
    assert m.at_safe_point() and not m.is_transferring()
    assert m.startup_params() == [("user", "alice"), ("database", "db")]
    assert m.cancel_keys() == CancelKeys(key_of(7), key_of(7))
    assert m.poll_timeout() is None

    m.request_transfer(NOW, KEY, 1)
    assert drain(m) == [Transmit(0, "machine", query(f"SHOW TRANSFER STATE WITH '{KEY}'"))]
    assert m.is_transferring() and m.poll_timeout() == NOW + 15 * SECOND
    # The client's query is held while the session moves.
    m.handle_client_input(NOW, query("SELECT 1"))
    assert m.poll_output() is None and m.buffered_len() >= len(query("SELECT 1"))

    m.handle_server_input(NOW, 0, state_response(KEY))
    token = ("crdb:session_revival_token_base64", "dG9rZW4=")
    params = [("user", "alice"), ("database", "db"), token]
    assert drain(m) == [DialNewServer(1, params)]
    m.handle_new_server_connected(NOW, 1)
    assert drain(m) == [Transmit(1, "machine", build_startup_message(params))]
    m.handle_server_input(NOW, 1, greeting(8))
    deserialize = "SELECT crdb_internal.deserialize_session(decode('c3RhdGU=', 'base64'))"
    assert drain(m) == [Transmit(1, "machine", query(deserialize))]

    answer = deserialize_response("crdb_internal.deserialize_session", b"t")
    m.handle_server_input(NOW + SECOND, 1, answer)
    outputs = drain(m)
    assert outputs[:2] == [Transmit(0, "machine", TERMINATE), CloseOldServer(0)]
    match outputs[2]:
        case Outcome("key-1", "success", None, latency, suspended):
            assert latency == SECOND and suspended == SECOND
        case other:
            pytest.fail(f"expected a successful outcome, got {other!r}")
    # The held query goes to the new server, once.
    assert outputs[3:] == [Transmit(1, "client", query("SELECT 1"))]

    assert m.server() == 1 and not m.is_transferring() and m.poll_timeout() is None
    # The client still knows pid 7; the server it is on now expects pid 8.
    assert m.cancel_keys() == CancelKeys(key_of(7), key_of(8))
    metrics = m.metrics
    assert isinstance(metrics, Metrics)
    assert (metrics.attempted, metrics.success, metrics.error_recoverable) == (1, 1, 0)
    assert metrics.latency_ns.count == 1 and metrics.response_bytes.count == 1
    assert metrics.client_bytes == len(STARTUP) + len(query("SELECT 1"))
    assert metrics.server_bytes == len(greeting(7))


def test_a_move_in_the_postgres_dialect() -> None:
    dialect = Dialect.postgres()
    assert dialect.state_query("k") == "SELECT * FROM weir.show_transfer_state('k')"
    assert dialect.token_param == "weir.session_revival_token"
    assert "deserialize_session(state bytea)" in POSTGRES_EMULATION_SQL
    m = started(Config(dialect=dialect))
    m.request_transfer(NOW, KEY, 1)
    state_query = query(f"SELECT * FROM weir.show_transfer_state('{KEY}')")
    assert drain(m) == [Transmit(0, "machine", state_query)]
    m.handle_server_input(NOW, 0, state_response(KEY, tag="SELECT 1"))
    match drain(m):
        case [DialNewServer(1, params)]:
            assert params[-1] == ("weir.session_revival_token", "dG9rZW4=")
        case other:
            pytest.fail(f"expected a dial, got {other!r}")
    m.handle_new_server_connected(NOW, 1)
    drain(m)
    m.handle_server_input(NOW, 1, greeting(9))
    deserialize = query("SELECT weir.deserialize_session(decode('c3RhdGU=', 'base64'))")
    assert drain(m) == [Transmit(1, "machine", deserialize)]
    m.handle_server_input(NOW, 1, deserialize_response("deserialize_session", b"t"))
    results = [o.result for o in drain(m) if isinstance(o, Outcome)]
    assert results == ["success"] and m.server() == 1


def test_an_error_column_is_recoverable() -> None:
    m = started()
    m.request_transfer(NOW, KEY, 1)
    drain(m)
    m.handle_client_input(NOW, query("SELECT 1"))
    response = (
        row_description(STATE_COLUMNS)
        + data_row([b"cannot serialize: temp tables", None, None, KEY.encode()])
        + command_complete("SHOW TRANSFER STATE 1")
        + ready()
    )
    m.handle_server_input(NOW, 0, response)
    outputs = drain(m)
    failure = "the old server cannot serialize the session: cannot serialize: temp tables"
    assert outputs[0] == Outcome(KEY, "recoverable", failure, 0, 0)
    # The session stays on server 0, and the held query reaches it now.
    assert outputs[1:] == [Transmit(0, "client", query("SELECT 1"))]
    assert m.server() == 0 and m.metrics.error_recoverable == 1


def test_a_failed_dial_closes_nothing_but_the_new_server() -> None:
    m = started()
    m.request_transfer(NOW, KEY, 1)
    m.handle_server_input(NOW, 0, state_response(KEY))
    drain(m)
    m.handle_new_server_failed(NOW, 1, "connection refused")
    outputs = drain(m)
    assert CloseNewServer(1) in outputs
    failures = [o.failure for o in outputs if isinstance(o, Outcome)]
    assert failures == ["the new server could not be reached: connection refused"]
    assert m.server() == 0 and not m.is_closed()


def test_an_error_during_the_state_query_is_fatal() -> None:
    m = started()
    m.request_transfer(NOW, KEY, 1)
    drain(m)
    m.handle_server_input(NOW, 0, error_response("boom") + ready())
    outputs = drain(m)
    outcomes = [o for o in outputs if isinstance(o, Outcome)]
    assert [(o.result, o.failure) for o in outcomes] == [
        ("fatal", "the old server answered the state query with an error: ERROR XX000: boom")
    ]
    match outputs[-1]:
        case Closed(reason):
            assert reason.startswith("the session could not be moved and was closed")
        case other:
            pytest.fail(f"expected the session closed last, got {other!r}")
    assert m.is_closed() and m.metrics.error_fatal == 1
    with pytest.raises(weir.ClosedError):
        m.handle_client_input(NOW, b"x")


def test_no_safe_point_before_the_deadline_is_recoverable() -> None:
    m = started()
    # A query without its ReadyForQuery: not a safe point.
    m.handle_client_input(NOW, query("SELECT pg_sleep(60)"))
    drain(m)
    m.request_transfer(NOW, KEY, 1)
    assert drain(m) == [] and not m.at_safe_point()
    deadline = m.poll_timeout()
    assert deadline == NOW + 15 * SECOND
    m.handle_timeout(deadline - 1)
    assert m.poll_output() is None
    m.handle_timeout(deadline)
    assert drain(m) == [
        Outcome(KEY, "recoverable", "no safe point came before the deadline", 15 * SECOND, 0)
    ]


def test_a_released_old_server_is_reset_and_takes_the_next_session() -> None:
    dialect = Dialect.postgres()
    config = Config(dialect=dialect, reuse_old_server=True)
    m = started(config)
    m.request_transfer(NOW, KEY, 1)
    m.handle_server_input(NOW, 0, state_response(KEY, tag="SELECT 1"))
    drain(m)
    # Offer a connection that is already started (pid 11) instead of dialling.
    m.handle_new_server_started(NOW, 1, key_of(11))
    expected = dialect.started_server_query("c3RhdGU=", "dG9rZW4=")
    assert expected is not None
    assert drain(m) == [Transmit(1, "machine", build_query(expected))]
    m.handle_server_input(NOW, 1, deserialize_response("deserialize_session", b"t"))
    outputs = drain(m)
    assert ReleaseOldServer(0, key_of(7)) in outputs
    assert not any(isinstance(o, CloseOldServer) for o in outputs)
    assert m.cancel_keys().server == key_of(11)

    # The released connection is reset before another session uses it.
    reset = Reset(NOW, ResetConfig(token_param=dialect.token_param))
    match reset.poll_output():
        case ResetTransmit(queries):
            assert queries == query("DISCARD ALL") + query(
                "SELECT pg_catalog.set_config('weir.session_revival_token', '', false)"
            )
        case other:
            pytest.fail(f"expected the reset queries, got {other!r}")
    answer = command_complete("DISCARD ALL") + ready() + command_complete("SELECT 1") + ready()
    reset.handle_input(NOW, answer[:7])
    assert reset.poll_output() is None and reset.buffered_len() == 7
    reset.handle_input(NOW, answer[7:])
    assert reset.poll_output() == ResetDone() and reset.is_finished()
    assert reset.poll_timeout() is None
    with pytest.raises(weir.ClosedError):
        reset.handle_input(NOW, b"")


def test_a_reset_fails_on_an_error_eof_or_timeout() -> None:
    failed = Reset(NOW)
    failed.poll_output()
    failed.handle_input(NOW, error_response("no") + ready())
    assert failed.poll_output() == ResetFailed("resetting a server failed")
    closed = Reset(NOW)
    closed.handle_eof(NOW)
    assert closed.poll_output() == ResetTransmit(closed_queries())
    assert closed.poll_output() == ResetFailed("the server closed the connection during the reset")
    with pytest.raises(weir.ClosedError):
        closed.handle_eof(NOW)
    slow = Reset(NOW, ResetConfig(timeout_ns=SECOND))
    assert slow.poll_timeout() == NOW + SECOND
    slow.handle_timeout(NOW + SECOND)
    slow.poll_output()
    assert slow.poll_output() == ResetFailed("resetting a server timed out")


def closed_queries() -> bytes:
    """The reset's queries with the default (CockroachDB) token setting."""
    return query("DISCARD ALL") + query(
        "SELECT pg_catalog.set_config('crdb:session_revival_token_base64', '', false)"
    )


def test_the_frontend_answers_ssl_and_hands_on_the_startup() -> None:
    client = Frontend(NOW)
    assert client.poll_timeout() == NOW + 60 * SECOND
    client.handle_input(NOW, SSL_REQUEST)
    assert client.poll_output() == FrontendTransmit(b"N")
    assert client.poll_output() is None
    client.handle_input(NOW, bytearray(STARTUP[:5]))
    assert client.poll_output() is None and client.buffered_len() == 5
    client.handle_input(NOW, memoryview(STARTUP[5:] + query("SELECT 1")))
    assert client.poll_output() == Startup(STARTUP + query("SELECT 1"))
    assert client.is_finished() and client.poll_timeout() is None
    with pytest.raises(weir.ClosedError):
        client.handle_input(NOW, b"x")
    # What the frontend hands on starts a machine.
    m = Machine(0)
    m.handle_client_input(NOW, STARTUP)
    assert m.startup_params() == [("user", "alice"), ("database", "db")]


def test_the_frontend_reports_a_cancel_request_and_closes_bad_clients() -> None:
    cancel = Frontend(NOW)
    cancel.handle_input(NOW, build_cancel_request(key_of(7)))
    assert cancel.poll_output() == Cancel(key_of(7))
    too_long = Frontend(NOW, FrontendConfig(max_startup_len=100))
    too_long.handle_input(NOW, struct.pack("!I", 101))
    assert too_long.poll_output() == FrontendClosed("startup packet length 101 is outside 8..=100")
    silent = Frontend(NOW, FrontendConfig(login_timeout_ns=SECOND))
    silent.handle_timeout(NOW + SECOND)
    assert silent.poll_output() == FrontendClosed(
        "the client did not finish its startup within the login timeout"
    )
    nosy = Frontend(NOW, FrontendConfig(max_encryption_requests=0))
    nosy.handle_input(NOW, SSL_REQUEST)
    assert nosy.poll_output() == FrontendTransmit(b"N")
    assert nosy.poll_output() == FrontendClosed("too many encryption requests")


def test_a_cancel_request_on_the_session_is_routed_by_the_caller() -> None:
    m = Machine(0)
    m.handle_client_input(NOW, build_cancel_request(key_of(7)))
    assert drain(m) == [CancelRequest(key_of(7)), Closed("the connection carried a CancelRequest")]


def test_builders_and_constants() -> None:
    assert build_query("SELECT 1") == query("SELECT 1")
    assert build_cancel_request(BackendKey(7, b"\x00\x00\x00\x2a")) == (
        struct.pack("!IIII", 16, 80877102, 7, 42)
    )
    error = build_error_response("53300", "too many clients")
    assert error.startswith(b"E") and struct.unpack("!I", error[1:5])[0] == len(error) - 1
    assert b"C53300\x00Mtoo many clients\x00" in error
    assert STATE_COLUMNS == (
        "error",
        "session_state_base64",
        "session_revival_token_base64",
        "transfer_key",
    )
    assert MAX_TRANSFER_KEY_LEN == 128


def test_configs_default_to_the_cores() -> None:
    config = Config()
    assert config.dialect == Dialect.cockroachdb() == Dialect()
    assert config.transfer_timeout_ns == 15 * SECOND
    assert (config.max_held_client_bytes, config.max_held_server_bytes) == (1 << 20, 64 << 10)
    assert (config.max_transfer_response_len, config.max_small_message_len) == (16 << 20, 4 << 10)
    assert (config.max_message_len, config.max_startup_len) == (2**31 - 1, 10_000)
    assert config.reuse_old_server is False
    assert Config(reuse_old_server=True) != config
    assert Dialect.cockroachdb().started_server_query("s", "t") is None
    assert FrontendConfig().login_timeout_ns == 60 * SECOND
    assert FrontendConfig().max_encryption_requests == 2
    assert ResetConfig().token_param == "crdb:session_revival_token_base64"
    assert ResetConfig().timeout_ns == 5 * SECOND


def test_outputs_are_values() -> None:
    assert Transmit("client", "server", b"a") == Transmit("client", "server", b"a")
    assert Transmit("client", "server", b"a") != Transmit(0, "server", b"a")
    assert repr(Transmit(3, "machine", b"X")) == "Transmit(3, 'machine', b'X')"
    assert repr(Transmit("client", "server", b"")) == "Transmit('client', 'server', b'')"
    assert repr(BackendKey(7, b"\x00")) == "BackendKey(7, b'\\x00')"
    assert repr(CloseOldServer(2)) == "CloseOldServer(2)"
    assert repr(Outcome("k", "success", None, 1, 2)) == "Outcome('k', 'success', None, 1, 2)"
    assert repr(DialNewServer(1, [("user", "a")])) == "DialNewServer(1, [('user', 'a')])"
    assert repr(ResetDone()) == "ResetDone()" and repr(Startup(b"s")) == "Startup(b's')"
    assert len({key_of(1), key_of(1), key_of(2)}) == 2
    match Transmit(1, "client", b"q"):
        case Transmit(1, "client", data):
            assert data == b"q"
        case _:
            pytest.fail("a transmit to server 1 matches")


def test_usage_errors() -> None:
    m = started()
    with pytest.raises(weir.UsageError, match="transfer key"):
        m.request_transfer(NOW, "it's", 1)
    with pytest.raises(weir.UsageError, match="transfer key"):
        m.request_transfer(NOW, "k" * (MAX_TRANSFER_KEY_LEN + 1), 1)
    with pytest.raises(weir.UsageError, match="not a connection"):
        m.request_transfer(NOW, KEY, 0)
    with pytest.raises(weir.UsageError, match="not a connection"):
        m.handle_server_input(NOW, 5, b"")
    with pytest.raises(weir.UsageError, match="no new server"):
        m.handle_new_server_connected(NOW, 1)
    m.request_transfer(NOW, KEY, 1)
    with pytest.raises(weir.UsageError, match="already in progress"):
        m.request_transfer(NOW, KEY, 2)
    m.handle_server_input(NOW, 0, state_response(KEY))
    with pytest.raises(weir.UsageError, match="not been reported connected"):
        m.handle_server_input(NOW, 1, greeting(8))
    with pytest.raises(weir.UsageError, match="cannot carry a revival token"):
        m.handle_new_server_started(NOW, 1, key_of(11))
    m.handle_new_server_connected(NOW, 1)
    with pytest.raises(weir.UsageError, match="already connected"):
        m.handle_new_server_connected(NOW, 1)
    with pytest.raises(TypeError):
        m.handle_client_input(NOW, "text")  # type: ignore[arg-type]
    with pytest.raises(weir.UsageError, match="to must be"):
        Transmit("nobody", "client", b"")  # type: ignore[arg-type]
    with pytest.raises(weir.UsageError, match="source must be"):
        Transmit(0, "elsewhere", b"")  # type: ignore[arg-type]
    with pytest.raises(weir.UsageError, match="NUL"):
        build_query("SELECT '\x00'")
    with pytest.raises(weir.UsageError, match="above the limit"):
        build_startup_message([("user", "a" * 100)], max_len=50)


def test_limit_error_takes_nothing() -> None:
    m = started(Config(max_held_client_bytes=16))
    m.request_transfer(NOW, KEY, 1)
    drain(m)
    m.handle_client_input(NOW, query("SELECT 1"))
    with pytest.raises(weir.LimitError, match="limit of 16"):
        m.handle_client_input(NOW, query("SELECT 2"))
    # Only the first query was taken: it alone reaches the server once the transfer fails.
    refusal = data_row([b"busy", None, None, KEY.encode()])
    tail = command_complete("SHOW TRANSFER STATE 1") + ready()
    m.handle_server_input(NOW, 0, row_description(STATE_COLUMNS) + refusal + tail)
    relayed = [o for o in drain(m) if isinstance(o, Transmit)]
    assert relayed == [Transmit(0, "client", query("SELECT 1"))]


def test_a_client_that_breaks_the_protocol_closes_the_session() -> None:
    m = started()
    m.handle_client_input(NOW, b"Q\x00\x00\x00\x02")
    outputs = drain(m)
    reason = (
        "the client broke the wire protocol: message 81 declares length 2, below the minimum of 4"
    )
    assert outputs == [Closed(reason)]
    with pytest.raises(weir.ClosedError):
        m.request_transfer(NOW, KEY, 1)


def test_metrics_add_up() -> None:
    m = started()
    m.request_transfer(NOW, KEY, 1)
    m.handle_server_input(NOW, 0, state_response(KEY))
    drain(m)
    m.handle_new_server_failed(NOW + SECOND, 1, "connection refused")
    drain(m)
    one = m.metrics
    assert (one.attempted, one.error_recoverable, one.latency_ns.count) == (1, 1, 1)
    zero = Metrics()
    assert (zero.attempted, zero.server_bytes, zero.latency_ns.count) == (0, 0, 0)
    assert zero.merge(one) == one
    total = one.merge(one)
    assert (total.attempted, total.error_recoverable) == (2, 2)
    assert total.latency_ns.count == 2 and total.latency_ns.sum == 2 * one.latency_ns.sum
    assert total.latency_ns.max == one.latency_ns.max == SECOND
    assert total.server_bytes == 2 * one.server_bytes > 0
    # Merging made a new snapshot; the operands are as they were.
    assert one.attempted == 1 and zero.attempted == 0
    assert repr(zero).startswith("TransferMetrics(attempted=0, success=0,")


def test_terminate() -> None:
    assert build_terminate() == TERMINATE


def test_only_the_postgres_dialect_has_the_machine_replay_prepared_statements() -> None:
    assert Dialect.postgres().replay_prepared_statements
    assert not Dialect.cockroachdb().replay_prepared_statements
    assert not Dialect(replay_prepared_statements=False).replay_prepared_statements
