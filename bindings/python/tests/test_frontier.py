"""weir.frontier: spans, timestamps, the frontier, and the checkpoint policy on a virtual clock."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

import weir
from weir.frontier import (
    Checkpoint,
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


# Keys of different lengths, in byte order, so that checkpoint budgets cut at different places.
# Every span the tests make starts and ends on one of them, so the key space falls into the atomic
# ranges [VARIED[k], VARIED[k + 1]), and the model keeps one timestamp per range.
VARIED = [b"a", b"ab", b"b", b"bcd", b"c", b"d\x00", b"e", b"ffff"]
Model = dict[int, tuple[int, int]]


@st.composite
def varied_spans(draw: st.DrawFn) -> tuple[int, int]:
    start = draw(st.integers(min_value=0, max_value=len(VARIED) - 2))
    end = draw(st.integers(min_value=start + 1, max_value=len(VARIED) - 1))
    return start, end


timestamps = st.tuples(st.integers(min_value=0, max_value=4), st.integers(min_value=0, max_value=2))


def runs(model: Model) -> list[tuple[int, int, tuple[int, int]]]:
    """Maximal runs of touching ranges at one timestamp: what `entries()` must list."""
    out: list[tuple[int, int, tuple[int, int]]] = []
    for k in sorted(model):
        if out and out[-1][1] == k and out[-1][2] == model[k]:
            out[-1] = (out[-1][0], k + 1, model[k])
        else:
            out.append((k, k + 1, model[k]))
    return out


def model_checkpoint(
    model: Model, max_bytes: int
) -> tuple[list[tuple[Timestamp, list[Span]]], int]:
    """The documented budget rule, by brute force: the runs ahead of the frontier, timestamps
    from the highest, keys in order, each kept if its key bytes fit in what is left."""
    if not model:
        return [], 0
    high = min(model.values())
    budget, omitted = max_bytes, 0
    groups: list[tuple[Timestamp, list[Span]]] = []
    for ts in sorted({ts for ts in model.values() if ts > high}, reverse=True):
        kept: list[Span] = []
        for s, e, run_ts in runs(model):
            if run_ts != ts:
                continue
            cost = len(VARIED[s]) + len(VARIED[e])
            if cost <= budget:
                budget -= cost
                kept.append(Span(VARIED[s], VARIED[e]))
            else:
                omitted += 1
        if kept:
            groups.append((Timestamp(*ts), kept))
    return groups, omitted


@given(
    tracked=st.lists(varied_spans(), min_size=1, max_size=4),
    forwards=st.lists(st.tuples(varied_spans(), timestamps), max_size=16),
    max_bytes=st.integers(min_value=0, max_value=24),
)
def test_entries_checkpoints_and_restores_match_a_model(
    tracked: list[tuple[int, int]],
    forwards: list[tuple[tuple[int, int], tuple[int, int]]],
    max_bytes: int,
) -> None:
    frontier = Frontier([Span(VARIED[s], VARIED[e]) for s, e in tracked], Timestamp(0))
    model: Model = {k: (0, 0) for s, e in tracked for k in range(s, e)}
    for (s, e), ts in forwards:
        frontier.forward(Span(VARIED[s], VARIED[e]), Timestamp(*ts))
        for k in range(s, e):
            if k in model:
                model[k] = max(model[k], ts)
        assert frontier.entries() == [
            (Span(VARIED[s], VARIED[e]), Timestamp(*ts)) for s, e, ts in runs(model)
        ]

    checkpoint = frontier.checkpoint(max_bytes)
    groups, omitted = model_checkpoint(model, max_bytes)
    assert checkpoint.groups == groups
    assert checkpoint.omitted_spans == omitted
    assert Checkpoint.from_bytes(checkpoint.to_bytes()) == checkpoint

    # A restart at the persisted high-water gets back what the checkpoint kept, and no more.
    high = frontier.frontier()
    assert high is not None
    restarted = Frontier([Span(VARIED[s], VARIED[e]) for s, e in tracked], high)
    assert restarted.restore(Checkpoint.from_bytes(checkpoint.to_bytes())) is False
    kept = {k for _, spans in groups for span in spans for k in keys_of(span)}
    for k, ts in model.items():
        want = Timestamp(*ts) if k in kept else high
        assert restarted.get(VARIED[k]) == want
    if omitted == 0:
        assert restarted.entries() == frontier.entries()


def keys_of(span: Span) -> range:
    return range(VARIED.index(span.start), VARIED.index(span.end))


def test_checkpoint_bytes_round_trip_and_refuse_what_is_not_one() -> None:
    frontier = Frontier([Span(b"a", b"\xff\xff")], secs(1))
    frontier.forward(Span(b"b", b"c"), Timestamp(5 * SECOND, 2))
    frontier.forward(Span(b"d", b"\xff\x00binary"), secs(9))
    checkpoint = frontier.checkpoint()
    data = checkpoint.to_bytes()
    back = Checkpoint.from_bytes(data)
    assert back == checkpoint and back.to_bytes() == data
    assert back.groups == [
        (secs(9), [Span(b"d", b"\xff\x00binary")]),
        (Timestamp(5 * SECOND, 2), [Span(b"b", b"c")]),
    ]
    empty = Frontier([Span(b"a", b"z")], secs(1)).checkpoint()
    assert empty.groups == [] and Checkpoint.from_bytes(empty.to_bytes()) == empty
    with pytest.raises(weir.UsageError, match="not a checkpoint"):
        Checkpoint.from_bytes(b"\x00not json")
    with pytest.raises(weir.UsageError, match="not a checkpoint"):
        Checkpoint.from_bytes(data[:-1])
    inverted = data.replace(b'"start":[98],"end":[99]', b'"start":[99],"end":[98]')
    assert inverted != data
    with pytest.raises(weir.UsageError, match="not a checkpoint"):
        Checkpoint.from_bytes(inverted)
