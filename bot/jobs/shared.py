"""The queue several processes share (PostgreSQL): claims under leases, heartbeats, takeovers, places.

Each process claims the next job in round-robin order while fewer than ``concurrency`` generations run across
all processes, and renews the leases of the jobs it holds every third of a lease. A process that dies or
pauses stops renewing; once its leases have run out another process takes its jobs over (queued again, as
one process re-runs its own at start, or failed when they ran out of attempts or are too old), and the
paused one, resumed, finds itself fenced: its attempt is not the job's any more, so it can neither deliver
nor finish it. Workers sleep until a
notification (a job queued or ended, a slot freed) or their next heartbeat, never polling for work. The
process that leads (one at a time, see :meth:`QueueRecords.refresh`) reports every waiting job's place.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from bot.jobs.job import MAX_ATTEMPTS, Job
from bot.storage.port import JOBS, QueueRecords, StorageError

log = logging.getLogger(__name__)

RunClaimed = Callable[[Job], Awaitable[None]]
OnPlace = Callable[[int, int], Awaitable[None]]  # (job id, 1-based place)

LEASE = 30.0  # seconds a claimed job stays this process's without a heartbeat
RETRY = 1.0  # seconds before trying again after the database failed


def worker_name() -> str:
    """Who holds a lease, as shown in the ``jobs.worker`` column: host, process, and a nonce for restarts."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class SharedScheduler:
    def __init__(
        self,
        records: QueueRecords,
        concurrency: int,
        run: RunClaimed,
        take_over: RunClaimed,
        on_place: OnPlace,
        platforms: Callable[[], Sequence[str]],
        *,
        lease: float = LEASE,
        max_age: float = 0.0,
        report_every: float = 1.0,
        report_max: int = 100,
        monotonic: Callable[[], float] = time.monotonic,
        renew_also: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """``renew_also``: what else this process holds under its heartbeat (the inbox's events)."""
        self.worker = worker_name()
        self._renew_also = renew_also
        self.concurrency = concurrency
        self.lease = lease
        self.max_age = max_age
        self.report_every = report_every
        self.report_max = report_max
        self._records = records
        self._run = run
        self._take_over = take_over
        self._on_place = on_place
        self._platforms = platforms
        self._monotonic = monotonic
        self._held: dict[int, int] = {}  # job id -> the attempt this process holds it as
        self._running: dict[int, asyncio.Task[None]] = {}
        self._handed_off: set[int] = set()  # delivering (or being failed): no generation slot taken
        self._reported: dict[int, int] = {}  # job id -> place last reported (by the leader)
        self._wake = asyncio.Event()
        self._changed = asyncio.Event()  # for wait_idle: something ended or was claimed
        self._loop_task: asyncio.Task[None] | None = None
        self._helpers: set[asyncio.Task[None]] = set()
        self.leading = False

    # The Scheduler's interface (bot.jobs.scheduler), as the core uses it ---------------------------

    def start(self) -> None:
        if self._loop_task is None:
            self._loop_task = asyncio.get_running_loop().create_task(self._loop(), name="sdbot-shared-queue")

    async def stop(self) -> None:
        """Stop claiming and cancel the jobs held here, then end their leases: another process (or this one's
        successor, a rolling restart) takes them over at its next heartbeat rather than a lease later."""
        tasks = [t for t in (self._loop_task, *self._running.values(), *self._helpers) if t is not None]
        self._loop_task = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            await self._records.release(self.worker)
        except StorageError as exc:  # they will run out by themselves
            log.warning("shared queue: leases not released (%s); they run out in %gs", exc, self.lease)

    def enqueue(self, job_id: int, owner: str) -> None:
        """A job this process admitted: its place is told at once (the leader reports later moves)."""
        self._wake.set()
        self._spawn(self._tell_place(job_id))

    def remove(self, job_id: int) -> bool:
        self._reported.pop(job_id, None)
        return True

    def hand_off(self, job_id: int) -> None:
        if job_id in self._running:
            self._handed_off.add(job_id)
            self._wake.set()

    def position(self, job_id: int) -> int | None:
        return self._reported.get(job_id)

    async def holds(self, job_id: int, attempt: int) -> bool:
        """Whether this process still holds the job as ``attempt`` (renewing its lease if so)."""
        return job_id in await self._records.renew(self.worker, {job_id: attempt}, self.lease)

    @property
    def running(self) -> frozenset[int]:
        return frozenset(self._running)

    async def wait_idle(self) -> None:
        """Until nothing runs here and no job of this process's platforms is left unfinished anywhere."""
        while True:
            self._changed.clear()
            if not self._running and not await self._records.unfinished(self._platforms()):
                return
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.lease / 3):
                    await self._changed.wait()

    # The loop ---------------------------------------------------------------------------------------

    async def _loop(self) -> None:
        await self._records.listen(JOBS, lambda _payload: self._wake.set())
        beat = report = 0.0
        while True:
            self._wake.clear()  # before looking: a notification arriving meanwhile wakes the next wait
            now = self._monotonic()
            try:
                if now >= beat:
                    await self._heartbeat()
                    beat = now + self.lease / 3
                await self._fill()
                if self.leading and now >= report:
                    await self._report_places()
                    report = now + self.report_every
            except StorageError as exc:
                log.warning("shared queue: the database failed (%s); trying again", exc)
                beat = min(beat, now + RETRY)
            except Exception:  # a bug: logged, and the queue goes on rather than stopping for good
                log.exception("shared queue: unexpected failure; trying again")
                beat = min(beat, now + RETRY)
            wait = max(0.0, min(beat, report if self.leading else beat) - self._monotonic())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):  # not wait_for, which can swallow a cancellation
                    await self._wake.wait()

    async def _fill(self) -> None:
        platforms = self._platforms()
        while len(self._running) - len(self._handed_off) < self.concurrency:
            job = await self._records.claim_next(self.worker, platforms, self.concurrency, self.lease)
            if job is None:
                return
            log.info("job %s claimed by %s (attempt %s)", job.id, self.worker, job.attempts)
            self._reported.pop(job.id, None)
            self._start(job, self._run)

    async def _heartbeat(self) -> None:
        self.leading = await self._records.refresh()
        if self._renew_also is not None:
            await self._renew_also()
        if self._held:
            kept = await self._records.renew(self.worker, dict(self._held), self.lease)
            for job_id in set(self._held) - kept:
                # Another process has it now (this one was paused or cut off past its lease): stop, say nothing.
                log.warning("job %s: lease lost; another process takes it over", job_id)
                self._held.pop(job_id, None)
                task = self._running.get(job_id)
                if task is not None:
                    task.cancel()
        expired = await self._records.take_expired(
            self.worker, self._platforms(), self.lease, max_attempts=MAX_ATTEMPTS, max_age=self.max_age
        )
        for job in expired:
            if job.status == "running":  # held by this process now, to be failed
                self._start(job, self._take_over, slot=False)
            else:
                log.info("job %s: its worker's lease ran out; queued again", job.id)
                self._wake.set()

    def _start(self, job: Job, run: RunClaimed, *, slot: bool = True) -> None:
        self._held[job.id] = job.attempts
        task = asyncio.get_running_loop().create_task(self._guarded(run, job), name=f"job-{job.id}")
        self._running[job.id] = task
        if not slot:
            self._handed_off.add(job.id)
        task.add_done_callback(functools.partial(self._finished, job.id))
        self._changed.set()

    async def _guarded(self, run: RunClaimed, job: Job) -> None:
        try:
            await run(job)
        except Exception:
            log.exception("shared queue: job %s raised", job.id)

    def _finished(self, job_id: int, _task: asyncio.Task[None]) -> None:
        self._running.pop(job_id, None)
        self._held.pop(job_id, None)
        self._handed_off.discard(job_id)
        self._wake.set()
        self._changed.set()

    # Places -----------------------------------------------------------------------------------------

    async def _report_places(self) -> None:
        places = await self._records.places()
        queued = {job_id for job_id, _ in places}
        for job_id in [j for j in self._reported if j not in queued]:
            del self._reported[job_id]
        moved = [(job_id, place) for job_id, place in places if self._reported.get(job_id) != place]
        for job_id, place in moved[: self.report_max]:
            await self._report(job_id, place)

    async def _tell_place(self, job_id: int) -> None:
        try:
            place = await self._records.place(job_id)
        except StorageError as exc:
            log.warning("job %s: its place is unknown (%s)", job_id, exc)
            return
        if place is not None:
            await self._report(job_id, place, remember=self.leading)  # the leader's passes forget it again

    async def _report(self, job_id: int, place: int, *, remember: bool = True) -> None:
        if remember:
            self._reported[job_id] = place
        try:
            await self._on_place(job_id, place)
        except Exception:
            log.exception("shared queue: reporting job %s's place failed", job_id)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._helpers.add(task)
        task.add_done_callback(self._helpers.discard)
