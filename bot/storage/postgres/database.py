"""A pool of asyncpg connections to ``SDBOT_DB`` (``postgresql://...``): statements, transactions, errors."""

from __future__ import annotations

import contextvars
import functools
import re
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from bot.config import redact_url
from bot.errors import db_unavailable
from bot.storage.port import StorageError
from bot.storage.postgres.migrations import migrate

Params = Sequence[Any] | Mapping[str, Any]

POOL_SIZE = 32  # connections at most; admissions wait for one beyond that
NAMED = re.compile(r"(?<![:\w]):([a-z_]\w*)")  # a :name placeholder (not a ::type cast)
_FAILURES = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError)


@functools.lru_cache(maxsize=256)
def _positional(sql: str) -> tuple[str, tuple[str, ...]]:
    """``:name`` placeholders (as the SQLite engine writes them) as PostgreSQL's ``$1``, and their order."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    return NAMED.sub(number, sql), tuple(names)


@functools.lru_cache(maxsize=256)
def _numbered(sql: str) -> str:
    """``?`` placeholders (SQL both engines run, :mod:`bot.storage.portable`) as ``$1``, ``$2``... in order."""
    count = iter(range(1, sql.count("?") + 1))
    return re.sub(r"\?", lambda _: f"${next(count)}", sql)


class PostgresDatabase:
    """Open with :meth:`open`; every statement takes a pooled connection, or the one of the open transaction."""

    def __init__(self, pool: asyncpg.Pool, shown: str, version: int) -> None:
        self._pool = pool
        self.shown = shown  # the DSN without its password, for messages
        self.version = version
        self._in_transaction: contextvars.ContextVar[asyncpg.Connection | None] = contextvars.ContextVar(
            "sdbot_pg_transaction", default=None
        )

    @staticmethod
    async def connect(
        dsn: str, *, readonly: bool = False, functions: tuple[str, ...] = ()
    ) -> tuple[asyncpg.Pool, str, int]:
        """A pool, the DSN as shown, the schema version (migrated unless ``readonly``); ``db_unavailable``."""
        shown = redact_url(dsn)
        try:
            # min_size=0: no connection kept up for its own sake, which asyncpg would retry (and log with a
            # traceback) while the server is away; each statement connects as it needs.
            pool = await asyncpg.create_pool(dsn, min_size=0, max_size=POOL_SIZE, command_timeout=60)
        except (*_FAILURES, ValueError) as exc:
            raise db_unavailable(shown, type(exc).__name__) from None
        try:
            async with pool.acquire() as conn:
                version = await migrate(conn, shown, readonly=readonly, functions=functions)
        except _FAILURES as exc:
            await pool.close()
            raise db_unavailable(shown, type(exc).__name__) from None
        except BaseException:
            await pool.close()
            raise
        return pool, shown, version

    async def ping(self) -> None:
        await self.fetchone("SELECT 1")

    async def hold(self) -> None:
        """Nothing to hold: any number of processes share the database and its queue."""

    async def close(self) -> None:
        await self._pool.close()

    async def check(self, *, at_once_up_to: int | None = None) -> None:
        """The server keeps its pages whole; that it answers is what there is to check."""
        try:
            await self._pool.fetchval("SELECT 1")
        except _FAILURES as exc:
            raise db_unavailable(self.shown, type(exc).__name__) from None

    async def fetchall(self, sql: str, params: Params = ()) -> list[asyncpg.Record]:
        if isinstance(params, Mapping):
            sql, names = _positional(sql)
            args: Sequence[Any] = [params[name] for name in names]
        else:
            sql, args = (_numbered(sql) if "?" in sql else sql), params
        target = self._in_transaction.get() or self._pool
        try:
            return list(await target.fetch(sql, *args))
        except _FAILURES as exc:
            raise StorageError(f"{type(exc).__name__}: {exc}") from exc

    async def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        target = self._in_transaction.get() or self._pool
        try:
            await target.executemany(sql, rows)
        except _FAILURES as exc:
            raise StorageError(f"{type(exc).__name__}: {exc}") from exc

    async def fetchone(self, sql: str, params: Params = ()) -> asyncpg.Record | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def execute(self, sql: str, params: Params = ()) -> None:
        await self.fetchall(sql, params)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """Statements in the block (of this task) form one transaction, committed at its end."""
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                token = self._in_transaction.set(conn)
                try:
                    yield
                finally:
                    self._in_transaction.reset(token)
        except _FAILURES as exc:
            raise StorageError(f"{type(exc).__name__}: {exc}") from exc
