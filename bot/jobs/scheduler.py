"""Which queued job runs next: round-robin between users over a bounded pool of concurrent runs."""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from sortedcontainers import SortedList  # type: ignore[import-untyped]

log = logging.getLogger(__name__)

RunJob = Callable[[int], Awaitable[None]]
PositionCallback = Callable[[int, int], None]  # (job id, 1-based position)

REPORT_EVERY = 1.0  # seconds between two passes reporting the moves of waiting jobs (not the head's)
REPORT_MAX = 100  # moves one pass reports at most; the next pass goes on from there


class _Owner:
    """A user with queued jobs. ``key`` is their place in the cycle of users and ``round`` the round of their
    first queued job: their k-th queued job starts in round ``round + k``, after the jobs of that round whose
    owners have a smaller key. Keys only change in ways that keep every comparison (see docs/MODULES.md)."""

    __slots__ = ("jobs", "key", "name", "round")

    def __init__(self, name: str, key: tuple[int, int, int], round_: int) -> None:
        self.name, self.key, self.round = name, key, round_
        self.jobs: deque[int] = deque()

    def __lt__(self, other: _Owner) -> bool:
        return self.key < other.key

    def tags(self) -> list[tuple[int, _Owner, int]]:
        return [(self.round + k, self, job_id) for k, job_id in enumerate(self.jobs)]


