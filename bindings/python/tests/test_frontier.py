"""weir.frontier: spans, timestamps, the frontier, and the checkpoint policy on a virtual clock."""

from hypothesis import given
from hypothesis import strategies as st

import weir
from weir.frontier import (
    CheckpointPolicy,
    Frontier,
    PersistCheckpoint,
    PersistHighWater,
    PolicyConfig,
    Span,
    Timestamp,
)

SECOND = 1_000_000_000


def secs(s: int) -> Timestamp:
    return Timestamp(s * SECOND)


def test_span_and_timestamp_values() -> None:
    span = Span(b"a", b"m")
    assert (span.start, span.end) == (b"a", b"m")
    assert span == Span(b"a", b"m") and hash(span) == hash(Span(b"a", b"m"))
    assert repr(span) == "Span(b'a', b'm')"
    assert Timestamp(5) < Timestamp(5, 1) < Timestamp(6)
    assert len({Timestamp(5), Timestamp(5, 0), Timestamp(5, 1)}) == 2
    match Timestamp(7, 2):
        case Timestamp(wall, logical):
            assert (wall, logical) == (7, 2)


def test_forward_moves_the_frontier_once_every_span_has() -> None:
    frontier = Frontier([Span(b"a", b"m"), Span(b"m", b"z")], secs(1))
    assert frontier.frontier() == secs(1)
    assert frontier.forward(Span(b"a", b"m"), secs(3)) is False
    assert frontier.frontier() == secs(1)
    assert frontier.forward(Span(b"m", b"z"), secs(2)) is True
    assert frontier.frontier() == secs(2)
    assert frontier.forward(Span(b"a", b"z"), secs(2)) is False
    assert frontier.get(b"b") == secs(3) and frontier.get(b"zz") is None
    assert frontier.entries() == [(Span(b"a", b"m"), secs(3)), (Span(b"m", b"z"), secs(2))]


def test_an_empty_frontier_has_no_frontier() -> None:
    assert Frontier([], secs(1)).frontier() is None


def test_policy_persists_the_high_water_once_per_interval() -> None:
    frontier = Frontier([Span(b"a", b"z")], secs(0))
    policy = CheckpointPolicy(0, frontier, config=PolicyConfig(interval_ns=10 * SECOND))
    # The first decision clears any checkpoint an earlier run may have left.
    first = policy.poll_output()
    assert isinstance(first, PersistCheckpoint) and first.checkpoint.groups == []
    assert policy.metrics.cleared_checkpoints == 1
    assert policy.poll_output() is None

    assert policy.handle_resolved(1 * SECOND, Span(b"a", b"z"), secs(5)) is True
    assert policy.poll_output() == PersistHighWater(secs(5))
    assert policy.poll_output() is None

    policy.handle_resolved(2 * SECOND, Span(b"a", b"z"), secs(6))
    assert policy.poll_output() is None
    assert policy.poll_timeout() == 11 * SECOND
    policy.handle_timeout(11 * SECOND)
    output = policy.poll_output()
    match output:
        case PersistHighWater(ts):
            assert ts == secs(6)
        case _:
            raise AssertionError(f"expected a high-water, got {output!r}")
    assert policy.metrics.high_water_persists == 2
    assert policy.metrics.resolved_spans == 2


def test_policy_checkpoints_the_spans_ahead_while_the_frontier_lags() -> None:
    frontier = Frontier([Span(b"a", b"m"), Span(b"m", b"z")], secs(0))
    config = PolicyConfig(interval_ns=10 * SECOND, lag_threshold_ns=5 * SECOND)
    policy = CheckpointPolicy(0, frontier, config=config)
    assert isinstance(policy.poll_output(), PersistCheckpoint)
    assert policy.poll_output() is None

    policy.handle_resolved(1 * SECOND, Span(b"a", b"m"), secs(20))
    output = policy.poll_output()
    assert isinstance(output, PersistCheckpoint)
    assert output.checkpoint.groups == [(secs(20), [Span(b"a", b"m")])]
    assert output.checkpoint.omitted_spans == 0
    assert policy.metrics.checkpoints == 1

    # The lag clears: an empty checkpoint replaces the stale one at once.
    policy.handle_resolved(2 * SECOND, Span(b"m", b"z"), secs(20))
    outputs = [policy.poll_output(), policy.poll_output(), policy.poll_output()]
    assert PersistHighWater(secs(20)) in outputs
    assert outputs[-1] is None
    cleared = [o for o in outputs if isinstance(o, PersistCheckpoint)]
    assert len(cleared) == 1 and cleared[0].checkpoint.groups == []


def test_policy_refuses_an_empty_span_as_usage() -> None:
    policy = CheckpointPolicy(0, Frontier([Span(b"a", b"z")], secs(0)))
    try:
        policy.handle_resolved(0, Span(b"a", b"a"), secs(1))
    except weir.UsageError:
        return
    raise AssertionError("an empty span was accepted")


KEYS = [bytes([k]) for k in range(8)]
keys = st.integers(min_value=0, max_value=len(KEYS) - 1)


@st.composite
def spans(draw: st.DrawFn) -> tuple[int, int]:
    start = draw(st.integers(min_value=0, max_value=len(KEYS) - 2))
    end = draw(st.integers(min_value=start + 1, max_value=len(KEYS) - 1))
    return start, end


@given(
    tracked=st.lists(spans(), max_size=4),
    forwards=st.lists(st.tuples(spans(), st.integers(min_value=0, max_value=5)), max_size=20),
)
def test_frontier_matches_a_model_of_one_timestamp_per_key(
    tracked: list[tuple[int, int]], forwards: list[tuple[tuple[int, int], int]]
) -> None:
    frontier = Frontier([Span(KEYS[s], KEYS[e]) for s, e in tracked], Timestamp(0))
    model = {k: 0 for s, e in tracked for k in range(s, e)}
    for (s, e), wall in forwards:
        before = min(model.values(), default=None)
        for k in range(s, e):
            if k in model:
                model[k] = max(model[k], wall)
        after = min(model.values(), default=None)
        advanced = frontier.forward(Span(KEYS[s], KEYS[e]), Timestamp(wall))
        assert advanced == (before is not None and after is not None and after > before)
        assert frontier.frontier() == (None if after is None else Timestamp(after))
        for k in range(len(KEYS)):
            expected = model.get(k)
            assert frontier.get(KEYS[k]) == (None if expected is None else Timestamp(expected))
