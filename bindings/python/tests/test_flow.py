"""weir.flow: the flow controller on a virtual clock, its outputs, metrics and every error."""

import pytest

import weir
from weir.flow import (
    Admitted,
    ClassMetrics,
    Config,
    FlowControl,
    Grant,
    LogPosition,
    Metrics,
    Output,
    Queued,
    Rejected,
    StreamId,
    Target,
    Targets,
)

SECOND = 1_000_000_000
MIB = 1 << 20


def s(n: int) -> StreamId:
    return StreamId(1, n)


def pos(index: int) -> LogPosition:
    return LogPosition(1, index)


def controller(n: int, config: Config | None = None) -> FlowControl:
    """A controller with streams 1..=n connected at position 1/0."""
    fc = FlowControl(config)
    for i in range(1, n + 1):
        fc.connect_stream(0, s(i), pos(0))
    return fc


def three() -> Targets:
    return Targets.majority([s(1), s(2), s(3)])


def drain(fc: FlowControl) -> list[Output]:
    outputs: list[Output] = []
    while (output := fc.poll_output()) is not None:
        outputs.append(output)
    return outputs


def exhaust(fc: FlowControl, stream: StreamId, position: LogPosition) -> None:
    """Drains `stream`'s regular pool to exactly zero with a direct deduction."""
    available = fc.available(stream, "regular")
    assert available is not None and available > 0
    assert fc.deduct(0, stream, "regular", position, available) == "deducted"
    assert fc.available(stream, "regular") == 0


def test_config_defaults_are_the_cores() -> None:
    config = Config()
    assert config.regular_tokens == 16 * MIB and config.elastic_tokens == 8 * MIB
    assert config.max_waiting == 1024 and config.max_waiting_bytes == 64 * MIB
    assert config.max_in_flight == 65_536 and config.max_wait_ns == 10 * SECOND
    assert (config.max_streams, config.max_targets) == (10_000, 16)
    assert FlowControl().config == config
    small = Config(regular_tokens=MIB, max_wait_ns=SECOND)
    assert small != config and small.elastic_tokens == config.elastic_tokens
    assert FlowControl(small).config == small
    assert repr(small).startswith("Config(regular_tokens=1048576, elastic_tokens=8388608,")


def test_values_compare_hash_and_match() -> None:
    assert s(1) == StreamId(1, 1) and hash(s(1)) == hash(StreamId(1, 1))
    assert StreamId(1, 9) < StreamId(2, 0) and pos(5) < LogPosition(2, 0)
    assert repr(s(3)) == "StreamId(1, 3)" and repr(pos(4)) == "LogPosition(1, 4)"
    match LogPosition(3, 4):
        case LogPosition(term, index):
            assert (term, index) == (3, 4)
    targets = three().with_must_have(s(1)).with_replica(s(4))
    assert targets.quorum == 2 and targets.contains(s(4)) and not targets.contains(s(5))
    assert targets.replicas == [Target(s(1), True), Target(s(2)), Target(s(3)), Target(s(4))]
    assert three().replicas[0].must_have is False
    assert Targets(1).with_replica(s(1)) == Targets(1).with_replica(s(1))
    assert repr(Targets(1).with_must_have(s(2))) == (
        "Targets(quorum=1, replicas=[Target(StreamId(1, 2), must_have=True)])"
    )


def test_a_write_is_admitted_bound_and_returned() -> None:
    fc = controller(3)
    targets = three().with_must_have(s(1))
    fc.admit(0, 1, "regular", MIB, targets)
    output = fc.poll_output()
    match output:
        case Admitted(1, Grant("regular", size, charged, [], 0)):
            assert size == MIB and charged == [s(1), s(2), s(3)]
        case _:
            pytest.fail(f"expected an admission, got {output!r}")
    assert fc.poll_output() is None
    assert fc.available(s(2), "regular") == 15 * MIB
    assert fc.tracked(s(2), "regular") == MIB and fc.unbound() == 1
    fc.bind(0, 1, pos(1))
    assert fc.unbound() == 0
    for stream in (s(1), s(2), s(3)):
        assert fc.handle_admitted(0, stream, "regular", pos(1)) == MIB
        # Reports are absolute: a repeat returns nothing more.
        assert fc.handle_admitted(0, stream, "regular", pos(1)) == 0
    assert fc.available(s(2), "regular") == 16 * MIB
    assert fc.check_invariants() is None
    metrics = fc.metrics
    assert isinstance(metrics, Metrics) and isinstance(metrics.regular, ClassMetrics)
    assert metrics.regular.tokens_deducted == 3 * MIB
    assert metrics.regular.tokens_returned == 3 * MIB
    assert metrics.regular.requests_admitted == 1
    assert metrics.regular.wait_duration_ns.count == 1
    assert metrics.regular.stream_count == 3
    assert metrics.regular.tokens_available == 48 * MIB


