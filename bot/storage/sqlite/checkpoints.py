"""WAL checkpoints on a connection and thread of their own, so that no statement waits behind one."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from pathlib import Path

import aiosqlite

log = logging.getLogger(__name__)

INTERVAL = 1.0  # seconds between two checkpoints
WAL_LIMIT = 64 * 1024 * 1024  # bytes of WAL file kept once a checkpoint let it start over


async def integrity_problems(conn: aiosqlite.Connection, path: Path) -> list[str]:
    """What ``PRAGMA integrity_check`` finds wrong (empty: nothing); a file SQLite cannot read is one problem.
    ``quick_check`` would skip the index-to-table match, which a copy of a live file without its -wal fails."""
    try:
        rows = await conn.execute_fetchall("PRAGMA integrity_check(20)")
    except sqlite3.Error as exc:
        return [str(exc) or "damaged"]
    # One problem a line, headed by "*** in database main ***" (which reads like a redacted secret).
    lines = [line for row in rows for line in str(row[0]).splitlines()]
    if lines == ["ok"]:
        return []
    return [line for line in lines if line not in ("ok", "*** in database main ***")] or ["damaged"]


class Checkpointer:
    """Copies committed pages from the WAL into the database file every :data:`INTERVAL` seconds (``PASSIVE``:
    it never waits for, nor blocks, the bot's statements). The bot's own connection then never checkpoints, which
    SQLite otherwise does inside whichever commit crosses 1,000 pages of WAL (BENCHMARKS.md, "Long history")."""

    def __init__(self, conn: aiosqlite.Connection, interval: float = INTERVAL) -> None:
        self._conn = conn
        self._interval = interval
        self._verifying: asyncio.Task[None] | None = None
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

    def verify(self, path: Path) -> None:
        """Run the whole integrity check on this connection now, in the background (checkpoints wait for it)."""
        self._verifying = asyncio.get_running_loop().create_task(self._verify(path), name="sdbot-db-check")

    async def stop(self) -> None:
        tasks = [task for task in (self._task, self._verifying) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._conn.close()

    async def _verify(self, path: Path) -> None:
        began = time.monotonic()
        problems = await integrity_problems(self._conn, path)
        if problems:
            log.error(
                "the database %s (SDBOT_DB) is damaged: %s. Stop the bot and restore it from a backup (README.md, "
                '"Deploy, back up, upgrade").',
                path,
                "; ".join(problems[:3]),
            )
        else:
            log.info("the database %s is whole (checked in %.1f s)", path, time.monotonic() - began)

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
