"""Flow-control budgets for replication traffic.

``FlowControl(Config())`` keeps token pools per destination stream (``StreamId(tenant,
store)``): regular work deducts from the regular and elastic pools, elastic work from the
elastic pool only, and control work never waits. ``admit(now, id, class_, bytes, targets)``
asks for tokens; the outcome comes out of ``poll_output()`` as ``Admitted(id, grant)``,
``Queued(id, deadline)`` or ``Rejected(id, reason)``. ``bind`` ties an admitted request to a
``LogPosition``, and ``handle_admitted`` returns its tokens once the receivers report that
position admitted. Work classes are the strings ``"control"``, ``"regular"`` and
``"elastic"``.

``Config`` and ``Metrics`` are the native ``FlowConfig`` and ``FlowMetrics`` under their names
in this module.
"""

from typing import Literal

from weir._weir import (
    Admitted,
    ClassMetrics,
    FlowControl,
    Grant,
    LogPosition,
    Queued,
    Rejected,
    StreamId,
    Target,
    Targets,
)
from weir._weir import FlowConfig as Config
from weir._weir import FlowMetrics as Metrics

Output = Admitted | Queued | Rejected
"""What ``FlowControl.poll_output()`` returns (or ``None``)."""

Class = Literal["control"] | Literal["regular"] | Literal["elastic"]
"""A work class, as ``admit``, ``deduct``, ``handle_admitted`` and ``Grant.class_`` name it."""

__all__ = [
    "Admitted",
    "Class",
    "ClassMetrics",
    "Config",
    "FlowControl",
    "Grant",
    "LogPosition",
    "Metrics",
    "Output",
    "Queued",
    "Rejected",
    "StreamId",
    "Target",
    "Targets",
]
