"""A few new tasks per pass of the event loop, so a burst of events does not hold the loop all at once.

discord.py reads every gateway event waiting on the socket in one go and starts a task per interaction: a
burst of a hundred ``/draw`` starts a hundred tasks whose first steps (option conversion, the checks, the
admission's preparation) then all run in one pass of the loop, and everything else waits behind them: the
gateway's heartbeat, timers, another chat's upload. :class:`Turnstile` lets :data:`PER_PASS` through per
pass, in the order they came; the rest wait a pass or a few. Measured in BENCHMARKS.md ("A burst's Discord
commands start eight per pass of the event loop").
"""

from __future__ import annotations

import asyncio
import collections

PER_PASS = 8


class Turnstile:
    """``await turnstile.enter()``: returns at once while fewer than ``per_pass`` callers have entered in this
    pass of the loop and nobody is waiting; otherwise in a later pass, first come first served."""

    def __init__(self, per_pass: int = PER_PASS) -> None:
        if per_pass < 1:
            raise ValueError("per_pass must be at least 1")
        self.per_pass = per_pass
        self._entered = 0  # callers let through since the last turn
        self._waiting: collections.deque[asyncio.Future[None]] = collections.deque()
        self._turn_due = False  # a turn is scheduled for the next pass

    async def enter(self) -> None:
        if self._entered < self.per_pass and not self._waiting:
            self._entered += 1
            self._schedule_turn()
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        self._schedule_turn()
        await waiter  # a cancelled waiter is skipped by _turn

    def _schedule_turn(self) -> None:
        if not self._turn_due:
            self._turn_due = True
            asyncio.get_running_loop().call_soon(self._turn)

    def _turn(self) -> None:
        """A new pass: let the next ``per_pass`` waiters through (they run in the pass after this one)."""
        self._turn_due = False
        self._entered = 0
        while self._waiting and self._entered < self.per_pass:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self._entered += 1
        if self._entered:
            self._schedule_turn()
