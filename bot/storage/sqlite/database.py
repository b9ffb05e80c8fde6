"""One long-lived aiosqlite connection to ``SDBOT_DB``: WAL, autocommit, forward migrations."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from bot.errors import ConfigError, db_unavailable
from bot.process.dblock import DatabaseLock
from bot.storage.port import StorageError
from bot.storage.sqlite.checkpoints import Checkpointer, integrity_problems
from bot.storage.sqlite.migrations import MIGRATIONS, Migration, migrate, schema_version

Params = Sequence[Any] | Mapping[str, Any]

# How long a statement waits for another process's write lock before failing.
BUSY_TIMEOUT_MS = 10_000
OPEN_ATTEMPTS = 10  # opening a file that other processes are setting up at the same moment (open_connection)
# Larger files are checked after the start (about 100 ms per 10 MiB on a small machine).
CHECK_AT_ONCE_BYTES = 64 * 1024 * 1024


class Database:
    """Open with :meth:`open`, share it, :meth:`close` at exit."""

    def __init__(
        self, conn: aiosqlite.Connection, path: Path, version: int, checkpointer: Checkpointer | None = None
    ) -> None:
        self._conn = conn
        self._checkpointer = checkpointer
        self._lock: DatabaseLock | None = None
        self._transaction = asyncio.Lock()
        self._owner: asyncio.Task[Any] | None = None  # the task whose transaction is open
        self.path = path
        self.version = version

    async def check(self, *, at_once_up_to: int | None = None) -> None:
        """Read every page and match every index with its table (``PRAGMA integrity_check``): a damaged file is
        refused with ``db_unavailable`` before anything is served from it. That reads the whole file, so a file
        larger than ``at_once_up_to`` bytes (if given) is checked after the start instead, on the checkpointer's
        connection (the start then does not grow with history), and damage found there is logged as an error."""
        if at_once_up_to is not None and self._checkpointer is not None and _size(self.path) > at_once_up_to:
            self._checkpointer.verify(self.path)
            return
        problems = await integrity_problems(self._conn, self.path)
        if problems:
            raise db_unavailable(self.path, "; ".join(problems[:3]))

    async def ping(self) -> None:
        await self.fetchone("SELECT 1")

    async def hold(self) -> None:
        """An exclusive ``flock`` on ``<SDBOT_DB>.lock`` (:mod:`bot.process.dblock`), released by :meth:`close`."""
        if self._lock is None:
            self._lock = DatabaseLock.acquire(self.path)

    async def close(self) -> None:
        if self._checkpointer is not None:
            await self._checkpointer.stop()
        await self._conn.close()  # the last connection to close checkpoints what is left
        if self._lock is not None:
            self._lock.release()  # last: the next bot may start once this one wrote everything
            self._lock = None

    async def fetchall(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        """Run one statement (a write too: ``... RETURNING``) and return its rows. SQLite's errors are raised
        as :class:`~bot.storage.port.StorageError`."""
        try:
            if self._transaction.locked() and not self._in_transaction():
                async with self._transaction:  # someone's transaction is open: wait until it ends
                    return list(await self._conn.execute_fetchall(sql, params))
            return list(await self._conn.execute_fetchall(sql, params))
        except sqlite3.Error as exc:
            raise StorageError(str(exc)) from exc

    async def fetchone(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def execute(self, sql: str, params: Params = ()) -> None:
        await self.fetchall(sql, params)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """Statements run in the block form one transaction (``BEGIN IMMEDIATE``: the write lock first, so
        no read inside goes stale), committed at its end or rolled back by an exception."""
        async with self._transaction:
            self._owner = asyncio.current_task()
            try:
                await self.execute("BEGIN IMMEDIATE")
                try:
                    yield
                except BaseException:
                    await self.execute("ROLLBACK")
                    raise
                await self.execute("COMMIT")
            finally:
                self._owner = None

    def _in_transaction(self) -> bool:
        return self._owner is not None and self._owner is asyncio.current_task()


async def open_connection(
    path: Path,
    *,
    migrations: Sequence[Migration] = MIGRATIONS,
    create: bool = True,
    readonly: bool = False,
) -> tuple[aiosqlite.Connection, int]:
    """:func:`_open_connection`, tried again when another process holds the file locked while it is set up.

    Switching a new file to WAL takes the file's exclusive lock, and SQLite answers "database is locked" at once,
    without waiting out the busy timeout, when several processes (three ``sdbot`` at the same moment) do it
    together (and "locking protocol" under contention in WAL); a moment later opening it is a plain read."""
    for attempt in range(OPEN_ATTEMPTS):
        try:
            return await _open_connection(path, migrations=migrations, create=create, readonly=readonly)
        except ConfigError as exc:
            if exc.code != "db_unavailable" or "lock" not in str(exc.params.get("reason", "")):
                raise
            if attempt == OPEN_ATTEMPTS - 1:
                raise
            await asyncio.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


async def _open_connection(
    path: Path,
    *,
    migrations: Sequence[Migration] = MIGRATIONS,
    create: bool = True,
    readonly: bool = False,
) -> tuple[aiosqlite.Connection, int]:
    """Connect, switch to WAL and apply missing migrations. Raises :class:`ConfigError` (naming
    ``SDBOT_DB``) when the file cannot be opened or belongs to a newer sdbot.

    ``create=False``: a missing file is ``db_not_found``, and neither it nor its folder is created.
    ``readonly=True`` (commands that only read; implies ``create=False``): nothing is written, not even
    the journal mode, and an older schema is refused (``db_outdated``) rather than migrated: upgrading is
    the bot's job at its start, not a side effect of looking."""
    try:
        if create and not readonly:
            conn = await _connect(_prepare(path, create=True), uri=False)
        else:  # mode=rw: SQLite never creates the file, even one deleted since the check
            conn = await _connect(_prepare(path, create=False) + "?mode=rw", uri=True)
    except (OSError, sqlite3.Error) as exc:
        raise db_unavailable(path, exc) from None
    conn.row_factory = sqlite3.Row
    try:
        await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if readonly:
            await conn.execute("PRAGMA query_only = ON")
            version = await schema_version(conn, path, migrations)
        else:
            await conn.execute("PRAGMA journal_mode = WAL")
            # NORMAL is durable against a killed process in WAL mode (only power loss can lose a commit).
            await conn.execute("PRAGMA synchronous = NORMAL")
            await conn.execute("PRAGMA foreign_keys = ON")
            version = await migrate(conn, path, migrations)
            await conn.execute("PRAGMA wal_autocheckpoint = 0")  # see bot.storage.sqlite.checkpoints
    except sqlite3.Error as exc:
        await conn.close()
        raise db_unavailable(path, exc) from None
    except BaseException:
        await conn.close()
        raise
    return conn, version


