"""The sockets of ``weir.asyncio.pg``: one protocol class for every connection, the reset of a
server connection a session left, and the pool that keeps reset connections."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from weir.transfer import (
    BackendKey,
    Reset,
    ResetConfig,
    ResetDone,
    ResetFailed,
    ResetTransmit,
    build_terminate,
)

log = logging.getLogger("weir.asyncio.pg")

FLUSH_ON_CLOSE = 5.0
"""Seconds a closed connection has to deliver what it still buffers before it is aborted."""


LINGER = 1.0
"""Seconds a refused client has to read its refusal before its connection is aborted."""


def now_ns() -> int:
    """The machines' clock: ``time.monotonic_ns()``."""
    return time.monotonic_ns()


class Owner:
    """Whoever a `Link`'s events go to now; every handler does nothing by default."""

    def link_data(self, link: Link, data: bytes) -> None:
        """The peer sent `data`."""

    def link_closed(self, link: Link, reason: str) -> None:
        """The connection ended (once per link): EOF, an error, or our own close."""

    def link_writable(self, link: Link, writable: bool) -> None:
        """The link's write buffer went above its high-water mark (False) or back down (True)."""


class Link(asyncio.Protocol):
    """One socket. Its events go to `owner`, which changes as a server connection goes from
    one role to the next (a move's new server, a session's server, a released one being
    reset, a kept idle one)."""

    def __init__(self, owner: Owner, write_limit: int) -> None:
        self.owner = owner
        self.write_limit = write_limit
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.write_paused = False
        self.reading = True
        self.on_made: Callable[[Link], None] | None = None
        self.on_lost: Callable[[Link], None] | None = None
        self._abort: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        # Past `write_limit` bytes waiting for this peer, the owner stops reading the other.
        transport.set_write_buffer_limits(high=self.write_limit, low=self.write_limit // 2)
        if self.on_made is not None:
            self.on_made(self)

    def data_received(self, data: bytes) -> None:
        self.owner.link_data(self, data)

    def eof_received(self) -> bool:
        # The transport closes itself; connection_lost follows.
        self._lost("the peer closed the connection")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._abort is not None:
            self._abort.cancel()
        self._lost(str(exc) if exc is not None else "the connection was closed")
        if self.on_lost is not None:
            on_lost, self.on_lost = self.on_lost, None
            on_lost(self)

    def _lost(self, reason: str) -> None:
        if not self.closed:
            self.closed = True
            self.owner.link_closed(self, reason)

    def pause_writing(self) -> None:
        self.write_paused = True
        self.owner.link_writable(self, False)

    def resume_writing(self) -> None:
        self.write_paused = False
        self.owner.link_writable(self, True)

    def write(self, data: bytes) -> None:
        """Queue `data` (nothing once the link is closed)."""
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def buffered(self) -> int:
        """Bytes written and not yet taken by the peer."""
        if self.transport is None or self.closed:
            return 0
        return self.transport.get_write_buffer_size()

    def set_reading(self, reading: bool) -> None:
        """Read from the peer, or stop until called again with True."""
        if self.transport is None or self.closed or reading == self.reading:
            return
        self.reading = reading
        if reading:
            self.transport.resume_reading()
        else:
            self.transport.pause_reading()

    def close(self) -> None:
        """Close once what is buffered is written; abort after `FLUSH_ON_CLOSE` seconds."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.close()
        self._abort = asyncio.get_running_loop().call_later(FLUSH_ON_CLOSE, transport.abort)

    def linger(self) -> None:
        """Write EOF after what is buffered and close once the peer does, or after
        `LINGER` seconds: a client that sent its startup packet and is told no reads the
        answer instead of a reset connection."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        transport.write_eof()
        self._abort = asyncio.get_running_loop().call_later(LINGER, transport.abort)

    def terminate(self) -> None:
        """Say goodbye to a server (a Terminate message) and close."""
        self.write(build_terminate())
        self.close()


class Closing(Owner):
    """The owner of a connection that is going away: it ignores everything."""


CLOSING = Closing()


@dataclass
class IdleServer:
    """A started, reset server connection, idle at a message boundary."""

    link: Link
    key: BackendKey | None
    """The BackendKeyData the server sent when it started."""
    params: list[tuple[str, str]]
    """The startup parameters it was started with: only a session with these may take it."""


class IdlePool(Owner):
    """Reset server connections per backend, each list bounded; one closed or talking while
    idle leaves the pool."""

    def __init__(self, backends: int, max_per_backend: int) -> None:
        self.lists: list[deque[IdleServer]] = [deque() for _ in range(backends)]
        self.max_per_backend = max_per_backend

    def take(self, backend: int, params: list[tuple[str, str]]) -> IdleServer | None:
        """The most recently kept connection to `backend` started with `params`."""
        servers = self.lists[backend]
        for i in range(len(servers) - 1, -1, -1):
            server = servers[i]
            if server.params == params:
                del servers[i]
                return server
        return None

    def keep(self, backend: int, server: IdleServer) -> bool:
        """Keep `server` (the oldest goes when the list is full); False if none may be kept."""
        if self.max_per_backend == 0 or server.link.closed:
            server.link.terminate()
            return False
        servers = self.lists[backend]
        if len(servers) >= self.max_per_backend:
            servers.popleft().link.terminate()
        server.link.owner = self
        server.link.set_reading(True)
        servers.append(server)
        return True

    def clear(self, backend: int) -> None:
        """Close every connection kept for `backend`."""
        servers = self.lists[backend]
        while servers:
            servers.popleft().link.terminate()

    def counts(self) -> list[int]:
        """Connections kept per backend."""
        return [len(servers) for servers in self.lists]

    def _drop(self, link: Link) -> None:
        for servers in self.lists:
            for server in servers:
                if server.link is link:
                    servers.remove(server)
                    return

    def link_data(self, link: Link, data: bytes) -> None:
        # An idle server says nothing unless it is going away (a FATAL before it closes).
        self._drop(link)
        link.close()

    def link_closed(self, link: Link, reason: str) -> None:
        self._drop(link)


class Resetter(Owner):
    """Runs a `weir.transfer.Reset` on a connection a session released, then hands it to
    `done` (or closes it when the reset fails)."""

    def __init__(
        self,
        link: Link,
        config: ResetConfig,
        done: Callable[[Link], None],
    ) -> None:
        self.link = link
        self.done = done
        self.reset = Reset(now_ns(), config)
        self.timer: asyncio.TimerHandle | None = None
        link.owner = self
        link.set_reading(True)
        self._pump()

    def link_data(self, link: Link, data: bytes) -> None:
        if not self.reset.is_finished():
            self.reset.handle_input(now_ns(), data)
            self._pump()

    def link_closed(self, link: Link, reason: str) -> None:
        if not self.reset.is_finished():
            self.reset.handle_eof(now_ns())
            self._pump()

    def _on_timer(self) -> None:
        self.timer = None
        self.reset.handle_timeout(now_ns())
        self._pump()

    def _pump(self) -> None:
        while (output := self.reset.poll_output()) is not None:
            match output:
                case ResetTransmit(data):
                    self.link.write(data)
                case ResetDone():
                    self.done(self.link)
                case ResetFailed(reason):
                    log.debug("a released server was not kept: %s", reason)
                    self.link.owner = CLOSING
                    self.link.close()
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        deadline = self.reset.poll_timeout()
        if deadline is not None:
            delay = max(0.0, (deadline - now_ns()) / 1e9)
            self.timer = asyncio.get_running_loop().call_later(delay, self._on_timer)
