"""weir.asyncio.pg in front of two real PostgreSQL servers, driven by psycopg 3.

The fixture starts two throwaway clusters on loopback (initdb and pg_ctl from
/usr/lib/postgresql/<version>/bin, or $WEIR_PG_BIN) with the transfer emulation installed, and
fails if it cannot."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import pytest_asyncio

import weir
from weir.asyncio import pg
from weir.transfer import (
    POSTGRES_EMULATION_SQL,
    Config,
    Dialect,
    Outcome,
    build_query,
    build_startup_message,
)

pytestmark = pytest.mark.asyncio

WORKERS = 4
"""Clients of the workload, each with its own row of the counter table."""

READY = b"Z\x00\x00\x00\x05I"
"""ReadyForQuery, idle: what a server says last when a query is done."""


def bin_dir() -> Path:
    if env := os.environ.get("WEIR_PG_BIN"):
        return Path(env)
    versions = sorted(
        (int(p.name), p / "bin")
        for p in Path("/usr/lib/postgresql").glob("*")
        if p.name.isdigit() and (p / "bin" / "initdb").is_file()
    )
    if not versions:
        pytest.fail("PostgreSQL not found under /usr/lib/postgresql (apt-get install postgresql)")
    return versions[-1][1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Cluster:
    """A throwaway PostgreSQL cluster: `trust` authentication, superuser postgres."""

    bin: Path
    dir: Path
    port: int
    user: str | None

    @classmethod
    def start(cls) -> Cluster:
        bin = bin_dir()
        # PostgreSQL refuses to run as root: then it runs as the postgres system user.
        user = "postgres" if os.geteuid() == 0 else None
        dir = Path(tempfile.mkdtemp(prefix="weir-pypg-", dir="/tmp"))
        if user is not None:
            shutil.chown(dir, user, user)
        data = dir / "data"
        subprocess.run(
            [f"{bin}/initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"]
            + ["-E", "UTF8", "--locale=C"],
            check=True,
            capture_output=True,
            user=user,
        )
        for _ in range(5):
            port = free_port()
            options = (
                f"-p {port} -k {dir} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
            )
            started = subprocess.run(
                [f"{bin}/pg_ctl", "-D", str(data), "-l", f"{dir}/postgres.log", "-w", "-t", "60"]
                + ["-o", options, "start"],
                capture_output=True,
                user=user,
            )
            if started.returncode == 0:
                cluster = cls(bin, dir, port, user)
                cluster.prepare()
                return cluster
        log = (dir / "postgres.log").read_text(errors="replace")
        pytest.fail(f"postgres did not start:\n{log}")

    def prepare(self) -> None:
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute("SET client_min_messages = warning")
            conn.execute(POSTGRES_EMULATION_SQL.encode())
            conn.execute("CREATE TABLE counter (id int PRIMARY KEY, n bigint NOT NULL)")
            conn.execute(f"INSERT INTO counter SELECT i, 0 FROM generate_series(0, {WORKERS})i")

    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def stop(self) -> None:
        subprocess.run(
            [self.bin / "pg_ctl", "-D", self.dir / "data", "-m", "immediate", "stop"],
            capture_output=True,
            user=self.user,
        )
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="module")
def clusters() -> Iterator[list[Cluster]]:
    with ThreadPoolExecutor(2) as pool:
        started = [pool.submit(Cluster.start) for _ in range(2)]
        both = [future.result() for future in started]
    yield both
    for cluster in both:
        cluster.stop()


def postgres_config(**changes: Any) -> pg.ProxyConfig:
    """The proxy's defaults in the postgres dialect, with `changes`."""
    config = pg.ProxyConfig(transfer=Config(dialect=Dialect.postgres()))
    return dataclasses.replace(config, **changes)


@pytest_asyncio.fixture
async def proxy(clusters: list[Cluster]) -> AsyncIterator[pg.Proxy]:
    backends = [("127.0.0.1", c.port) for c in clusters]
    async with await pg.serve(backends, config=postgres_config()) as proxy:
        yield proxy


