"""The DRPC connection machine (compat mode, byte for byte with Go DRPC, and mux mode).

``Session("client", Config.mux())`` is one side of a connection. Feed it the peer's bytes with
``handle_input(now, data)``, drive it with ``open_stream``, ``send``, ``close_send``, ``cancel``
and ``read``, and drain ``poll_output()`` until ``None`` after every call: ``Transmit`` outputs
carry the bytes to write, the others report what happened. ``Session.read(stream)`` returns the
next message as ``bytes``, ``None`` when nothing has arrived yet, ``Eof()`` at the end,
``Failed(code, message)`` or ``Canceled()``.
"""

from weir._weir import (
    Canceled,
    Closed,
    Config,
    Eof,
    Failed,
    Finished,
    Histogram,
    Metrics,
    Opened,
    Readable,
    RemoteCanceled,
    RemoteClosed,
    RemoteClosedSend,
    RemoteError,
    Session,
    Transmit,
    Writable,
)

Output = (
    Transmit
    | Opened
    | Readable
    | Writable
    | RemoteClosedSend
    | RemoteError
    | RemoteCanceled
    | RemoteClosed
    | Finished
    | Closed
)
"""What ``Session.poll_output()`` returns (or ``None``)."""

Read = bytes | Eof | Failed | Canceled
"""What ``Session.read()`` returns (or ``None``: nothing yet)."""

__all__ = [
    "Canceled",
    "Closed",
    "Config",
    "Eof",
    "Failed",
    "Finished",
    "Histogram",
    "Metrics",
    "Opened",
    "Output",
    "Read",
    "Readable",
    "RemoteCanceled",
    "RemoteClosed",
    "RemoteClosedSend",
    "RemoteError",
    "Session",
    "Transmit",
    "Writable",
]
