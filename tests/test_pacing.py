"""bot.pacing.PerPass: a few callbacks (or tasks) per pass of the event loop, first come first served."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from bot.pacing import PerPass
from tests.loop_support import PassCounter


async def test_callbacks_run_a_few_per_pass_in_the_order_given() -> None:
    pacer = PerPass(per_pass=3)
    ran: list[tuple[int, int]] = []  # (callback, pass it ran in)
    with PassCounter() as passes:
        for i in range(8):
            pacer.call(lambda i=i: ran.append((i, passes.now)))  # type: ignore[misc]
        assert [i for i, _ in ran] == [0, 1, 2]  # at once: the pass had room
        done = asyncio.Event()
        pacer.call(done.set)  # after the eight: first come first served
        await asyncio.wait_for(done.wait(), timeout=1)
    assert [i for i, _ in ran] == list(range(8))
    assert sorted(Counter(p for _, p in ran).values()) == [2, 3, 3]  # and done.set with the last two


async def test_a_burst_of_tasks_takes_its_turns_a_few_per_pass_in_the_order_it_came() -> None:
    pacer = PerPass(per_pass=4)
    entered: list[tuple[int, int]] = []  # (caller, pass it went on in)

    async def caller(i: int) -> None:
        await pacer.turn()
        entered.append((i, passes.now))

    with PassCounter() as passes:
        await asyncio.gather(*(caller(i) for i in range(11)))
    assert [i for i, _ in entered] == list(range(11))
    assert sorted(Counter(p for _, p in entered).values()) == [3, 4, 4]


async def test_a_turn_is_taken_at_once_while_there_is_room() -> None:
    pacer = PerPass(per_pass=2)
    with PassCounter() as passes:
        before = passes.now
        await pacer.turn()
        await pacer.turn()
        assert passes.now == before  # neither waited for a pass
        await asyncio.sleep(0)  # a new pass: room again
        before = passes.now
        await pacer.turn()
        assert passes.now == before


async def test_a_cancelled_waiter_does_not_hold_up_the_others() -> None:
    pacer = PerPass(per_pass=1)
    callers = [asyncio.create_task(pacer.turn()) for _ in range(4)]
    await asyncio.sleep(0)  # one pass: the first went on, the other three wait
    assert callers[0].done() and not any(c.done() for c in callers[1:])
    callers[1].cancel()
    await asyncio.wait_for(asyncio.gather(*callers[2:]), timeout=1)
    assert callers[1].cancelled()


def test_at_least_one_per_pass() -> None:
    with pytest.raises(ValueError):
        PerPass(per_pass=0)
