"""The parts that keep the core cheap under load do not change what it does: the scheduler's sorted order, queue
positions reported a few at a time, base64 in slices, the one CPU thread."""

from __future__ import annotations

import asyncio
import base64
import contextvars
import os
import random
import threading

import pytest

from bot.backends.http import B64_SLICE, decode_b64
from bot.errors import BackendError
from bot.jobs.scheduler import Scheduler
from bot.process import cpu
from tests.test_scheduler import FairModel


async def _never(job_id: int) -> None:
    await asyncio.Event().wait()


@pytest.mark.parametrize(("owners", "seed"), [(4, 1), (12, 7), (60, 3), (300, 5)])
async def test_the_order_kept_sorted_is_the_rule_and_passes_of_few_reports_catch_every_move(
    owners: int, seed: int
) -> None:
    rng = random.Random(seed)
    reported: dict[int, int] = {}
    scheduler = Scheduler("t", 3, _never, on_position=lambda job, pos: reported.__setitem__(job, pos), report_max=7)
    model = FairModel(3)
    scheduler.start()
    finished: list[int] = []
    try:
        for job in range(1, 600):
            action = rng.random()
            if action < 0.6:
                owner = f"user{rng.randrange(owners)}"
                scheduler.enqueue(job, owner)
                model.enqueue(job, owner)
            elif action < 0.75 and scheduler.order():
                victim = rng.choice(scheduler.order())
                scheduler.remove(victim)
                model.remove(victim)
            elif scheduler.running:
                victim = rng.choice(sorted(scheduler.running))
                scheduler._running[victim].cancel()  # a run ends: the next job starts
                model.finish(victim)
                finished.append(victim)
                for _ in range(3):  # the cancellation, then the task's done callback
                    await asyncio.sleep(0)
            order = scheduler.order()
            assert order == model.order()
            assert [scheduler.position(j) for j in order] == list(range(1, len(order) + 1))
            if order:  # the head and every arrival are reported at once, the other moves by the periodic pass
                assert reported[order[0]] == 1
            assert all(j in reported for j in order)
            for _ in range(len(order) // 7 + 2):  # each pass reports at most 7 moves, going on where it stopped
                scheduler.report_positions()
            assert all(reported[j] == i for i, j in enumerate(order, start=1))
    finally:
        await scheduler.stop()
    assert finished  # the random walk did start jobs


@pytest.mark.parametrize("size", [0, 1, 2, 3, 1000, B64_SLICE // 4 * 3 - 1, B64_SLICE // 4 * 3, 200_000, 1_500_001])
def test_base64_in_slices_decodes_exactly_like_the_standard_library(size: int) -> None:
    data = os.urandom(size)
    text = base64.b64encode(data).decode()
    assert decode_b64(text, "p") == data
    assert decode_b64("data:image/png;base64," + text, "p", start=22) == data


@pytest.mark.parametrize(
    "text",
    [
        base64.b64encode(os.urandom(B64_SLICE // 4 * 3 - 2)).decode() + base64.b64encode(os.urandom(90_000)).decode(),
        base64.b64encode(os.urandom(300_000)).decode()[:-1],
        base64.b64encode(os.urandom(300_000)).decode() + "\n",
        "QUJD" * 50_000 + " " + "QUJD" * 10,
        "QU=I",
        "é" * 8,
    ],
)
def test_base64_in_slices_refuses_what_strict_base64_refuses(text: str) -> None:
    with pytest.raises(BackendError) as caught:
        decode_b64(text, "p")
    assert caught.value.params["reason"] == "base64"


async def test_cpu_work_runs_on_one_thread_off_the_loop_with_the_callers_context() -> None:
    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker")
    marker.set("caller")

    def where() -> tuple[str, str]:
        return threading.current_thread().name, marker.get()

    seen = await asyncio.gather(*(cpu.run(where) for _ in range(8)))
    names = {name for name, _ in seen}
    assert len(names) == 1 and next(iter(names)).startswith("sdbot-cpu")
    assert {value for _, value in seen} == {"caller"}
    assert threading.current_thread() is threading.main_thread()
