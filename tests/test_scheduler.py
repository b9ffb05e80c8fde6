"""Round-robin between users over a bounded pool; positions; removal; a failing run does not stop the queue."""

from __future__ import annotations

import asyncio
import random

import pytest

from bot.jobs.relay import Relay
from bot.jobs.scheduler import Scheduler
from tests.pipeline_support import WAIT_LIMIT


class Runs:
    """A ``run`` callback whose jobs finish only when the test says so; records start order."""

    def __init__(self) -> None:
        self.started: list[int] = []
        self.active = 0
        self.peak = 0
        self.gates: dict[int, asyncio.Event] = {}
        self.changed = asyncio.Condition()
        self.fail: set[int] = set()

    async def __call__(self, job_id: int) -> None:
        gate = self.gates.setdefault(job_id, asyncio.Event())
        async with self.changed:
            self.started.append(job_id)
            self.active += 1
            self.peak = max(self.peak, self.active)
            self.changed.notify_all()
        try:
            await gate.wait()
            if job_id in self.fail:
                raise RuntimeError("a bug in run()")
        finally:
            self.active -= 1

    def finish(self, job_id: int) -> None:
        self.gates.setdefault(job_id, asyncio.Event()).set()

    async def wait_started(self, count: int) -> None:
        async with asyncio.timeout(WAIT_LIMIT), self.changed:
            await self.changed.wait_for(lambda: len(self.started) >= count)


async def test_concurrency_cap_is_never_exceeded() -> None:
    runs = Runs()
    scheduler = Scheduler("t", 3, runs)
    scheduler.start()
    for job in range(12):
        scheduler.enqueue(job, f"user{job % 4}")
    await runs.wait_started(3)
    assert runs.active == 3 and scheduler.queued == 9
    for job in range(12):
        await runs.wait_started(job + 1)
        runs.finish(runs.started[job])
    await scheduler.wait_idle()
    assert runs.peak == 3 and sorted(runs.started) == list(range(12))


async def test_a_single_job_is_not_starved_by_a_user_with_twenty() -> None:
    runs = Runs()
    scheduler = Scheduler("t", 2, runs)
    scheduler.start()
    for job in range(20):
        scheduler.enqueue(job, "alice")
    await runs.wait_started(2)
    scheduler.enqueue(100, "bob")
    assert scheduler.position(100) == 1
    runs.finish(runs.started[0])  # the first slot that frees goes to bob
    await runs.wait_started(3)
    assert runs.started[2] == 100
    for job in [*range(20), 100]:
        runs.finish(job)
    await scheduler.wait_idle()


async def test_users_are_served_in_turn_and_positions_follow_the_same_rule() -> None:
    runs = Runs()
    reported: dict[int, list[int]] = {}
    scheduler = Scheduler(
        "t", 1, runs, on_position=lambda job, pos: reported.setdefault(job, []).append(pos), report_every=60
    )
    for job, owner in [(1, "a"), (2, "a"), (3, "a"), (4, "b"), (5, "b"), (6, "c")]:
        scheduler.enqueue(job, owner)
    assert scheduler.order() == [1, 4, 6, 2, 5, 3]
    # Each arrival was told its place at once; later arrivals moved some of them back.
    assert reported == {1: [1], 2: [2], 3: [3], 4: [2], 5: [4], 6: [3]}
    scheduler.report_positions()
    assert {job: positions[-1] for job, positions in reported.items()} == {1: 1, 4: 2, 6: 3, 2: 4, 5: 5, 3: 6}
    reported.clear()
    scheduler.start()
    for index in range(6):
        await runs.wait_started(index + 1)
        runs.finish(runs.started[index])
    await scheduler.wait_idle()
    assert runs.started == [1, 4, 6, 2, 5, 3]
    # Reaching the head of the queue is reported at once; the moves behind it wait for the periodic pass.
    assert reported == {4: [1], 6: [1], 2: [1], 5: [1], 3: [1]}


