"""A circuit breaker in front of the image service: stop sending jobs to a service that keeps failing."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Literal

from bot.errors import BackendError, DrawError, SdbotError

OUTAGE = frozenset({"backend_unavailable", "backend_timeout", "backend_bad_image"})
# Provider answers that are failures of one request, not of the service.
REQUEST_SPECIFIC = frozenset({"out_of_memory"})
# Outcomes that prove nothing about the service either way (a bug of ours, a job cancelled under us).
NEUTRAL = frozenset({"internal"})


def outage(error: SdbotError) -> bool:
    """Whether ``error`` counts towards marking the service down (see the module documentation)."""
    if error.code not in OUTAGE:
        return False
    return not (isinstance(error, BackendError) and error.provider_code in REQUEST_SPECIFIC)


State = Literal["closed", "open", "half_open"]
Verdict = Literal["run", "trial", "refuse"]


class Breaker:
    """``failures`` consecutive outage failures open the circuit for ``cooldown`` seconds (0 = never opens).
    ``clock`` is monotonic seconds; tests pass their own."""

    def __init__(self, failures: int, cooldown: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.failures = failures
        self.cooldown = cooldown
        self.clock = clock
        self.streak = 0  # consecutive outage failures while closed
        self.opened = 0  # how many times it opened (logs, tests, the soak harness)
        self._open_until: float | None = None  # set while open or half-open
        self._trial: asyncio.Event | None = None  # set when the running trial ends; None: no trial running

    # State ------------------------------------------------------------------------------------------

    @property
    def state(self) -> State:
        if self._open_until is None:
            return "closed"
        return "open" if self.clock() < self._open_until else "half_open"

    def retry_in(self) -> float | None:
        """Seconds until requests are taken again; None when they are taken now (closed or half-open)."""
        if self._open_until is None:
            return None
        left = self._open_until - self.clock()
        return left if left > 0 else None

    def error(self) -> SdbotError:
        """``backend_down`` with the whole seconds until the next try (at least 1)."""
        return SdbotError("backend_down", seconds=max(1, math.ceil(self.retry_in() or 0)))

    # Decisions --------------------------------------------------------------------------------------

    async def admit(self) -> Verdict:
        """Whether a job about to start may call the service: ``run``, ``trial`` (it is the half-open probe:
        its outcome must be passed to :meth:`record` with ``trial=True``, which ends the trial), or ``refuse``
        (fail it with :meth:`error`). While another trial runs, this waits for its outcome."""
        while True:
            state = self.state
            if state == "closed":
                return "run"
            if state == "open":
                return "refuse"
            if self._trial is None:
                self._trial = asyncio.Event()
                return "trial"
            await self._trial.wait()

    def record(self, error: SdbotError | None, *, trial: bool = False) -> bool:
        """Note how a job's generation ended: ``None`` for a success, else its error; ``trial`` when
        :meth:`admit` made it the trial. True when this outcome opened the circuit."""
        opened = self._note(error, trial=trial)
        if trial and self._trial is not None:
            self._trial.set()  # the jobs waiting on it decide again, with the new state
            self._trial = None
        return opened

    def _note(self, error: SdbotError | None, *, trial: bool) -> bool:
        # Neutral too: a job that failed before the service was asked (its picture could not be had: DrawError).
        if self.failures <= 0 or (error is not None and (error.code in NEUTRAL or isinstance(error, DrawError))):
            return False
        if error is None or not outage(error):  # the service answered: it is up
            self.streak = 0
            self._open_until = None
            return False
        if trial:  # the probe failed: straight back to open
            return self._open()
        if self.state != "closed":
            return False  # a job that started before the circuit opened; already counted as down
        self.streak += 1
        return self.streak >= self.failures and self._open()

    def _open(self) -> bool:
        self.streak = 0
        self._open_until = self.clock() + self.cooldown
        self.opened += 1
        return True
