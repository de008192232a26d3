"""weir: sans-IO protocol machines, from Rust.

Each machine is a pure state machine: bytes and events go in through ``handle_*`` calls, bytes
to write and events come out of ``poll_output()``, and time is passed in by the caller as ``int``
nanoseconds. ``weir.mux`` holds the DRPC connection machine, ``weir.wire`` the DRPC frame codec,
``weir.transfer`` the PostgreSQL session mover with its pgwire frontend and server reset,
``weir.flow`` the flow controller, and ``weir.frontier`` the span frontier, its checkpoints and
their policy.

A call raises only when it changed nothing: ``UsageError`` (local misuse), ``LimitError`` (a
configured limit) or ``ClosedError`` (the machine is closed), all ``WeirError``. A peer that
breaks the protocol shows up as an output, never as an exception from ``handle_input``.
"""

from importlib.metadata import PackageNotFoundError, version

from weir._weir import ClosedError, LimitError, RemoteProtocolError, UsageError, WeirError

try:
    __version__ = version("weir")
except PackageNotFoundError:
    __version__ = "0.0.0"


class RemoteError(WeirError):
    """A DRPC error sent by the remote handler: its ``code`` and ``message``.

    IO adapters raise it on the calling side; a handler raises it to send that code.
    """

    code: int
    message: str

    def __init__(self, code: int, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"remote error {self.code}: {self.message}"


__all__ = [
    "ClosedError",
    "LimitError",
    "RemoteError",
    "RemoteProtocolError",
    "UsageError",
    "WeirError",
    "__version__",
]
