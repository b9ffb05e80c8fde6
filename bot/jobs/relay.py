"""Progress notifications to adapters: latest wins, one in flight per job, never blocking the job itself."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

Send = Callable[[], Awaitable[None]]


class Relay:
    def __init__(self) -> None:
        self._waiting: dict[int, Send] = {}
        self._senders: dict[int, asyncio.Task[None]] = {}

    def post(self, job_id: int, send: Send) -> None:
        """Send ``send()`` for ``job_id`` soon, replacing any notification of that job not yet sent."""
        self._waiting[job_id] = send
        if job_id not in self._senders:  # else the send in flight takes the latest when it is done
            self._senders[job_id] = asyncio.get_running_loop().create_task(self._drain(job_id))

    async def settle(self, job_id: int) -> None:
        """Drop what is waiting for ``job_id`` and wait for the one in flight, so that nothing about the job
        reaches the sink after its result does."""
        self._waiting.pop(job_id, None)
        task = self._senders.get(job_id)
        if task is not None and task is not asyncio.current_task():
            await asyncio.gather(task, return_exceptions=True)

    async def close(self) -> None:
        self._waiting.clear()
        tasks = list(self._senders.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _drain(self, job_id: int) -> None:
        try:
            while (send := self._waiting.pop(job_id, None)) is not None:
                try:
                    await send()
                except Exception as exc:
                    # A progress message that cannot be shown is not a failed job; delivery will tell.
                    log.warning("job %s: progress notification failed: %s", job_id, type(exc).__name__)
        finally:
            self._senders.pop(job_id, None)
