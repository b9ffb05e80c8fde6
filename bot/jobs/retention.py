"""Retention: finished jobs of days older than ``SDBOT_JOB_RETENTION_DAYS`` are deleted (0 = kept forever)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from bot.storage import Storage

log = logging.getLogger(__name__)

BATCH = 100  # jobs per step
PAUSE = 0.02  # seconds between batches, leaving the write lock to other statements and processes
INTERVAL = 24 * 3600.0  # seconds between background runs
FOLLOWER_CHECK = 60.0  # seconds between two looks at whether this process leads now (when it does not)
RETRY = 3600.0  # seconds before the background task tries again after a failed run


def cutoff_day(now: float, days: int, tz: ZoneInfo) -> str:
    """The oldest quota day kept (``YYYY-MM-DD``): finished jobs of earlier days are pruned."""
    return (datetime.fromtimestamp(now, tz).date() - timedelta(days=days)).isoformat()


async def prune(storage: Storage, before: str, *, batch: int = BATCH, pause: float = 0.0) -> int:
    """Delete the finished jobs of quota days before ``before``, ``batch`` per step, and the block list's
    refusals of those days; returns how many jobs."""
    total = 0
    while True:
        deleted = await storage.jobs.delete_finished_before(before, batch)
        total += deleted
        if deleted < batch:
            break
        await asyncio.sleep(pause)
    await storage.moderation.prune_refusals_before(before)
    return total


class Pruner:
    """The running bot's pruning: once at :meth:`start`, then every :data:`INTERVAL` seconds, in a task of its
    own. Does nothing when ``days`` is 0."""

    def __init__(
        self,
        storage: Storage,
        days: int,
        tz: ZoneInfo,
        clock: Callable[[], float],
        *,
        interval: float = INTERVAL,
        pause: float = PAUSE,
        leading: Callable[[], bool] = lambda: True,
    ) -> None:
        self.days = days
        self.interval = interval
        self.runs = 0  # completed runs, successful or not
        self._storage = storage
        self._tz = tz
        self._clock = clock
        self._pause = pause
        self._leading = leading  # several processes on one database: only the leader prunes
        self._task: asyncio.Task[None] | None = None
        self._ran = asyncio.Condition()

    def start(self) -> None:
        if self.days and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="sdbot-prune")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def run(self) -> int:
        """One pruning now; returns how many jobs went."""
        before = cutoff_day(self._clock(), self.days, self._tz)
        pruned = await prune(self._storage, before, pause=self._pause)
        if pruned:
            log.info("pruned %s finished job(s) of quota days before %s", pruned, before)
        return pruned

    async def wait_runs(self, runs: int) -> None:
        """Until ``runs`` background runs have completed (for tests)."""
        async with self._ran:
            await self._ran.wait_for(lambda: self.runs >= runs)

    async def _loop(self) -> None:
        while True:
            delay = self.interval
            try:
                if self._leading():
                    await self.run()
                else:
                    delay = min(self.interval, FOLLOWER_CHECK)
            except Exception:  # the database is busy or broken: the bot goes on, pruning tries again later
                log.exception("pruning old jobs failed")
                delay = min(self.interval, RETRY)
            async with self._ran:
                self.runs += 1
                self._ran.notify_all()
            await asyncio.sleep(delay)