Conn = psycopg.AsyncConnection[tuple[Any, ...]]


async def until(condition: Callable[[], bool]) -> None:
    """Wait up to 5 s for `condition`."""
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    pytest.fail("the condition did not come true within 5 s")


async def connect(port: int, host: str = "127.0.0.1") -> Conn:
    return await psycopg.AsyncConnection.connect(
        host=host, port=port, user="postgres", dbname="postgres", autocommit=True
    )


async def one(conn: Conn, sql: str) -> object:
    row = await (await conn.execute(sql.encode())).fetchone()
    assert row is not None
    return row[0]


async def server_port(conn: Conn) -> int:
    return int(str(await one(conn, "SELECT current_setting('port')")))


async def test_settings_and_prepared_statements_survive_a_move(
    proxy: pg.Proxy, clusters: list[Cluster]
) -> None:
    async with await connect(proxy.port) as conn:
        await conn.execute("SET application_name = 'weir-moved'")
        await conn.execute("SET statement_timeout = '123s'")
        await conn.execute("PREPARE plus_one (int) AS SELECT $1 + 1")
        # psycopg's own protocol-level prepared statement (Parse with a name).
        cur = await conn.execute("SELECT %s::int * 2", (21,), prepare=True)
        assert await cur.fetchone() == (42,)
        first = await server_port(conn)
        [session] = proxy.sessions()
        assert first == clusters[session.backend].port and not session.moving

        to = 1 - session.backend
        outcome = await proxy.move(session.id, to)
        assert isinstance(outcome, Outcome)
        assert (outcome.result, outcome.failure) == ("success", None)
        assert proxy.sessions() == [pg.SessionInfo(session.id, to, False)]
        assert await server_port(conn) == clusters[to].port
        assert await one(conn, "SHOW application_name") == "weir-moved"
        assert await one(conn, "SHOW statement_timeout") == "123s"
        assert await one(conn, "EXECUTE plus_one(41)") == 42
        cur = await conn.execute("SELECT %s::int * 2", (50,), prepare=True)
        assert await cur.fetchone() == (100,)

        # And back, onto the connection the first move released and the proxy reset.
        await until(lambda: proxy.metrics.idle_per_backend[session.backend] == 1)
        back = await proxy.move(session.id)
        assert back.result == "success"
        assert await server_port(conn) == first
        assert await one(conn, "EXECUTE plus_one(1)") == 2
        metrics = proxy.metrics
        assert metrics.sessions_per_backend[session.backend] == 1
        assert metrics.idle_servers_taken == 1
        assert (metrics.transfers.attempted, metrics.transfers.success) == (2, 2)

        with pytest.raises(weir.UsageError, match="already on backend"):
            await proxy.move(session.id, session.backend)
        with pytest.raises(weir.UsageError, match="no backend 7"):
            await proxy.move(session.id, 7)
    await until(lambda: proxy.sessions() == [])
    with pytest.raises(weir.UsageError, match="no live session"):
        await proxy.move(session.id)


