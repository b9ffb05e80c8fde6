"""The PostgreSQL engine: the storage port on one PostgreSQL database, shared by any number of processes."""

from __future__ import annotations

import time
from collections.abc import Callable

import asyncpg

from bot.storage.portable import PortableChannels, PortableInbox, PortableModeration
from bot.storage.postgres.database import PostgresDatabase
from bot.storage.postgres.jobs import ADMIT_FUNCTION, PostgresJobs
from bot.storage.postgres.link import PostgresLink
from bot.storage.postgres.queue import CLAIM_FUNCTION, PACE_FUNCTION, PostgresQueue
from bot.storage.postgres.records import PostgresPeople, PostgresQuotas

__all__ = ["PostgresStorage"]


class PostgresStorage(PostgresDatabase):
    """:class:`bot.storage.port.Storage` on ``postgresql://...``; :meth:`open` migrates it (under a lock)."""

    def __init__(self, pool: asyncpg.Pool, shown: str, version: int, clock: Callable[[], float] = time.time) -> None:
        super().__init__(pool, shown, version)
        self.jobs = PostgresJobs(self, clock)
        self.quotas = PostgresQuotas(self, clock)
        self.people = PostgresPeople(self, clock)
        self.channels = PortableChannels(self, clock)
        self.inbox = PortableInbox(self)
        self.moderation = PortableModeration(self, clock)
        self.link = PostgresLink(pool)
        self.queue = PostgresQueue(self, self.link, clock)

    @classmethod
    async def open(cls, dsn: str, *, clock: Callable[[], float] = time.time, readonly: bool = False) -> PostgresStorage:
        functions = (ADMIT_FUNCTION, CLAIM_FUNCTION, PACE_FUNCTION)
        pool, shown, version = await cls.connect(dsn, readonly=readonly, functions=functions)
        return cls(pool, shown, version, clock)

    async def close(self) -> None:
        await self.link.close()
        await super().close()
