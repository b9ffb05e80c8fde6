"""One connection a process keeps for itself: the notifications it listens to, and the leader's lock."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import asyncpg

from bot.storage.port import StorageError

log = logging.getLogger(__name__)

LEADER_LOCK = 7_355_610  # the session advisory lock of the process doing the duties one process does at a time
_FAILURES = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError, asyncio.TimeoutError)


class PostgresLink:
    """Taken from the pool and kept: a process that dies loses it, and with it its LISTEN and the leader's lock,
    which another process then takes. When it breaks, :meth:`refresh` takes a new one and calls every listener
    once, since notifications may have been missed meanwhile."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        self._conn: asyncpg.Connection | None = None
        self._listeners: dict[str, Callable[[str], None]] = {}
        self._leading = False
        self._using = asyncio.Lock()  # one statement at a time on the connection (asyncpg allows no more)
        self._locks: set[str] = set()  # named locks this process holds (try_lock)

    async def listen(self, channel: str, callback: Callable[[str], None]) -> None:
        """``callback(payload)`` at every ``NOTIFY channel`` from any process (and "" after a reconnect)."""
        async with self._using:
            self._listeners[channel] = callback
            if self._conn is not None and not self._conn.is_closed():
                await self._conn.add_listener(channel, self._on_notice)

    async def refresh(self) -> bool:
        """Reconnect when the connection broke, then try to become (or stay) the leader; whether this process
        leads. False while the database cannot be reached."""
        async with self._using:
            try:
                await self._ensure()
                if not self._leading:
                    assert self._conn is not None
                    self._leading = bool(await self._conn.fetchval("SELECT pg_try_advisory_lock($1)", LEADER_LOCK))
                    if self._leading:
                        log.info("this process now does the duties of one process at a time")
            except _FAILURES as exc:
                log.warning("database link lost (%s); retrying", type(exc).__name__)
                await self._drop()
            return self._leading

    async def try_lock(self, name: str) -> bool:
        """A session lock named ``name`` for this process, kept as long as it lives (and taken again after a
        reconnect); False when another process holds it."""
        async with self._using:
            try:
                await self._ensure()
                assert self._conn is not None
                taken = bool(await self._conn.fetchval("SELECT pg_try_advisory_lock(4, hashtext($1))", name))
            except _FAILURES as exc:
                await self._drop()
                raise StorageError(f"{type(exc).__name__}: {exc}") from exc
            if taken:
                self._locks.add(name)
            return taken

    @property
    def leading(self) -> bool:
        return self._leading and self._conn is not None and not self._conn.is_closed()

    async def close(self) -> None:
        async with self._using:
            await self._drop()

    async def _ensure(self) -> None:
        if self._conn is None or self._conn.is_closed():
            await self._reconnect()

    async def _reconnect(self) -> None:
        await self._drop()
        conn = await self._pool.acquire()
        self._conn = conn
        for channel in list(self._listeners):
            await conn.add_listener(channel, self._on_notice)
        for name in list(self._locks):
            if not await conn.fetchval("SELECT pg_try_advisory_lock(4, hashtext($1))", name):
                log.error("lock %r was taken by another process while the database was unreachable", name)
        for callback in list(self._listeners.values()):
            callback("")

    async def _drop(self) -> None:
        self._leading = False
        conn, self._conn = self._conn, None
        if conn is None:
            return
        with contextlib.suppress(*_FAILURES):  # a broken connection has nothing left to unlisten
            for channel in list(self._listeners):
                await conn.remove_listener(channel, self._on_notice)
        try:
            await self._pool.release(conn)  # the pool's reset unlocks the leader's lock
        except _FAILURES:
            with contextlib.suppress(*_FAILURES):
                conn.terminate()

    def _on_notice(self, _conn: object, _pid: int, channel: str, payload: str) -> None:
        callback = self._listeners.get(channel)
        if callback is not None:
            callback(payload)