async def test_a_thousand_moves_under_load_lose_and_repeat_nothing(
    proxy: pg.Proxy, clusters: list[Cluster]
) -> None:
    before = await counts(clusters)
    conns = [await connect(proxy.port) for _ in range(WORKERS)]
    done = asyncio.Event()
    ran = [0] * WORKERS

    async def work(i: int) -> None:
        while not done.is_set():
            await conns[i].execute("UPDATE counter SET n = n + 1 WHERE id = %s", (i,))
            ran[i] += 1

    workers = [asyncio.create_task(work(i)) for i in range(WORKERS)]
    ids = [s.id for s in proxy.sessions()]
    assert len(ids) == WORKERS
    outcomes: list[Outcome] = []

    async def mover(session: int, moves: int) -> None:
        for _ in range(moves):
            outcomes.append(await proxy.move(session))

    started = time.monotonic()
    try:
        await asyncio.gather(*(mover(session, 1000 // WORKERS) for session in ids))
    finally:
        done.set()
        await asyncio.gather(*workers)
    elapsed = time.monotonic() - started
    assert [o.result for o in outcomes] == ["success"] * 1000, elapsed
    # Every session ran statements throughout, and each one ran exactly once.
    assert all(n > 0 for n in ran)
    after = await counts(clusters)
    assert [a - b for a, b in zip(after, before, strict=True)] == [*ran, 0]
    metrics = proxy.metrics
    assert metrics.transfers.success == 1000
    assert metrics.transfers.error_fatal == 0
    assert sum(metrics.sessions_per_backend) == WORKERS

    # Empty backend 0: no new session lands there, and every session on it moves away.
    proxy.set_draining(0, True)
    on_zero = {s.id for s in proxy.sessions() if s.backend == 0}
    results = await proxy.move_all(0)
    assert set(results) == on_zero
    assert all(isinstance(r, Outcome) and r.result == "success" for r in results.values())
    conns.append(await connect(proxy.port))
    assert proxy.metrics.sessions_per_backend == [0, WORKERS + 1]
    assert proxy.metrics.idle_per_backend[0] == 0
    for i, conn in enumerate(conns):
        assert await server_port(conn) == clusters[1].port, i
        await conn.close()


async def counts(clusters: list[Cluster]) -> list[int]:
    """Each counter row summed over both servers."""
    total = [0] * (WORKERS + 1)
    for cluster in clusters:
        async with await psycopg.AsyncConnection.connect(cluster.dsn()) as conn:
            rows = await (await conn.execute("SELECT id, n FROM counter ORDER BY id")).fetchall()
            for i, n in rows:
                total[i] += n
    return total


async def test_a_cancel_request_after_a_move_cancels_on_the_new_server(
    proxy: pg.Proxy, clusters: list[Cluster]
) -> None:
    async with await connect(proxy.port) as conn:
        [session] = proxy.sessions()
        to = 1 - session.backend
        assert (await proxy.move(session.id, to)).result == "success"
        sleeping = asyncio.create_task(conn.execute("SELECT pg_sleep(30)"))
        # Wait until the new server runs the query.
        async with await psycopg.AsyncConnection.connect(clusters[to].dsn()) as watcher:
            for _ in range(200):
                found = await (
                    await watcher.execute(
                        "SELECT count(*) FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)'"
                        " AND state = 'active'"
                    )
                ).fetchone()
                if found == (1,):
                    break
                await asyncio.sleep(0.02)
            else:
                pytest.fail("the query never ran on the new server")
        started = time.monotonic()
        await conn.cancel_safe()
        with pytest.raises(psycopg.errors.QueryCanceled):
            await asyncio.wait_for(sleeping, 10)
        assert time.monotonic() - started < 10
        assert proxy.metrics.cancels_forwarded == 1
        # The session goes on.
        assert await one(conn, "SELECT 7") == 7


async def test_login_timeout_closes_a_silent_client(clusters: list[Cluster]) -> None:
    backends = [("127.0.0.1", c.port) for c in clusters]
    config = postgres_config(login_timeout=0.3)
    async with await pg.serve(backends, config=config) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        started = time.monotonic()
        said = await asyncio.wait_for(reader.read(), 5)
        assert time.monotonic() - started >= 0.3
        # A FATAL ErrorResponse, then the end of the connection.
        assert said.startswith(b"E") and b"login timeout" in said
        writer.close()
        assert proxy.metrics.login_timeouts == 1
        assert proxy.metrics.sessions_accepted == 0


async def test_clients_past_the_cap_are_refused(clusters: list[Cluster]) -> None:
    backends = [("127.0.0.1", c.port) for c in clusters]
    config = postgres_config(max_client_connections=1)
    async with await pg.serve(backends, config=config) as proxy:
        async with await connect(proxy.port) as conn:
            # Without an SSLRequest first, libpq reports the refusal as the proxy words it.
            with pytest.raises(psycopg.OperationalError, match="weir: too many connections"):
                await psycopg.AsyncConnection.connect(
                    host="127.0.0.1", port=proxy.port, user="postgres", sslmode="disable"
                )
            assert await one(conn, "SELECT 1") == 1
        assert proxy.metrics.connections_over_limit == 1


async def test_a_unix_socket_and_a_closing_proxy(clusters: list[Cluster]) -> None:
    backends: list[pg.Backend] = [str(clusters[0].dir / f".s.PGSQL.{clusters[0].port}")]
    backends.append(("127.0.0.1", clusters[1].port))
    with tempfile.TemporaryDirectory() as dir:
        proxy = await pg.serve_unix(
            backends, f"{dir}/.s.PGSQL.6432", config=postgres_config()
        )
        conn = await connect(6432, host=dir)
        assert await server_port(conn) == clusters[0].port
        [session] = proxy.sessions()
        assert (await proxy.move(session.id, 1)).result == "success"
        assert await server_port(conn) == clusters[1].port
        proxy.close()
        await asyncio.wait_for(proxy.wait_closed(), 10)
        with pytest.raises(psycopg.OperationalError):
            await conn.execute("SELECT 1")
        await conn.close()
        assert proxy.sessions() == []


async def test_a_client_that_does_not_read_holds_a_bounded_buffer(
    clusters: list[Cluster],
) -> None:
    bound = 256 << 10
    backends = [("127.0.0.1", c.port) for c in clusters]
    config = postgres_config(max_buffered_per_direction=bound)
    rows, width = 40_000, 1_000
    async with await pg.serve(backends, config=config) as proxy:
        reader, writer = await asyncio.open_connection("127.0.0.1", proxy.port)
        startup = build_startup_message([("user", "postgres"), ("database", "postgres")])
        big = build_query(f"SELECT repeat('x', {width}) FROM generate_series(1, {rows})")
        writer.write(startup + big)
        # About 40 MB of results, more than the sockets' buffers hold, and no one reads them.
        await until(lambda: proxy.metrics.peak_buffered_to_client >= bound)
        await asyncio.sleep(0.5)
        # asyncio reads at most 256 KiB at a time: one read may come on top of the bound.
        assert proxy.metrics.peak_buffered_to_client <= bound + (256 << 10)
        received = 0
        tail = b""
        while not tail.endswith(READY):
            chunk = await asyncio.wait_for(reader.read(1 << 20), 10)
            assert chunk, "the proxy closed the connection"
            received += len(chunk)
            tail = (tail + chunk)[-len(READY) :]
        assert received > rows * width
        writer.close()


async def test_failed_moves_are_retried_and_leave_the_session_where_it_was(
    clusters: list[Cluster],
) -> None:
    # Nothing listens on the first backend.
    backends = [("127.0.0.1", free_port())] + [("127.0.0.1", c.port) for c in clusters]
    async with await pg.serve(backends, config=postgres_config(retry_backoff=0.01)) as proxy:
        async with await connect(proxy.port) as conn:
            # The unreachable backend was tried first (fewest sessions, lowest index), then skipped.
            assert proxy.metrics.sessions_per_backend == [0, 1, 0]
            assert await server_port(conn) == clusters[0].port
            [session] = proxy.sessions()

            unreachable = await proxy.move(session.id, 0)
            assert unreachable.result == "recoverable"
            assert unreachable.failure is not None
            assert unreachable.failure.startswith("the new server could not be reached")
            assert proxy.metrics.transfer_retries == 2

            # A temporary table cannot be carried: the old server refuses, on every attempt.
            await conn.execute("CREATE TEMP TABLE scratch (x int)")
            refused = await proxy.move(session.id, 2)
            assert refused.result == "recoverable"
            assert refused.failure is not None and "temporary tables" in refused.failure
            assert proxy.metrics.transfer_retries == 4
            assert proxy.sessions() == [pg.SessionInfo(session.id, 1, False)]
            assert await server_port(conn) == clusters[0].port

            await conn.execute("DROP TABLE scratch")
            assert (await proxy.move(session.id, 2)).result == "success"
            assert await server_port(conn) == clusters[1].port
            transfers = proxy.metrics.transfers
            assert (transfers.attempted, transfers.error_recoverable) == (7, 6)
