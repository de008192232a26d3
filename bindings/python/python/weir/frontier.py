"""Span frontiers over key ranges, and the policy that says when to persist them.

``Frontier(spans, ts)`` tracks the timestamp of every key in ``spans``; ``forward(span, ts)``
moves a span up and says whether the frontier (the lowest timestamp) advanced.
``Frontier.checkpoint(max_bytes)`` keeps the spans ahead of the frontier, ``restore`` puts them
back after a restart, and ``Checkpoint.to_bytes()`` / ``Checkpoint.from_bytes(data)`` carry a
checkpoint to and from storage (UTF-8 JSON of the core's serde form).
``CheckpointPolicy`` wraps a frontier and emits ``PersistHighWater`` and ``PersistCheckpoint``
outputs on a clock the caller passes in.
"""

from weir._weir import (
    Checkpoint,
    CheckpointPolicy,
    Frontier,
    PersistCheckpoint,
    PersistHighWater,
    PolicyConfig,
    PolicyMetrics,
    Span,
    Timestamp,
)

Output = PersistHighWater | PersistCheckpoint
"""What ``CheckpointPolicy.poll_output()`` returns (or ``None``)."""

__all__ = [
    "Checkpoint",
    "CheckpointPolicy",
    "Frontier",
    "Output",
    "PersistCheckpoint",
    "PersistHighWater",
    "PolicyConfig",
    "PolicyMetrics",
    "Span",
    "Timestamp",
]