def test_control_work_never_waits_nor_deducts() -> None:
    fc = controller(3)
    fc.admit(0, 7, "control", 64, three())
    assert fc.poll_output() == Admitted(7, Grant("control", 64, [], [], 0))
    assert fc.available(s(1), "regular") == 16 * MIB
    assert fc.available(s(1), "control") is None
    assert fc.metrics.control_requests == 1


def test_a_slow_replica_is_deferred_and_paid_later() -> None:
    fc = controller(3)
    exhaust(fc, s(3), pos(1))
    fc.admit(0, 1, "regular", MIB, three())
    output = fc.poll_output()
    assert isinstance(output, Admitted)
    assert output.grant.charged == [s(1), s(2)] and output.grant.deferred == [s(3)]
    assert fc.deduct(0, s(3), "regular", pos(2), MIB) == "no_tokens"
    fc.handle_admitted(0, s(3), "regular", pos(1))
    assert fc.deduct(0, s(3), "regular", pos(2), MIB) == "deducted"
    fc.handle_admitted(0, s(3), "regular", pos(2))
    assert fc.deduct(0, s(3), "regular", pos(2), MIB) == "already_admitted"
    assert fc.check_invariants() is None


def test_a_waiter_is_admitted_by_a_return() -> None:
    fc = controller(1)
    one = Targets.majority([s(1)])
    exhaust(fc, s(1), pos(1))
    assert fc.poll_timeout() is None
    fc.admit(1 * SECOND, 1, "regular", MIB, one)
    assert fc.poll_output() == Queued(1, 11 * SECOND)
    assert fc.waiting() == 1 and fc.waiting_bytes() == MIB
    assert fc.metrics.regular.requests_waiting == 1
    assert fc.metrics.regular.blocked_stream_count == 1
    assert fc.poll_timeout() == 11 * SECOND
    # The return admits the waiter, three seconds after it asked.
    assert fc.handle_admitted(4 * SECOND, s(1), "regular", pos(1)) == 16 * MIB
    match drain(fc):
        case [Admitted(1, grant)]:
            assert grant.waited_ns == 3 * SECOND
        case other:
            pytest.fail(f"expected the waiter's admission, got {other!r}")
    assert fc.poll_timeout() is None
    assert fc.metrics.regular.wait_duration_ns.max >= 3 * SECOND


def test_a_waiter_times_out_at_its_deadline_or_is_cancelled() -> None:
    fc = controller(1)
    one = Targets.majority([s(1)])
    assert fc.deduct(0, s(1), "elastic", pos(1), 8 * MIB) == "deducted"
    fc.admit(1 * SECOND, 1, "elastic", MIB, one)
    assert drain(fc) == [Queued(1, 11 * SECOND)]
    fc.admit(2 * SECOND, 2, "elastic", MIB, one)
    assert drain(fc) == [Queued(2, 12 * SECOND)]
    fc.handle_timeout(11 * SECOND - 1)
    assert fc.poll_output() is None
    fc.handle_timeout(11 * SECOND)
    assert drain(fc) == [Rejected(1, "timed_out")]
    assert fc.poll_timeout() == 12 * SECOND
    fc.cancel(11 * SECOND, 2)
    assert fc.poll_timeout() is None and fc.poll_output() is None
    assert fc.metrics.elastic.requests_errored == 2
    assert fc.check_invariants() is None


def test_the_queue_is_bounded_with_typed_rejections() -> None:
    config = Config(max_waiting=2, max_waiting_bytes=3 * MIB, max_in_flight=4)
    fc = controller(1, config)
    one = Targets.majority([s(1)])
    exhaust(fc, s(1), pos(1))

    def ask(id: int, size: int) -> Output | None:
        fc.admit(0, id, "regular", size, one)
        output = fc.poll_output()
        assert fc.poll_output() is None
        return output

    assert isinstance(ask(1, 2 * MIB), Queued)
    assert ask(2, 2 * MIB) == Rejected(2, "queue_bytes_full")
    assert isinstance(ask(3, MIB), Queued)
    assert ask(4, 1) == Rejected(4, "queue_full")
    fc.handle_admitted(0, s(1), "regular", pos(1))
    assert [type(o) for o in drain(fc)] == [Admitted, Admitted]
    assert isinstance(ask(5, 1), Admitted) and isinstance(ask(6, 1), Admitted)
    assert ask(7, 1) == Rejected(7, "too_many_in_flight")
    fc.release(0, 5)
    assert fc.metrics.regular.tokens_unaccounted == 1
    assert isinstance(ask(7, 1), Admitted)
    assert fc.check_invariants() is None