async def test_the_moves_behind_the_head_are_reported_together_by_the_periodic_pass() -> None:
    runs = Runs()
    reported: list[tuple[int, int]] = []
    three = asyncio.Event()

    def report(job: int, position: int) -> None:
        reported.append((job, position))
        if len(reported) >= 3:
            three.set()

    scheduler = Scheduler("t", 1, runs, on_position=report, report_every=0.05)
    scheduler.start()
    for job in range(1, 6):
        scheduler.enqueue(job, f"user{job}")
    await runs.wait_started(1)
    assert reported == [(2, 1), (3, 2), (4, 3), (5, 4)]  # job 1 started at once: never queued
    reported.clear()
    three.clear()
    runs.finish(1)
    await runs.wait_started(2)
    assert reported == [(3, 1)]  # the new head at once, the others not yet
    async with asyncio.timeout(WAIT_LIMIT):
        await three.wait()
    await asyncio.sleep(0.1)  # a second pass has nothing more to say
    assert reported == [(3, 1), (4, 2), (5, 3)]
    for job in range(2, 6):
        runs.finish(job)
    await scheduler.wait_idle()
    await scheduler.stop()
    assert scheduler._report_timer is None


async def test_removing_a_queued_job_moves_the_others_up() -> None:
    runs = Runs()
    reported: list[tuple[int, int]] = []
    scheduler = Scheduler("t", 1, runs, on_position=lambda job, pos: reported.append((job, pos)))
    scheduler.start()
    for job in (1, 2, 3):
        scheduler.enqueue(job, "a")
    await runs.wait_started(1)
    assert scheduler.position(1) is None  # running, not queued
    assert not scheduler.remove(1)  # running jobs cannot be removed
    reported.clear()
    assert scheduler.remove(2)
    assert reported == [(3, 1)]
    assert scheduler.order() == [3] and not scheduler.remove(2)
    runs.finish(1)
    runs.finish(3)
    await scheduler.wait_idle()
    assert runs.started == [1, 3]


async def test_a_run_that_raises_does_not_stop_the_queue(caplog: pytest.LogCaptureFixture) -> None:
    runs = Runs()
    runs.fail.add(1)
    scheduler = Scheduler("t", 1, runs)
    scheduler.start()
    scheduler.enqueue(1, "a")
    scheduler.enqueue(2, "b")
    runs.finish(1)
    await runs.wait_started(2)
    runs.finish(2)
    await scheduler.wait_idle()
    assert runs.started == [1, 2]
    assert "job 1 raised" in caplog.text


async def test_nothing_runs_before_start_and_stop_cancels_running_jobs() -> None:
    runs = Runs()
    scheduler = Scheduler("t", 2, runs)
    scheduler.enqueue(1, "a")
    scheduler.enqueue(1, "a")  # the same job twice is one job
    await asyncio.sleep(0)
    assert runs.started == [] and scheduler.queued == 1
    scheduler.start()
    await runs.wait_started(1)
    await scheduler.stop()
    assert runs.active == 0 and scheduler.running == frozenset()
    with pytest.raises(ValueError):
        Scheduler("t", 0, runs)


class FairModel:
    """The scheduling rule written the plain way: scan every waiting user, least recently served first (never
    served, or not since they went idle, before anyone), ties by the arrival of their first waiting job."""

    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self.queues: dict[str, list[int]] = {}
        self.served: dict[str, int] = {}
        self.arrival: dict[int, int] = {}
        self.running: dict[int, str] = {}
        self.started: list[int] = []
        self.tick = 0

    def _pick(self, queues: dict[str, list[int]], served: dict[str, int]) -> str:
        return min(queues, key=lambda o: (served.get(o, -1), self.arrival[queues[o][0]]))

    def _idle(self, owner: str) -> None:
        if owner not in self.queues and owner not in self.running.values():
            self.served.pop(owner, None)

    def _start(self, job: int, owner: str) -> None:
        self.tick += 1
        self.served[owner] = self.tick
        self.running[job] = owner
        self.started.append(job)

    def pump(self) -> None:
        while self.queues and len(self.running) < self.concurrency:
            owner = self._pick(self.queues, self.served)
            job = self.queues[owner].pop(0)
            if not self.queues[owner]:
                del self.queues[owner]
            self._start(job, owner)

    def enqueue(self, job: int, owner: str) -> None:
        self.queues.setdefault(owner, []).append(job)
        self.arrival[job] = len(self.arrival)
        self.pump()

    def remove(self, job: int) -> None:
        owner = next(o for o, q in self.queues.items() if job in q)
        self.queues[owner].remove(job)
        if not self.queues[owner]:
            del self.queues[owner]
        self._idle(owner)

    def finish(self, job: int) -> None:
        self._idle(self.running.pop(job))
        self.pump()

    def order(self) -> list[int]:
        queues = {o: list(q) for o, q in self.queues.items()}
        served, tick, out = dict(self.served), self.tick, []
        while queues:
            owner = self._pick(queues, served)
            out.append(queues[owner].pop(0))
            if not queues[owner]:
                del queues[owner]
            tick += 1
            served[owner] = tick
        return out


