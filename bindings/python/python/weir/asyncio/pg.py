"""A PostgreSQL proxy on asyncio that moves live sessions between servers.

Two PostgreSQL servers with ``weir.transfer.POSTGRES_EMULATION_SQL`` installed and ``trust``
authentication, a proxy in front of them, and every session on the first moved to the second::

    import asyncio

    from weir.asyncio import pg
    from weir.transfer import Config, Dialect


    async def main() -> None:
        backends = [("127.0.0.1", 5432), ("127.0.0.1", 5433)]
        config = pg.ProxyConfig(transfer=Config(dialect=Dialect.postgres()))
        async with await pg.serve(backends, "127.0.0.1", 6432, config=config) as proxy:
            await asyncio.sleep(60)  # clients connect to port 6432 meanwhile
            proxy.set_draining(0, True)  # no new sessions on backend 0
            for session, outcome in (await proxy.move_all(0, to=1)).items():
                print(session, outcome)
            print(proxy.metrics.sessions_per_backend)


    asyncio.run(main())

For each client the proxy answers SSLRequest with ``N`` (it speaks plaintext), gives it
``ProxyConfig.login_timeout`` seconds to send its StartupMessage, places the session on the
backend with the fewest sessions (skipping draining and unreachable ones) and relays both
directions through a ``weir.transfer.Machine``. ``Proxy.move`` moves one session at its next
safe point and returns the last attempt's ``weir.transfer.Outcome``; recoverable failures are
retried up to ``ProxyConfig.max_transfer_attempts`` times, and a fatal one closes only that
client, with a FATAL ErrorResponse that says why. A CancelRequest reaches the server the session
is on now, with that server's key, however often the session moved.

At most ``ProxyConfig.max_client_connections`` clients are served at once; one more hears FATAL
``too many connections`` (SQLSTATE 53300). A session stops reading one side while more than
``ProxyConfig.max_buffered_per_direction`` bytes wait for the other side to read them.

A session that moves leaves its old server for reuse when the dialect allows it
(``Dialect.postgres()`` does): the proxy resets the connection with ``weir.transfer.Reset`` and
keeps it, up to ``ProxyConfig.max_idle_per_backend`` per backend, for a later move onto that
backend by a session with the same startup parameters.

Everything pgwire is done by the machines of ``weir.transfer`` (``Frontend``, ``Machine``,
``Reset``); this module moves bytes and time between them and asyncio. The proxy holds no
credentials: each backend must let the session's user in without a password.

Errors: ``Proxy.move`` raises ``weir.UsageError`` when the move cannot be asked (unknown session
or backend, already there, already moving, nowhere to go) and ``weir.ClosedError`` when the
session ends first.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from types import TracebackType

import weir
from weir.asyncio._pg_link import (
    CLOSING,
    IdlePool,
    IdleServer,
    Link,
    Owner,
    Resetter,
    log,
    now_ns,
)
from weir.transfer import (
    BackendKey,
    Cancel,
    CancelRequest,
    CloseNewServer,
    CloseOldServer,
    Closed,
    Config,
    DialNewServer,
    Frontend,
    FrontendClosed,
    FrontendConfig,
    FrontendTransmit,
    Machine,
    Metrics,
    Outcome,
    Output,
    ReleaseOldServer,
    ResetConfig,
    Startup,
    Transmit,
    build_cancel_request,
    build_error_response,
    build_terminate,
)

Backend = tuple[str, int] | str
"""A server: ``(host, port)`` over TCP, or the path of a Unix socket."""

_SECOND = 1_000_000_000


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    """How a `Proxy` behaves. Times are seconds, sizes bytes."""

    transfer: Config = field(default_factory=Config)
    """The machines' configuration: the dialect (``Dialect.postgres()`` for stock PostgreSQL),
    the transfer timeout and buffer limits."""
    max_transfer_attempts: int = 3
    """Attempts per requested move: a recoverable failure is retried until this many ran."""
    retry_backoff: float = 0.02
    """Wait before the next attempt, times the number of attempts made."""
    connect_timeout: float = 5.0
    """Connecting to a backend fails after this; a released server's reset too."""
    max_startup_len: int = 10_000
    """The longest startup packet a client may send."""
    login_timeout: float = 60.0
    """A client that has not sent its StartupMessage (or CancelRequest) this long after it
    connected is closed."""
    max_client_connections: int = 1_000
    """Client connections open at once at most, those still starting and those carrying a
    CancelRequest included."""
    max_buffered_per_direction: int = 1 << 20
    """Bytes waiting for one peer before the proxy stops reading the other."""
    max_idle_per_backend: int = 16
    """Reset server connections kept per backend for later moves; 0 keeps none."""


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """A live session, from `Proxy.sessions`."""

    id: int
    """Sessions are numbered from 0 in the order they started."""
    backend: int
    """The index in the backends of the server the session is on."""
    moving: bool
    """Whether a move is under way."""


