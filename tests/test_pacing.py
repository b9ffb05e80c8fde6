"""adapters.pacing.Turnstile: a few callers per pass of the event loop, first come first served."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable

import pytest

from adapters.pacing import Turnstile


@pytest.fixture
async def pass_number() -> AsyncIterator[Callable[[], int]]:
    """The number of the loop's current pass (a callback that runs once in every pass counts them)."""
    loop = asyncio.get_running_loop()
    passes = 0

    def count() -> None:
        nonlocal passes
        passes += 1
        handle[0] = loop.call_soon(count)

    handle = [loop.call_soon(count)]
    yield lambda: passes
    handle[0].cancel()


async def test_a_burst_enters_a_few_per_pass_in_the_order_it_came(pass_number: Callable[[], int]) -> None:
    turnstile = Turnstile(per_pass=4)
    entered: list[tuple[int, int]] = []  # (caller, pass it entered in)

    async def caller(i: int) -> None:
        await turnstile.enter()
        entered.append((i, pass_number()))

    await asyncio.gather(*(caller(i) for i in range(11)))
    assert [i for i, _ in entered] == list(range(11))
    per_pass = Counter(p for _, p in entered)
    assert sorted(per_pass.values()) == [3, 4, 4]


async def test_a_caller_enters_at_once_while_there_is_room(pass_number: Callable[[], int]) -> None:
    turnstile = Turnstile(per_pass=2)
    before = pass_number()
    await turnstile.enter()
    await turnstile.enter()
    assert pass_number() == before  # neither waited for a pass
    await asyncio.sleep(0)  # a new pass: room again
    before = pass_number()
    await turnstile.enter()
    assert pass_number() == before


async def test_a_cancelled_waiter_gives_its_place_to_the_next() -> None:
    turnstile = Turnstile(per_pass=1)
    callers = [asyncio.create_task(turnstile.enter()) for _ in range(4)]
    await asyncio.sleep(0)  # one pass: the first entered, the other three wait
    assert callers[0].done() and not any(c.done() for c in callers[1:])
    callers[1].cancel()
    await asyncio.wait_for(asyncio.gather(*callers[2:]), timeout=1)
    assert callers[1].cancelled()


def test_at_least_one_per_pass() -> None:
    with pytest.raises(ValueError):
        Turnstile(per_pass=0)