@pytest.mark.parametrize("seed", range(8))
async def test_start_order_and_positions_follow_the_rule_over_random_arrivals_cancels_and_finishes(seed: int) -> None:
    rng = random.Random(seed)
    concurrency = rng.choice((1, 2, 3))
    runs, model = Runs(), FairModel(concurrency)
    scheduler = Scheduler("t", concurrency, runs, on_position=lambda job, pos: None, report_every=60)
    scheduler.start()
    queued: list[int] = []
    for job in range(300):
        action = rng.random()
        if action < 0.5 or not (queued or model.running):
            owner = f"user{rng.randrange(8)}"
            scheduler.enqueue(job, owner)
            model.enqueue(job, owner)
        elif action < 0.65 and queued:
            victim = rng.choice(queued)
            assert scheduler.remove(victim)
            model.remove(victim)
        elif model.running:
            done = rng.choice(sorted(model.running))
            runs.finish(done)
            model.finish(done)
        for _ in range(3):  # the finished task's callback, then the next task's first step
            await asyncio.sleep(0)
        assert runs.started == model.started
        assert scheduler.order() == model.order()
        queued = model.order()
        assert [scheduler.position(j) for j in queued] == list(range(1, len(queued) + 1))
    await scheduler.stop()


# Progress relay: latest wins, and nothing is in flight after settle() -----------------------------------


class Sends:
    def __init__(self) -> None:
        self.sent: list[str] = []
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()
        self.changed = asyncio.Condition()

    async def wait_sent(self, label: str) -> None:
        async with asyncio.timeout(WAIT_LIMIT), self.changed:
            await self.changed.wait_for(lambda: label in self.sent)

    def make(self, label: str, *, block: bool = False, fail: bool = False):  # type: ignore[no-untyped-def]
        async def send() -> None:
            if block:
                self.entered.set()
                await self.gate.wait()
            if fail:
                raise RuntimeError("chat API down")
            async with self.changed:
                self.sent.append(label)
                self.changed.notify_all()

        return send


async def test_relay_sends_only_the_latest_of_what_arrives_while_one_is_in_flight() -> None:
    relay, sends = Relay(), Sends()
    relay.post(1, sends.make("#3", block=True))
    await sends.entered.wait()
    for label in ("#2", "#1", "running", "42%"):
        relay.post(1, sends.make(label))
    relay.post(2, sends.make("other job"))
    sends.gate.set()
    await sends.wait_sent("42%")
    await sends.wait_sent("other job")
    assert sorted(sends.sent) == sorted(["#3", "42%", "other job"])
    assert sends.sent.index("#3") < sends.sent.index("42%")


async def test_relay_settle_waits_for_the_send_in_flight_and_drops_the_rest() -> None:
    relay, sends = Relay(), Sends()
    relay.post(1, sends.make("#1", block=True))
    await sends.entered.wait()
    relay.post(1, sends.make("running"))
    settled = asyncio.create_task(relay.settle(1))
    await asyncio.sleep(0)
    assert not settled.done()  # still waiting for "#1"
    sends.gate.set()
    await settled
    assert sends.sent == ["#1"]


async def test_relay_keeps_going_after_a_failed_send(caplog: pytest.LogCaptureFixture) -> None:
    relay, sends = Relay(), Sends()
    relay.post(1, sends.make("broken", block=True, fail=True))
    await sends.entered.wait()
    relay.post(1, sends.make("fine"))
    sends.gate.set()
    await sends.wait_sent("fine")
    await relay.close()
    assert "progress notification failed: RuntimeError" in caplog.text
