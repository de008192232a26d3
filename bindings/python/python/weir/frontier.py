"""Span frontiers over key ranges, and the policy that says when to persist them.

``Frontier(spans, ts)`` tracks the timestamp of every key in ``spans``; ``forward(span, ts)``
moves a span up and says whether the frontier (the lowest timestamp) advanced.
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