def test_disconnect_returns_tokens_and_unblocks_waiters() -> None:
    fc = controller(3)
    fc.deduct(0, s(3), "elastic", pos(1), 8 * MIB)
    fc.admit(0, 1, "elastic", MIB, three())
    assert isinstance(fc.poll_output(), Queued)
    fc.disconnect_stream(0, s(3))
    assert fc.is_connected(s(3)) is False and fc.is_connected(s(9)) is None
    assert fc.available(s(3), "elastic") == 8 * MIB
    output = fc.poll_output()
    assert isinstance(output, Admitted) and output.grant.charged == [s(1), s(2)]
    assert fc.metrics.elastic.requests_bypassed == 1
    fc.remove_stream(0, s(3))
    assert fc.available(s(3), "elastic") is None
    fc.connect_stream(0, s(3), pos(5))
    assert fc.is_connected(s(3)) is True


def test_outputs_are_values() -> None:
    grant = Grant("regular", 5, [s(1)], [s(2)], 7)
    assert grant == Grant("regular", 5, [s(1)], [s(2)], 7)
    assert grant != Grant("elastic", 5, [s(1)], [s(2)], 7)
    assert repr(grant) == "Grant('regular', 5, [StreamId(1, 1)], [StreamId(1, 2)], 7)"
    assert repr(Admitted(3, grant)).startswith("Admitted(3, Grant(")
    assert repr(Queued(1, 2)) == "Queued(1, 2)"
    assert repr(Rejected(1, "queue_full")) == "Rejected(1, 'queue_full')"
    assert len({Queued(1, 2), Queued(1, 2), Rejected(1, "timed_out")}) == 2


def test_every_usage_error() -> None:
    fc = controller(3, Config(max_targets=2, regular_tokens=MIB))
    with pytest.raises(weir.UsageError, match="class must be"):
        fc.admit(0, 1, "urgent", 1, three())  # type: ignore[arg-type]
    with pytest.raises(weir.UsageError, match="at least one byte"):
        fc.admit(0, 1, "regular", 0, three())
    with pytest.raises(weir.UsageError, match="exceeds"):
        fc.admit(0, 1, "regular", MIB + 1, Targets.majority([s(1)]))
    with pytest.raises(weir.UsageError, match="at least one replica"):
        fc.admit(0, 1, "regular", 1, Targets(1))
    with pytest.raises(weir.UsageError, match="exceed the limit"):
        fc.admit(0, 1, "regular", 1, three())
    with pytest.raises(weir.UsageError, match="named twice"):
        fc.admit(0, 1, "regular", 1, Targets(1).with_replica(s(1)).with_replica(s(1)))
    with pytest.raises(weir.UsageError, match="quorum 3 is impossible"):
        fc.admit(0, 1, "regular", 1, Targets(3).with_replica(s(1)))
    fc.admit(0, 1, "regular", 1, Targets.majority([s(1)]))
    drain(fc)
    with pytest.raises(weir.UsageError, match="already in flight"):
        fc.admit(0, 1, "regular", 1, Targets.majority([s(1)]))
    with pytest.raises(weir.UsageError, match="not in flight"):
        fc.bind(0, 2, pos(1))
    with pytest.raises(weir.UsageError, match="not in flight"):
        fc.cancel(0, 1)
    with pytest.raises(weir.UsageError, match="unknown"):
        fc.disconnect_stream(0, s(9))
    with pytest.raises(weir.UsageError, match="already connected"):
        fc.connect_stream(0, s(1), pos(0))
    with pytest.raises(weir.UsageError, match="no token pools"):
        fc.deduct(0, s(1), "control", pos(1), 1)
    fc.disconnect_stream(0, s(2))
    with pytest.raises(weir.UsageError, match="disconnected"):
        fc.deduct(0, s(2), "regular", pos(1), 1)
    # Nothing changed: the one admitted request is still the only one held.
    assert fc.unbound() == 1 and fc.check_invariants() is None


def test_every_limit_error() -> None:
    fc = controller(1, Config(max_streams=1))
    with pytest.raises(weir.LimitError, match="limit of 1 streams"):
        fc.connect_stream(0, s(2), pos(0))
    fc.admit(0, 1, "control", 1, Targets.majority([s(1)]))
    # The first admission's output is undrained: nothing else gets in until it is.
    with pytest.raises(weir.LimitError, match="undrained"):
        fc.admit(0, 2, "control", 1, Targets.majority([s(1)]))
    assert len(drain(fc)) == 1
    fc.admit(0, 2, "control", 1, Targets.majority([s(1)]))
    assert fc.metrics.control_requests == 2
