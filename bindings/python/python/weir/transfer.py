"""Moving a live PostgreSQL-wire session from one server to another without the client noticing.

``Machine(0, Config(dialect=Dialect.postgres()))`` sits between one client and its first server,
which the caller names ``0``. Feed it the client's bytes with ``handle_client_input(now,
data)`` and each server's with ``handle_server_input(now, server, data)``; drain
``poll_output()`` after every call: ``Transmit(to, source, data)`` says what to write where
(``to`` is ``"client"`` or a server id), and the other outputs say which connection to dial,
close or hand back. ``request_transfer(now, key, to)`` moves the session to a new server the
caller names ``to``; it ends in one ``Outcome``. ``cancel_keys()`` routes CancelRequests after
a move.

``Frontend`` reads a new client's first packet (answering encryption requests ``N``) and hands
on its StartupMessage (``Startup``) or CancelRequest (``Cancel``). ``Reset`` makes a server
connection a session left (``ReleaseOldServer``) ready for another session.

``Config``, ``Metrics``, ``Transmit`` and ``Closed`` are the native ``TransferConfig``,
``TransferMetrics``, ``TransferTransmit`` and ``TransferClosed`` under their names in this
module.
"""

from weir._weir import (
    MAX_TRANSFER_KEY_LEN,
    POSTGRES_EMULATION_SQL,
    STATE_COLUMNS,
    BackendKey,
    Cancel,
    CancelKeys,
    CancelRequest,
    CloseNewServer,
    CloseOldServer,
    Dialect,
    DialNewServer,
    Frontend,
    FrontendClosed,
    FrontendConfig,
    FrontendTransmit,
    Machine,
    Outcome,
    ReleaseOldServer,
    Reset,
    ResetConfig,
    ResetDone,
    ResetFailed,
    ResetTransmit,
    Startup,
    build_cancel_request,
    build_error_response,
    build_query,
    build_startup_message,
    build_terminate,
)
from weir._weir import TransferClosed as Closed
from weir._weir import TransferConfig as Config
from weir._weir import TransferMetrics as Metrics
from weir._weir import TransferTransmit as Transmit

Output = (
    Transmit
    | DialNewServer
    | CloseOldServer
    | ReleaseOldServer
    | CloseNewServer
    | Closed
    | Outcome
    | CancelRequest
)
"""What ``Machine.poll_output()`` returns (or ``None``)."""

FrontendOutput = FrontendTransmit | Startup | Cancel | FrontendClosed
"""What ``Frontend.poll_output()`` returns (or ``None``)."""

ResetOutput = ResetTransmit | ResetDone | ResetFailed
"""What ``Reset.poll_output()`` returns (or ``None``)."""

__all__ = [
    "MAX_TRANSFER_KEY_LEN",
    "POSTGRES_EMULATION_SQL",
    "STATE_COLUMNS",
    "BackendKey",
    "Cancel",
    "CancelKeys",
    "CancelRequest",
    "CloseNewServer",
    "CloseOldServer",
    "Closed",
    "Config",
    "DialNewServer",
    "Dialect",
    "Frontend",
    "FrontendClosed",
    "FrontendConfig",
    "FrontendOutput",
    "FrontendTransmit",
    "Machine",
    "Metrics",
    "Outcome",
    "Output",
    "ReleaseOldServer",
    "Reset",
    "ResetConfig",
    "ResetDone",
    "ResetFailed",
    "ResetOutput",
    "ResetTransmit",
    "Startup",
    "Transmit",
    "build_cancel_request",
    "build_error_response",
    "build_query",
    "build_startup_message",
    "build_terminate",
]
