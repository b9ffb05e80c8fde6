"""Progress notifications to adapters: latest wins, one in flight per job, never blocking the job itself.

Queue positions and progress fractions arrive faster than a chat can show them (Telegram allows about one
edit per second per chat). Each job has at most one notification being sent; what arrives meanwhile replaces
the waiting one, so a slow sink sees "#1 in queue" and "60%" rather than every step in between.

**Pacing.** With a long queue every start moves every waiting job up one place: a hundred waiting jobs and a
hundred starts are five thousand moves. A ``paced`` notification (the core paces a queued job's moves, except
the one to the head of the queue) waits until :data:`PACE` seconds have passed since that job's previous send
began, and by then it is whatever the latest one is. So each waiting job costs its sink at most one call a
second instead of one per start, and the core one timer instead of a task per move.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

Send = Callable[[], Awaitable[None]]

PACE = 1.0  # seconds between the starts of two sends of one job when the later one is paced


class Relay:
    def __init__(self, pace: float = PACE) -> None:
        self.pace = pace
        self._waiting: dict[int, Send] = {}
        self._senders: dict[int, asyncio.Task[None]] = {}
        self._timers: dict[int, asyncio.TimerHandle] = {}  # paced sends waiting for their time
        self._last: dict[int, float] = {}  # job -> loop time its latest send began

    def post(self, job_id: int, send: Send, *, paced: bool = False) -> None:
        """Send ``send()`` for ``job_id`` soon, replacing any notification of that job not yet sent. ``paced``:
        not sooner than ``pace`` seconds after the job's previous send began (see the module docstring)."""
        self._waiting[job_id] = send
        if job_id in self._senders:
            return  # the send in flight takes the latest when it is done
        timer = self._timers.get(job_id)
        if paced:
            if timer is not None:
                return  # already waiting for its time, and will send the latest (the common case: kept cheap)
            loop = asyncio.get_running_loop()
            due = self._last.get(job_id, -self.pace) + self.pace
            if due > loop.time():
                self._timers[job_id] = loop.call_at(due, self._start, job_id)
                return
        elif timer is not None:
            timer.cancel()
            del self._timers[job_id]
        self._start(job_id)

    async def settle(self, job_id: int) -> None:
        """Drop what is waiting for ``job_id`` and wait for the one in flight, so that nothing about the job
        reaches the sink after its result does."""
        self._waiting.pop(job_id, None)
        self._last.pop(job_id, None)
        timer = self._timers.pop(job_id, None)
        if timer is not None:
            timer.cancel()
        task = self._senders.get(job_id)
        if task is not None and task is not asyncio.current_task():
            await asyncio.gather(task, return_exceptions=True)

    async def close(self) -> None:
        self._waiting.clear()
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        tasks = list(self._senders.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _start(self, job_id: int) -> None:
        self._timers.pop(job_id, None)
        if job_id in self._waiting and job_id not in self._senders:
            self._senders[job_id] = asyncio.get_running_loop().create_task(self._drain(job_id))

    async def _drain(self, job_id: int) -> None:
        loop = asyncio.get_running_loop()
        try:
            while (send := self._waiting.pop(job_id, None)) is not None:
                self._last[job_id] = loop.time()
                try:
                    await send()
                except Exception as exc:
                    # A progress message that cannot be shown is not a failed job; delivery will tell.
                    log.warning("job %s: progress notification failed: %s", job_id, type(exc).__name__)
        finally:
            self._senders.pop(job_id, None)