@dataclass(frozen=True, slots=True)
class ProxyMetrics:
    """A snapshot of a `Proxy`, from `Proxy.metrics`."""

    sessions_per_backend: list[int]
    """Live sessions on each backend."""
    sessions_accepted: int
    """Sessions started since the proxy started (CancelRequests not counted)."""
    sessions_refused: int
    """Clients closed because no backend could be reached."""
    login_timeouts: int
    """Clients closed because they did not finish their startup within the login timeout."""
    connections_over_limit: int
    """Connections refused because ``max_client_connections`` were open."""
    transfer_retries: int
    """Transfer attempts that retried a recoverable failure."""
    cancels_forwarded: int
    """CancelRequests sent to the server a session is on."""
    idle_servers_taken: int
    """Moves that took a kept, already started server instead of dialling."""
    idle_servers_kept: int
    """Server connections kept after their reset."""
    peak_buffered_to_client: int
    """The most bytes any session had waiting for its client at once."""
    peak_buffered_to_server: int
    """The most bytes any session had waiting for its server at once."""
    idle_per_backend: list[int]
    """Reset connections kept for each backend now."""
    transfers: Metrics
    """Every session's machine counters added up, ended sessions' included."""


class Proxy:
    """A running proxy, from `serve` or `serve_unix`. ``async with`` closes it."""

    def __init__(self, backends: Sequence[Backend], config: ProxyConfig) -> None:
        if not backends:
            raise weir.UsageError("a proxy needs at least one backend")
        self.backends: list[Backend] = list(backends)
        """The servers, by index."""
        self.config = config
        self._draining = [False] * len(self.backends)
        self._loads = [0] * len(self.backends)
        self._servers: list[asyncio.Server] = []
        self._sessions: dict[int, _Session] = {}
        self._by_client_key: dict[BackendKey, _Session] = {}
        self._next_session = 0
        self._links: set[Link] = set()
        self._clients = 0
        self._all_closed = asyncio.Event()
        self._all_closed.set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        reuse = (
            config.max_idle_per_backend > 0
            and config.transfer.dialect.started_server_query_template is not None
        )
        self._transfer = _with_reuse(config.transfer, reuse)
        self._idle = IdlePool(len(self.backends), config.max_idle_per_backend if reuse else 0)
        self._ended_metrics = Metrics()
        self._counts = dict.fromkeys(
            (
                "accepted",
                "refused",
                "login_timeouts",
                "over_limit",
                "retries",
                "cancels",
                "idle_taken",
                "idle_kept",
                "peak_to_client",
                "peak_to_server",
            ),
            0,
        )

    # The public surface -------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The TCP port clients connect to (of the first TCP listener)."""
        for server in self._servers:
            for sock in server.sockets:
                name = sock.getsockname()
                if isinstance(name, tuple):
                    return int(name[1])
        raise weir.UsageError("the proxy listens on no TCP port")

    def sessions(self) -> list[SessionInfo]:
        """The live sessions, by id."""
        return [
            SessionInfo(s.id, s.backend, s.moving is not None)
            for _, s in sorted(self._sessions.items())
        ]

    async def move(self, session: int, to: int | None = None) -> Outcome:
        """Move `session` to backend `to` (by default the least-loaded other backend that is
        not draining) at its next safe point, and return the last attempt's outcome."""
        if to is not None and not 0 <= to < len(self.backends):
            raise weir.UsageError(f"no backend {to}")
        found = self._sessions.get(session)
        if found is None:
            raise weir.UsageError(f"no live session {session}")
        return await found.request_move(to)

    async def move_all(
        self, from_backend: int, to: int | None = None
    ) -> dict[int, Outcome | weir.WeirError]:
        """Move every session on `from_backend` at once (as `move` does, each to `to` or the
        least-loaded other backend), and return each one's outcome or error, by session id."""
        if not 0 <= from_backend < len(self.backends):
            raise weir.UsageError(f"no backend {from_backend}")
        ids = [s.id for s in self._sessions.values() if s.backend == from_backend]

        async def one(session: int) -> Outcome | weir.WeirError:
            try:
                return await self.move(session, to)
            except weir.WeirError as error:
                return error

        results = await asyncio.gather(*(one(session) for session in ids))
        return dict(zip(ids, results, strict=True))

    def set_draining(self, backend: int, draining: bool) -> None:
        """Mark `backend` as draining (no new sessions, no moves onto it by default, its kept
        connections closed) or live again."""
        if not 0 <= backend < len(self.backends):
            raise weir.UsageError(f"no backend {backend}")
        self._draining[backend] = draining
        if draining:
            self._idle.clear(backend)

    @property
    def metrics(self) -> ProxyMetrics:
        """Sessions per backend, the proxy's counters and the machines' counters summed."""
        transfers = self._ended_metrics
        for session in self._sessions.values():
            transfers = transfers.merge(session.machine.metrics)
        c = self._counts
        return ProxyMetrics(
            sessions_per_backend=list(self._loads),
            sessions_accepted=c["accepted"],
            sessions_refused=c["refused"],
            login_timeouts=c["login_timeouts"],
            connections_over_limit=c["over_limit"],
            transfer_retries=c["retries"],
            cancels_forwarded=c["cancels"],
            idle_servers_taken=c["idle_taken"],
            idle_servers_kept=c["idle_kept"],
            peak_buffered_to_client=c["peak_to_client"],
            peak_buffered_to_server=c["peak_to_server"],
            idle_per_backend=self._idle.counts(),
            transfers=transfers,
        )

    def close(self) -> None:
        """Stop listening and end every session: its client hears FATAL ``admin_shutdown``
        (57P01), its server a Terminate. `wait_closed` waits until every socket is closed."""
        if self._closing:
            return
        self._closing = True
        for server in self._servers:
            server.close()
        for session in list(self._sessions.values()):
            session.shut_down()
        for backend in range(len(self.backends)):
            self._idle.clear(backend)
        for link in list(self._links):
            link.close()
        for task in self._tasks:
            task.cancel()

    async def wait_closed(self) -> None:
        """Wait until the proxy is closed and every connection it had is gone."""
        for server in self._servers:
            await server.wait_closed()
        await self._all_closed.wait()

    async def __aenter__(self) -> Proxy:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        await self.wait_closed()

    # What the sessions and the listeners use (private) ------------------------------------

    def _link(self, owner: Owner) -> Link:
        """A new socket's protocol, tracked until it is lost."""
        link = Link(owner, self.config.max_buffered_per_direction)
        self._links.add(link)
        self._all_closed.clear()
        link.on_lost = self._forget
        return link

    def _forget(self, link: Link) -> None:
        self._links.discard(link)
        if not self._links:
            self._all_closed.set()

    def _accept(self) -> Link:
        """The protocol of a client that is connecting."""
        greeter = _Greeter(self)
        link = self._link(greeter)
        link.on_made = greeter.made
        return link

    def _admit(self, link: Link) -> bool:
        """Count a new client in, unless ``max_client_connections`` are open."""
        if self._closing or self._clients >= self.config.max_client_connections:
            self._count("over_limit")
            return False
        self._clients += 1

        def lost(link: Link) -> None:
            self._clients -= 1
            self._forget(link)

        link.on_lost = lost
        return True

    def _spawn(self, coro: Coroutine[object, object, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _count(self, name: str, n: int = 1) -> None:
        self._counts[name] += n

    def _peak(self, name: str, value: int) -> None:
        self._counts[name] = max(self._counts[name], value)

    async def _connect(self, backend: int, owner: Owner) -> Link:
        """A connection to `backend`, within the connect timeout."""
        loop = asyncio.get_running_loop()
        target = self.backends[backend]
        link = self._link(owner)
        try:
            async with asyncio.timeout(self.config.connect_timeout):
                if isinstance(target, str):
                    await loop.create_unix_connection(lambda: link, target)
                else:
                    await loop.create_connection(lambda: link, target[0], target[1])
        except BaseException:
            self._forget(link)
            raise
        return link

    def _least_loaded(self, exclude: Sequence[int]) -> int | None:
        """The backend with the fewest sessions that is not draining nor in `exclude`."""
        candidates = [
            b
            for b in range(len(self.backends))
            if not self._draining[b] and b not in exclude
        ]
        return min(candidates, key=lambda b: (self._loads[b], b), default=None)

    async def _start_session(self, client: Link, startup: bytes) -> None:
        """Place a client that sent its StartupMessage on a backend and start its session."""
        tried: list[int] = []
        while (backend := self._least_loaded(tried)) is not None:
            self._loads[backend] += 1
            pending = _Pending()
            try:
                server = await self._connect(backend, pending)
            except (OSError, TimeoutError) as error:
                log.warning("backend %r unreachable: %s", self.backends[backend], error)
                self._loads[backend] -= 1
                tried.append(backend)
                continue
            if client.closed or self._closing or server.closed:
                self._loads[backend] -= 1
                server.close()
                client.close()
                return
            session = _Session(self, self._next_session, client, server, backend)
            self._next_session += 1
            self._sessions[session.id] = session
            self._count("accepted")
            session.start(startup)
            return
        self._count("refused")
        client.write(build_error_response("08006", "weir: no backend server is reachable"))
        client.close()

    def _session_ended(self, session: _Session) -> None:
        if self._sessions.pop(session.id, None) is None:
            return
        self._loads[session.backend] -= 1
        self._ended_metrics = self._ended_metrics.merge(session.machine.metrics)
        key = session.client_key
        if key is not None and self._by_client_key.get(key) is session:
            del self._by_client_key[key]

    def _moved(self, session: _Session, to: int) -> None:
        self._loads[session.backend] -= 1
        self._loads[to] += 1

    def _known_client_key(self, session: _Session, key: BackendKey) -> None:
        self._by_client_key[key] = session

    def _forward_cancel(self, client_key: BackendKey) -> None:
        """Send a CancelRequest to the server the session with `client_key` is on now."""
        session = self._by_client_key.get(client_key)
        server_key = None if session is None else session.machine.cancel_keys().server
        if session is None or server_key is None:
            log.debug("a CancelRequest for no known session (pid %d)", client_key.process_id)
            return
        backend = session.backend

        async def send() -> None:
            link = await self._connect(backend, CLOSING)
            link.write(build_cancel_request(server_key))
            link.close()
            self._count("cancels")

        async def guarded() -> None:
            try:
                await send()
            except (OSError, TimeoutError) as error:
                log.warning("forwarding a CancelRequest failed: %s", error)

        self._spawn(guarded())

    def _take_idle(self, backend: int, params: list[tuple[str, str]]) -> IdleServer | None:
        server = self._idle.take(backend, params)
        if server is not None:
            self._count("idle_taken")
        return server

    def _keep_idle(self, backend: int, server: IdleServer) -> None:
        if self._closing or self._draining[backend]:
            server.link.terminate()
        elif self._idle.keep(backend, server):
            self._count("idle_kept")

    def _reset_config(self) -> ResetConfig:
        return ResetConfig(
            token_param=self.config.transfer.dialect.token_param,
            timeout_ns=int(self.config.connect_timeout * _SECOND),
        )

    def _transfer_config(self) -> Config:
        return self._transfer

    def _frontend_config(self) -> FrontendConfig:
        return FrontendConfig(
            max_startup_len=self.config.max_startup_len,
            login_timeout_ns=int(self.config.login_timeout * _SECOND),
        )


def _with_reuse(config: Config, reuse: bool) -> Config:
    """`config` with ``reuse_old_server`` set to `reuse`."""
    return Config(
        dialect=config.dialect,
        transfer_timeout_ns=config.transfer_timeout_ns,
        max_held_client_bytes=config.max_held_client_bytes,
        max_held_server_bytes=config.max_held_server_bytes,
        max_transfer_response_len=config.max_transfer_response_len,
        max_small_message_len=config.max_small_message_len,
        max_message_len=config.max_message_len,
        max_startup_len=config.max_startup_len,
        reuse_old_server=reuse,
    )


async def serve(
    backends: Sequence[Backend],
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    config: ProxyConfig | None = None,
) -> Proxy:
    """Listen on TCP `host`:`port` (0 picks a free port: see `Proxy.port`) and proxy clients
    to `backends`."""
    proxy = Proxy(backends, config or ProxyConfig())
    loop = asyncio.get_running_loop()
    proxy._servers.append(await loop.create_server(proxy._accept, host, port))
    return proxy


async def serve_unix(
    backends: Sequence[Backend], path: str, *, config: ProxyConfig | None = None
) -> Proxy:
    """Listen on the Unix socket `path` and proxy clients to `backends`. PostgreSQL clients
    find it as ``host=<directory> port=<n>`` when `path` ends in ``.s.PGSQL.<n>``."""
    proxy = Proxy(backends, config or ProxyConfig())
    loop = asyncio.get_running_loop()
    proxy._servers.append(await loop.create_unix_server(proxy._accept, path))
    return proxy


class _Pending(Owner):
    """The owner of a server connection while the session it is for starts."""


class _Greeter(Owner):
    """A new client until its first packet: the pgwire `Frontend`, the connection cap and the
    login timeout."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.frontend = Frontend(now_ns(), proxy._frontend_config())
        self.link: Link | None = None
        self.timer: asyncio.TimerHandle | None = None

    def made(self, link: Link) -> None:
        self.link = link
        if not self.proxy._admit(link):
            link.owner = CLOSING
            link.write(build_error_response("53300", "weir: too many connections"))
            link.linger()
            return
        self._arm()

    def link_data(self, link: Link, data: bytes) -> None:
        self.frontend.handle_input(now_ns(), data)
        self._pump(timed_out=False)

    def link_closed(self, link: Link, reason: str) -> None:
        self._disarm()

    def _on_timer(self) -> None:
        self.timer = None
        self.frontend.handle_timeout(now_ns())
        self._pump(timed_out=True)

    def _disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def _arm(self) -> None:
        self._disarm()
        deadline = self.frontend.poll_timeout()
        if deadline is not None:
            delay = max(0.0, (deadline - now_ns()) / 1e9)
            self.timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _pump(self, *, timed_out: bool) -> None:
        link = self.link
        assert link is not None
        while (output := self.frontend.poll_output()) is not None:
            match output:
                case FrontendTransmit(data):
                    link.write(data)
                case Startup(data):
                    link.set_reading(False)
                    link.owner = _Pending()
                    self.proxy._spawn(self.proxy._start_session(link, data))
                case Cancel(key):
                    link.owner = CLOSING
                    link.close()
                    self.proxy._forward_cancel(key)
                case FrontendClosed(reason):
                    if timed_out:
                        self.proxy._count("login_timeouts")
                    log.debug("client closed before its session started: %s", reason)
                    link.owner = CLOSING
                    link.write(build_error_response("08P01", f"weir: {reason}"))
                    link.close()
        self._arm()


@dataclass
class _Moving:
    """A move the caller asked for, across its attempts."""

    to: int
    reply: asyncio.Future[Outcome]
    attempts: int = 0
    retry: asyncio.TimerHandle | None = None


class _Dial:
    """The connection to a move's target, from the start of an attempt until the machine
    takes it: connecting (`task`), connected (`link`), a kept started server (`idle`), or
    failed (`failure`); `wanted` once the machine asked for it."""

    def __init__(self) -> None:
        self.task: asyncio.Task[Link] | None = None
        self.link: Link | None = None
        self.idle: IdleServer | None = None
        self.failure: str | None = None
        self.wanted = False


class _Session(Owner):
    """One client's session: its client and server sockets and its transfer `Machine`."""

    def __init__(self, proxy: Proxy, id: int, client: Link, server: Link, backend: int) -> None:
        self.proxy = proxy
        self.id = id
        self.machine = Machine(0, proxy._transfer_config())
        self.client = client
        self.server = server
        self.server_id = 0
        self.backend = backend
        self.new_server: Link | None = None
        self.new_server_id = 0
        self.dial: _Dial | None = None
        self.moving: _Moving | None = None
        self.pending_client: bytes | None = None
        self.client_key: BackendKey | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at: int | None = None
        self.fatal = False
        self.over = False
        client.owner = self
        server.owner = self

    def start(self, startup: bytes) -> None:
        self.client.set_reading(True)
        self._client_input(now_ns(), startup)
        self._pump()

    # Socket events --------------------------------------------------------------------------

    def link_data(self, link: Link, data: bytes) -> None:
        if self.over:
            return
        now = now_ns()
        try:
            if link is self.client:
                self._client_input(now, data)
            elif link is self.server:
                self.machine.handle_server_input(now, self.server_id, data)
            elif link is self.new_server:
                self.machine.handle_server_input(now, self.new_server_id, data)
        except weir.WeirError as error:
            self._refused(error)
            return
        self._pump()

    def _refused(self, error: weir.WeirError) -> None:
        # Every input is checked before it is given; a refusal is a bug here, and the session
        # ends rather than run on with a confused machine.
        log.error("session %d: the transfer machine refused an input: %s", self.id, error)
        self._end(f"the transfer machine refused an input: {error}")

    def link_closed(self, link: Link, reason: str) -> None:
        if self.over:
            return
        if link is self.client:
            self._end("the client left")
        elif link is self.server:
            self._end(f"the server closed the connection: {reason}")
        elif link is self.new_server:
            self.new_server = None
            try:
                self.machine.handle_new_server_failed(now_ns(), self.new_server_id, reason)
            except weir.WeirError as error:
                self._refused(error)
                return
            self._pump()
        elif self.dial is not None and link is self.dial.link:
            self.dial.link = None
            self.dial.failure = reason
        elif self.dial is not None and self.dial.idle is not None and link is self.dial.idle.link:
            self.dial.idle = None
            self.dial.failure = reason

    def link_writable(self, link: Link, writable: bool) -> None:
        self._update_reading()

    def _update_reading(self) -> None:
        if self.over:
            return
        self.client.set_reading(self.pending_client is None and not self.server.write_paused)
        self.server.set_reading(not self.client.write_paused)

    def _on_timer(self) -> None:
        self.timer = None
        self.timer_at = None
        if not self.over:
            self.machine.handle_timeout(now_ns())
            self._pump()

    # The machine ----------------------------------------------------------------------------

    def _client_input(self, now: int, data: bytes) -> None:
        try:
            self.machine.handle_client_input(now, data)
        except weir.LimitError:
            # The machine holds as much as it may during a transfer; the rest waits here, and
            # the client is not read until the machine takes it.
            self.pending_client = data

    def _pump(self) -> None:
        """Carry out what the machine asks for, until it has nothing more."""
        while not self.over:
            while not self.over and (output := self.machine.poll_output()) is not None:
                try:
                    self._apply(output)
                except weir.WeirError as error:
                    self._refused(error)
            data = self.pending_client
            if self.over or data is None:
                break
            self.pending_client = None
            self._client_input(now_ns(), data)
            if self.pending_client is not None:
                break
        if self.over:
            return
        if self.client_key is None:
            self.client_key = self.machine.cancel_keys().client
            if self.client_key is not None:
                self.proxy._known_client_key(self, self.client_key)
        self.proxy._peak("peak_to_client", self.client.buffered())
        self.proxy._peak("peak_to_server", self.server.buffered())
        self._update_reading()
        self._arm()

    def _arm(self) -> None:
        at = self.machine.poll_timeout()
        if at == self.timer_at and (at is None or self.timer is not None):
            return
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.timer_at = at
        if at is not None:
            delay = max(0.0, (at - now_ns()) / 1e9)
            self.timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _apply(self, output: Output) -> None:
        now = now_ns()
        match output:
            case Transmit(to, _, data):
                if to == "client":
                    self.client.write(data)
                elif to == self.server_id:
                    self.server.write(data)
                elif to == self.new_server_id and self.new_server is not None:
                    self.new_server.write(data)
                elif to == self.new_server_id:
                    self.machine.handle_new_server_failed(now, to, "not connected")
            case DialNewServer():
                dial = self.dial
                if dial is None:
                    self.machine.handle_new_server_failed(
                        now, self.new_server_id, "no move was requested"
                    )
                else:
                    dial.wanted = True
                    self._hand_over(now)
            case CloseOldServer():
                old = self._switch_server()
                if old is not None:
                    old.owner = CLOSING
                    old.close()
            case ReleaseOldServer(_, key):
                backend = self.backend
                old = self._switch_server()
                if old is not None:
                    params = self.machine.startup_params()
                    proxy = self.proxy

                    def keep(link: Link) -> None:
                        proxy._keep_idle(backend, IdleServer(link, key, params))

                    Resetter(old, proxy._reset_config(), keep)
            case CloseNewServer():
                if self.new_server is not None:
                    self.new_server.owner = CLOSING
                    self.new_server.close()
                    self.new_server = None
                self._drop_dial(keep=False)
            case Closed(reason):
                self._end(reason)
            case Outcome():
                self._outcome(output)
            case CancelRequest(key):
                self.proxy._forward_cancel(key)

    def _hand_over(self, now: int) -> None:
        """Give the machine the connection it asked for, or the reason there is none."""
        dial = self.dial
        if dial is None or not dial.wanted:
            return
        if dial.link is not None:
            self.dial = None
            self.new_server = dial.link
            self.machine.handle_new_server_connected(now, self.new_server_id)
        elif dial.idle is not None:
            self.dial = None
            self.new_server = dial.idle.link
            self.machine.handle_new_server_started(now, self.new_server_id, dial.idle.key)
        elif dial.failure is not None:
            self.dial = None
            self.machine.handle_new_server_failed(now, self.new_server_id, dial.failure)

    def _switch_server(self) -> Link | None:
        """The new server becomes the session's; the old one is returned."""
        new = self.new_server
        if new is None:
            self._end("the new server is not connected")
            return None
        old = self.server
        self.server = new
        self.server_id = self.new_server_id
        self.new_server = None
        if self.moving is not None:
            self.proxy._moved(self, self.moving.to)
            self.backend = self.moving.to
        return old

    # Moves ----------------------------------------------------------------------------------

    async def request_move(self, to: int | None) -> Outcome:
        if self.moving is not None or self.machine.is_transferring():
            raise weir.UsageError("the session is already moving")
        if to is None:
            to = self.proxy._least_loaded([self.backend])
            if to is None:
                raise weir.UsageError("every other backend is draining")
        elif to == self.backend:
            raise weir.UsageError(f"the session is already on backend {to}")
        reply: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self.moving = _Moving(to, reply)
        self._attempt()
        return await reply

    def _attempt(self) -> None:
        moving = self.moving
        if moving is None or self.over:
            return
        moving.retry = None
        moving.attempts += 1
        new_id = max(self.new_server_id, self.server_id) + 1
        key = "weir-" + secrets.token_hex(8)
        try:
            self.machine.request_transfer(now_ns(), key, new_id)
        except weir.WeirError as error:
            self._finish(error)
            return
        self.new_server_id = new_id
        dial = _Dial()
        self.dial = dial
        dial.idle = self.proxy._take_idle(moving.to, self.machine.startup_params())
        if dial.idle is not None:
            dial.idle.link.owner = self
        else:
            # Dialled now, so that the server's fork overlaps the state query.
            dial.task = asyncio.ensure_future(self.proxy._connect(moving.to, CLOSING))
            dial.task.add_done_callback(lambda task: self._dialed(dial, task))
        self._pump()

    def _dialed(self, dial: _Dial, task: asyncio.Task[Link]) -> None:
        dial.task = None
        if task.cancelled():
            return
        error = task.exception()
        if dial is not self.dial or self.over:
            if error is None:
                task.result().close()
            return
        if error is None:
            link = task.result()
            if link.closed:
                dial.failure = "the new server closed the connection"
            else:
                link.owner = self
                dial.link = link
        else:
            dial.failure = str(error) or type(error).__name__
        if dial.wanted:
            self._hand_over(now_ns())
            self._pump()

    def _drop_dial(self, *, keep: bool) -> None:
        """Forget the attempt's connection: a kept server the machine never used goes back
        to the pool when `keep`, a dialled one is closed."""
        dial, self.dial = self.dial, None
        if dial is None:
            return
        if dial.task is not None:
            dial.task.cancel()
        if dial.link is not None:
            dial.link.owner = CLOSING
            dial.link.close()
        if dial.idle is not None:
            if keep and self.moving is not None:
                self.proxy._keep_idle(self.moving.to, dial.idle)
            else:
                dial.idle.link.terminate()

    def _outcome(self, outcome: Outcome) -> None:
        self._drop_dial(keep=True)
        moving = self.moving
        log.info(
            "session %d: transfer %s ended %s%s after %.3f ms",
            self.id,
            outcome.key,
            outcome.result,
            "" if outcome.failure is None else f" ({outcome.failure})",
            outcome.latency_ns / 1e6,
        )
        if outcome.result == "fatal":
            self.fatal = True
        if (
            moving is not None
            and outcome.result == "recoverable"
            and moving.attempts < self.proxy.config.max_transfer_attempts
        ):
            self.proxy._count("retries")
            delay = self.proxy.config.retry_backoff * moving.attempts
            moving.retry = asyncio.get_running_loop().call_later(delay, self._attempt)
            return
        self._finish(outcome)

    def _finish(self, result: Outcome | weir.WeirError) -> None:
        moving, self.moving = self.moving, None
        if moving is None:
            return
        if moving.retry is not None:
            moving.retry.cancel()
        if not moving.reply.done():
            if isinstance(result, Outcome):
                moving.reply.set_result(result)
            else:
                moving.reply.set_exception(result)

    # The end --------------------------------------------------------------------------------

    def shut_down(self) -> None:
        """End the session because the proxy closes."""
        if self.over:
            return
        self.client.write(build_error_response("57P01", "weir: the proxy is shutting down"))
        self.server.write(build_terminate())
        self._end("the proxy is shutting down")

    def _end(self, reason: str) -> None:
        if self.over:
            return
        self.over = True
        log.debug("session %d ended: %s", self.id, reason)
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self._drop_dial(keep=True)
        self._finish(weir.ClosedError(f"the session ended before the move did: {reason}"))
        if self.fatal:
            message = f"weir: {reason}"
            self.client.write(build_error_response("08006", message))
        for link in (self.client, self.server, self.new_server):
            if link is not None:
                link.owner = CLOSING
                link.close()
        self.new_server = None
        self.proxy._session_ended(self)
