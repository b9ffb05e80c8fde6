"""A few at a time per pass of the event loop, so a burst does not hold the loop all at once.

A hundred tasks made ready together run in one pass of the loop, and everything else (a gateway heartbeat, a
timer, another chat's upload) waits behind all of them. :class:`PerPass` lets at most ``per_pass`` callbacks
run per pass, in the order given; the rest run in the passes after. Two bursts use it: the callers of one
trip to the database (:data:`bot.store.WAKE_AT_ONCE`) and Discord commands arriving together
(``adapters/discord/client.py``). Measured in BENCHMARKS.md ("A burst's Discord commands start eight per
pass of the event loop").
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable


class PerPass:
    """``call(fn)`` runs ``fn`` at once while fewer than ``per_pass`` callbacks have run in this pass of the
    loop and none waits; otherwise in a later pass, first come first served. ``await turn()`` is the same for
    a task: it returns at once or in a later pass."""

    def __init__(self, per_pass: int) -> None:
        if per_pass < 1:
            raise ValueError("per_pass must be at least 1")
        self.per_pass = per_pass
        self._ran = 0  # callbacks run since the last turn
        self._waiting: collections.deque[Callable[[], object]] = collections.deque()
        self._turn_due = False  # a turn is scheduled for the next pass

    def call(self, fn: Callable[[], object]) -> None:
        if self._ran < self.per_pass and not self._waiting:
            self._ran += 1
            fn()
        else:
            self._waiting.append(fn)
        if not self._turn_due:
            self._turn_due = True
            asyncio.get_running_loop().call_soon(self._turn)

    async def turn(self) -> None:
        waiter = asyncio.get_running_loop().create_future()

        def let_through() -> None:
            if not waiter.done():  # else its task was cancelled meanwhile
                waiter.set_result(None)

        self.call(let_through)
        await waiter  # no suspension when it was let through at once

    def _turn(self) -> None:
        """A new pass: run the next ``per_pass`` waiting callbacks."""
        self._turn_due = False
        self._ran = 0
        while self._waiting and self._ran < self.per_pass:
            self._ran += 1
            self._waiting.popleft()()
        if self._ran:
            self._turn_due = True
            asyncio.get_running_loop().call_soon(self._turn)