class Scheduler:
    def __init__(
        self,
        name: str,
        concurrency: int,
        run: RunJob,
        on_position: PositionCallback | None = None,
        *,
        report_every: float = REPORT_EVERY,
        report_max: int = REPORT_MAX,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.name = name
        self.concurrency = concurrency
        self._run = run
        self._on_position = on_position
        self.report_every = report_every
        self.report_max = report_max
        self._order = SortedList()  # (round, owner, job id) of every queued job: the start order
        self._owners: dict[str, _Owner] = {}  # users with queued jobs
        self._owner_of: dict[int, str] = {}  # queued or running job -> owner
        self._arrival: dict[int, int] = {}  # queued job -> arrival number
        self._served: dict[str, int] = {}  # owner -> tick of their last start, while they have jobs
        self._running_of: dict[str, int] = {}  # owner -> their jobs running now
        self._round = 0  # the round being served
        self._round_tick = 0  # the tick of its first start (round 0 began before the first, tick 1)
        self._tick = 0
        self._arrivals = 0
        self._running: dict[int, asyncio.Task[None]] = {}
        self._handed_off: set[int] = set()  # running jobs that gave their slot back (see hand_off)
        self._reported: dict[int, int] = {}  # queued job -> its place, as last reported
        self._untold: list[int] = []  # arrivals whose place is not reported yet
        self._report_timer: asyncio.TimerHandle | None = None  # the next pass over the waiting jobs
        self._cursor = 0  # where the next pass begins
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
        self._arrival[job_id] = self._arrivals
        self._arrivals += 1
        waiting = self._owners.get(owner)
        if waiting is None:
            waiting = self._owners[owner] = self._join(owner, job_id)
        self._order.add((waiting.round + len(waiting.jobs), waiting, job_id))
        waiting.jobs.append(job_id)
        self._owner_of[job_id] = owner
        self._untold.append(job_id)
        self._idle.clear()
        self._pump()

    def remove(self, job_id: int) -> bool:
        """Take a queued job out (cancelled). False when it is not queued here (running, or unknown)."""
        owner = self._owners.get(self._owner_of.get(job_id, ""))
        if owner is None or job_id in self._running:
            return False
        for tag in owner.tags():  # the jobs behind it move up a round
            self._order.remove(tag)
        first = owner.jobs[0] == job_id
        owner.jobs.remove(job_id)
        del self._owner_of[job_id], self._arrival[job_id]
        if not owner.jobs:
            del self._owners[owner.name]
        else:
            if first and owner.key[1] == 0:  # a newcomer is placed by the arrival of their first job
                owner.key = (owner.key[0], 0, self._arrival[owner.jobs[0]])
            self._order.update(owner.tags())
        self._reported.pop(job_id, None)
        self._forget_if_idle(owner.name)
        self._publish()
        self._check_idle()
        return True

    def position(self, job_id: int) -> int | None:
        """1 = starts at the next free slot; None when not queued here."""
        owner = self._owners.get(self._owner_of.get(job_id, ""))
        if owner is None or job_id in self._running:
            return None
        return self._index(owner, job_id) + 1

    def report_positions(self) -> None:
        """Report places that changed since they were last reported (what the periodic pass does): at most
        ``report_max`` of them, going on from where the last pass stopped and around the queue once."""
        if self._report_timer is not None:
            self._report_timer.cancel()
            self._report_timer = None
        if self._on_position is None or not self._order:
            return
        start = self._cursor if self._cursor < len(self._order) else 0
        order = self._order
        places = itertools.chain(enumerate(order.islice(start), start + 1), enumerate(order.islice(0, start), 1))
        changed = ((job_id, place) for place, (_, _, job_id) in places if self._reported.get(job_id) != place)
        moved = list(itertools.islice(changed, self.report_max))
        self._cursor = moved[-1][1] if len(moved) >= self.report_max else 0
        for job_id, index in moved:
            self._report(job_id, index)
        if self._cursor:
            self._schedule_pass()

    def order(self) -> list[int]:
        """Every queued job in the order it will start, if nothing else arrives."""
        return [job_id for _, _, job_id in self._order]

    @property
    def running(self) -> frozenset[int]:
        return frozenset(self._running)

    @property
    def queued(self) -> int:
        return len(self._order)

    async def wait_idle(self) -> None:
        """Until nothing is queued or running."""
        await self._idle.wait()

    # Order ------------------------------------------------------------------------------------------

    def _join(self, name: str, job_id: int) -> _Owner:
        """A user's place in the cycle when they start waiting: by when they were served last, a newcomer (never
        served, or not since they went idle) before everyone, in order of arrival."""
        served = self._served.get(name)
        if served is None:
            return _Owner(name, (-self._round, 0, self._arrival[job_id]), self._round)
        if served >= self._round_tick:  # served in this round already: waits for the next
            return _Owner(name, (-self._round - 1, 1, served), self._round + 1)
        return _Owner(name, (-self._round, 1, served), self._round)

    def _index(self, owner: _Owner, job_id: int) -> int:
        return int(self._order.index((owner.round + owner.jobs.index(job_id), owner, job_id)))

    def _pick(self) -> int:
        round_, owner, job_id = self._order.pop(0)
        owner.jobs.popleft()
        del self._arrival[job_id]
        self._tick += 1
        if round_ > self._round:
            self._round, self._round_tick = round_, self._tick
        self._reported.pop(job_id, None)
        self._served[owner.name] = self._tick
        self._running_of[owner.name] = self._running_of.get(owner.name, 0) + 1
        if owner.jobs:
            # Last in the cycle now: its key goes behind those served this round, before those still waiting
            # for their turn in it, which is where it already sits among them.
            owner.round, owner.key = round_ + 1, (-round_ - 1, 1, self._tick)
        else:
            del self._owners[owner.name]
        return job_id

    # Dispatch ---------------------------------------------------------------------------------------

    def _busy(self) -> int:
        """Slots taken: running jobs that did not hand theirs off."""
        return len(self._running) - len(self._handed_off)

    def _pump(self) -> None:
        while self._dispatching and self._order and self._busy() < self.concurrency:
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
        if owner not in self._owners and owner not in self._running_of:
            self._served.pop(owner, None)

    def _check_idle(self) -> None:
        if not self._order and not self._running:
            self._idle.set()

    # Positions --------------------------------------------------------------------------------------

    def _publish(self) -> None:
        # At once: the place of each new arrival (the user's first news of the job) and the head of the queue
        # ("starts next"). Every other move waits for the periodic pass.
        untold, self._untold = self._untold, []
        if self._on_position is None or not self._order:
            return
        head = self._order[0][2]
        if self._reported.get(head) != 1:
            self._report(head, 1)
        for job_id in untold:
            if job_id not in self._reported and (place := self.position(job_id)) is not None:
                self._report(job_id, place)
        if len(self._order) > 1:
            self._schedule_pass()

    def _schedule_pass(self) -> None:
        if self._report_timer is None:
            self._report_timer = asyncio.get_running_loop().call_later(self.report_every, self.report_positions)

    def _report(self, job_id: int, position: int) -> None:
        assert self._on_position is not None
        self._reported[job_id] = position
        try:
            self._on_position(job_id, position)
        except Exception:
            log.exception("scheduler %s: position callback failed", self.name)
