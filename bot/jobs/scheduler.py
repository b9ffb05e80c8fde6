"""Which queued job runs next: round-robin between users over a bounded pool of concurrent runs."""

from __future__ import annotations

import asyncio
import functools
import heapq
import logging
from collections import deque
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

RunJob = Callable[[int], Awaitable[None]]
PositionCallback = Callable[[int, int], None]  # (job id, 1-based position)

REPORT_EVERY = 1.0  # seconds between two passes reporting the moves of waiting jobs (not the head's)


class Scheduler:
    def __init__(
        self,
        name: str,
        concurrency: int,
        run: RunJob,
        on_position: PositionCallback | None = None,
        *,
        report_every: float = REPORT_EVERY,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.name = name
        self.concurrency = concurrency
        self._run = run
        self._on_position = on_position
        self.report_every = report_every
        self._queues: dict[str, deque[int]] = {}  # owner -> queued job ids, oldest first
        self._owner_of: dict[int, str] = {}  # queued or running job -> owner
        self._arrival: dict[int, int] = {}  # queued job -> arrival number (tie-break)
        self._served: dict[str, int] = {}  # owner -> tick of their last start, while they have jobs
        self._fresh: set[str] = set()  # owners waiting who were not served since they last went idle
        self._running_of: dict[str, int] = {}  # owner -> their jobs running now
        # (last served tick or -1, arrival of their first queued job, owner) for each owner waiting; entries
        # that no longer match those two (the owner started or lost a job since) are dropped when popped.
        self._next: list[tuple[int, int, str]] = []
        self._running: dict[int, asyncio.Task[None]] = {}
        self._handed_off: set[int] = set()  # running jobs that gave their slot back (see hand_off)
        self._reported: dict[int, int] = {}  # queued job -> its place, as last reported
        self._untold: list[int] = []  # arrivals whose place is not reported yet
        self._report_timer: asyncio.TimerHandle | None = None  # the next pass over every waiting job
        self._order: deque[int] | None = None  # the queued jobs in start order; None: simulate again
        self._tick = 0
        self._arrivals = 0
        self._dispatching = False
        self._idle = asyncio.Event()
        self._idle.set()

    # Public -----------------------------------------------------------------------------------------

    def start(self) -> None:
        """Begin running jobs (those enqueued before start wait until now)."""
        self._dispatching = True
        self._pump()

    async def stop(self) -> None:
        """Stop dispatching and cancel running jobs. Their records stay unfinished, for the next start."""
        self._dispatching = False
        if self._report_timer is not None:
            self._report_timer.cancel()
            self._report_timer = None
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def hand_off(self, job_id: int) -> None:
        """The running ``job_id`` needs its slot no more (its generation is over; it is being delivered): the
        next job may start. It still counts as running for :meth:`stop`, :meth:`wait_idle` and its owner."""
        if job_id in self._running and job_id not in self._handed_off:
            self._handed_off.add(job_id)
            self._pump()

    def enqueue(self, job_id: int, owner: str) -> None:
        """Queue ``job_id`` (it starts at once when a slot is free and nobody waits)."""
        if job_id in self._owner_of:
            return  # already here: recovery and a live submission can both know a job
        waiting = owner in self._queues
        newcomer = not waiting and owner not in self._served
        if newcomer and self._order is not None:
            # Someone not served since they last went idle starts after the first job of everyone else in
            # that case (their keys come first, in order of arrival, and this arrival is the latest) and
            # before anyone already served: no need to simulate the whole queue again.
            self._order.insert(len(self._fresh), job_id)
        else:
            self._order = None
        if newcomer:
            self._fresh.add(owner)
        self._queues.setdefault(owner, deque()).append(job_id)
        self._owner_of[job_id] = owner
        self._arrival[job_id] = self._arrivals
        self._arrivals += 1
        if not waiting:
            self._push(owner)
        self._untold.append(job_id)
        self._idle.clear()
        self._pump()

    def remove(self, job_id: int) -> bool:
        """Take a queued job out (cancelled). False when it is not queued here (running, or unknown)."""
        owner = self._owner_of.get(job_id)
        if owner is None or job_id in self._running:
            return False
        queue = self._queues[owner]
        was_first = queue[0] == job_id
        queue.remove(job_id)
        del self._owner_of[job_id], self._arrival[job_id]
        if not queue:
            self._stop_waiting(owner)
        elif was_first:
            self._push(owner)  # their key changed: the entry in the heap is stale now
        self._reported.pop(job_id, None)
        self._order = None
        self._forget_if_idle(owner)
        self._publish()
        self._check_idle()
        return True

    def position(self, job_id: int) -> int | None:
        """1 = starts at the next free slot; None when not queued here."""
        if job_id not in self._arrival:
            return None
        return self._current_order().index(job_id) + 1

    def report_positions(self) -> None:
        """Report every place that changed since it was last reported (what the periodic pass does)."""
        if self._report_timer is not None:
            self._report_timer.cancel()
            self._report_timer = None
        if self._on_position is None:
            return
        reported = self._reported
        for index, job_id in enumerate(self._current_order(), start=1):
            if reported.get(job_id) != index:
                self._report(job_id, index)

    def order(self) -> list[int]:
        """Every queued job in the order it will start, if nothing else arrives."""
        return list(self._current_order())

    def _current_order(self) -> deque[int]:
        if self._order is None:
            self._order = deque(self._simulate())
        return self._order

    def _simulate(self) -> list[int]:
        heap = [(self._served.get(owner, -1), self._arrival[q[0]], owner) for owner, q in self._queues.items()]
        heapq.heapify(heap)
        taken = dict.fromkeys(self._queues, 0)
        tick = self._tick
        out: list[int] = []
        while heap:
            _, _, owner = heapq.heappop(heap)
            queue = self._queues[owner]
            index = taken[owner]
            out.append(queue[index])
            taken[owner] = index + 1
            if index + 1 < len(queue):
                tick += 1
                heapq.heappush(heap, (tick, self._arrival[queue[index + 1]], owner))
        return out

    @property
    def running(self) -> frozenset[int]:
        return frozenset(self._running)

    @property
    def queued(self) -> int:
        return len(self._arrival)

    async def wait_idle(self) -> None:
        """Until nothing is queued or running."""
        await self._idle.wait()

    # Dispatch ---------------------------------------------------------------------------------------

    def _key(self, owner: str) -> tuple[int, int]:
        return self._served.get(owner, -1), self._arrival[self._queues[owner][0]]

    def _push(self, owner: str) -> None:
        heapq.heappush(self._next, (*self._key(owner), owner))

    def _pick(self) -> int:
        while True:
            served, first, owner = heapq.heappop(self._next)
            if owner in self._queues and self._key(owner) == (served, first):
                break
        queue = self._queues[owner]
        job_id = queue.popleft()
        self._fresh.discard(owner)
        del self._arrival[job_id]
        self._reported.pop(job_id, None)
        # The simulation's first step is this very pick, so what it predicted for the others still holds.
        if self._order and self._order[0] == job_id:
            self._order.popleft()
        else:
            self._order = None
        self._serve(owner)
        if queue:
            self._push(owner)
        else:
            self._stop_waiting(owner)
        return job_id

    def _serve(self, owner: str) -> None:
        self._tick += 1
        self._served[owner] = self._tick
        self._running_of[owner] = self._running_of.get(owner, 0) + 1

    def _stop_waiting(self, owner: str) -> None:
        del self._queues[owner]
        self._fresh.discard(owner)
        if not self._queues:
            self._next.clear()  # only stale entries are left

    def _busy(self) -> int:
        """Slots taken: running jobs that did not hand theirs off."""
        return len(self._running) - len(self._handed_off)

    def _pump(self) -> None:
        while self._dispatching and self._queues and self._busy() < self.concurrency:
            self._start(self._pick())
        self._publish()

    def _start(self, job_id: int) -> None:
        task = asyncio.get_running_loop().create_task(self._guarded(job_id), name=f"job-{job_id}")
        self._running[job_id] = task
        task.add_done_callback(functools.partial(self._task_done, job_id))

    def _task_done(self, job_id: int, _task: asyncio.Task[None]) -> None:
        self._finished(job_id)

    async def _guarded(self, job_id: int) -> None:
        try:
            await self._run(job_id)
        except Exception:
            # run() records every outcome itself; reaching here is a bug, which must not stop the queue.
            log.exception("scheduler %s: job %s raised", self.name, job_id)

    def _finished(self, job_id: int) -> None:
        self._running.pop(job_id, None)
        self._handed_off.discard(job_id)
        owner = self._owner_of.pop(job_id, None)
        if owner is not None:
            left = self._running_of.pop(owner) - 1
            if left:
                self._running_of[owner] = left
            self._forget_if_idle(owner)
        self._pump()
        self._check_idle()

    def _forget_if_idle(self, owner: str) -> None:
        # Keeps memory bounded by active users; someone returning after going idle counts as new.
        if owner not in self._queues and owner not in self._running_of:
            self._served.pop(owner, None)

    def _check_idle(self) -> None:
        if not self._queues and not self._running:
            self._idle.set()

    def _publish(self) -> None:
        # At once: the place of each new arrival (the user's first news of the job) and the head of the queue
        # ("starts next"). Every other move waits for the periodic pass.
        untold, self._untold = self._untold, []
        if self._on_position is None or not self._arrival:
            return
        order = self._current_order()
        if self._reported.get(order[0]) != 1:
            self._report(order[0], 1)
        for job_id in untold:
            if job_id in self._arrival and job_id not in self._reported:
                self._report(job_id, order.index(job_id) + 1)
        if self._report_timer is None and len(order) > 1:
            self._report_timer = asyncio.get_running_loop().call_later(self.report_every, self.report_positions)

    def _report(self, job_id: int, position: int) -> None:
        assert self._on_position is not None
        self._reported[job_id] = position
        try:
            self._on_position(job_id, position)
        except Exception:
            log.exception("scheduler %s: position callback failed", self.name)