def _prepare(path: Path, *, create: bool) -> str:
    """What to connect to: the file, its folder made (``create``), or its ``file:`` URI (the file must exist)."""
    if not create and not path.is_file():
        raise ConfigError("db_not_found", variable="SDBOT_DB", path=str(path))
    if sqlite3.sqlite_version_info < (3, 35):  # RETURNING, which every decision relies on
        raise db_unavailable(path, f"SQLite {sqlite3.sqlite_version} is too old; 3.35 or newer is needed")
    if path.is_dir():
        raise db_unavailable(path, "it is a directory")
    if create:
        path.parent.mkdir(parents=True, exist_ok=True)
        return str(path)
    return path.absolute().as_uri()


async def _connect(target: str, *, uri: bool) -> aiosqlite.Connection:
    """``aiosqlite.connect`` in autocommit mode (``isolation_level=None``: no implicit BEGIN). When the file
    cannot be opened, wait for aiosqlite's worker thread before raising: aiosqlite tells it to stop without
    waiting, and the thread then answers on this event loop, which ``asyncio.run`` may have closed by then."""
    pending = aiosqlite.connect(target, isolation_level=None, uri=uri)
    try:
        return await pending
    except BaseException:
        # aiosqlite keeps no public handle on its thread: a Thread itself before 0.21, ._thread since.
        worker = pending if isinstance(pending, threading.Thread) else getattr(pending, "_thread", None)
        if isinstance(worker, threading.Thread) and worker.is_alive():
            await asyncio.to_thread(worker.join, 5.0)
        raise


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else 0
