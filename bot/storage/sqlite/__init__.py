"""The SQLite engine of the storage port: one file, one connection; all SQL and migrations in this package."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import aiosqlite

from bot.storage.portable import PortableChannels, PortableInbox, PortableModeration
from bot.storage.sqlite.checkpoints import Checkpointer
from bot.storage.sqlite.database import Database, open_connection
from bot.storage.sqlite.jobs import SQLiteJobs
from bot.storage.sqlite.migrations import MIGRATIONS, Migration
from bot.storage.sqlite.people import SQLitePeople
from bot.storage.sqlite.quotas import SQLiteQuotas

__all__ = ["MIGRATIONS", "Migration", "SQLiteStorage"]


class SQLiteStorage(Database):
    """:class:`bot.storage.port.Storage` on one SQLite file. Its raw statements (``fetchall``...) are for this
    package and for tests that look inside the file."""

    def __init__(
        self,
        conn: aiosqlite.Connection,
        path: Path,
        version: int,
        clock: Callable[[], float] = time.time,
        checkpointer: Checkpointer | None = None,
    ) -> None:
        super().__init__(conn, path, version, checkpointer)
        self.jobs = SQLiteJobs(self, clock)
        self.quotas = SQLiteQuotas(self, clock)
        self.people = SQLitePeople(self, clock)
        self.channels = PortableChannels(self, clock)
        self.inbox = PortableInbox(self)
        self.moderation = PortableModeration(self, clock)
        self.queue = None  # one process: its queue is its own (bot.jobs.scheduler)

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        clock: Callable[[], float] = time.time,
        migrations: Sequence[Migration] = MIGRATIONS,
        create: bool = True,
        readonly: bool = False,
    ) -> SQLiteStorage:
        """See :func:`~bot.storage.sqlite.database.open_connection`: created and migrated unless told not to."""
        path = Path(path)
        conn, version = await open_connection(path, migrations=migrations, create=create, readonly=readonly)
        try:
            checkpointer = None if readonly else await Checkpointer.start(path)
        except BaseException:
            await conn.close()
            raise
        return cls(conn, path, version, clock, checkpointer)
