"""WAL checkpoints on a connection and thread of their own, so that no statement waits behind one."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path

import aiosqlite

log = logging.getLogger(__name__)

INTERVAL = 1.0  # seconds between two checkpoints
WAL_LIMIT = 64 * 1024 * 1024  # bytes of WAL file kept once a checkpoint let it start over


class Checkpointer:
    """Copies committed pages from the WAL into the database file every :data:`INTERVAL` seconds (``PASSIVE``:
    it never waits for, nor blocks, the bot's statements). The bot's own connection then never checkpoints, which
    SQLite otherwise does inside whichever commit crosses 1,000 pages of WAL (BENCHMARKS.md, "Long history")."""

    def __init__(self, conn: aiosqlite.Connection, interval: float = INTERVAL) -> None:
        self._conn = conn
        self._interval = interval
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="sdbot-checkpoints")

    @classmethod
    async def start(cls, path: Path) -> Checkpointer:
        """For the existing database ``path``, whose other connections run with ``wal_autocheckpoint = 0``."""
        conn = await aiosqlite.connect(_existing(path), isolation_level=None, uri=True)
        try:
            await conn.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT}")
        except BaseException:
            await conn.close()
            raise
        return cls(conn)

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._conn.close()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._interval)
            try:
                await self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            except sqlite3.Error as exc:  # busy or failing: the next one tries again, the bot's statements tell
                log.debug("checkpoint skipped: %s", exc)


def _existing(path: Path) -> str:
    """The ``file:`` URI of ``path`` that never creates the file."""
    return path.absolute().as_uri() + "?mode=rw"
