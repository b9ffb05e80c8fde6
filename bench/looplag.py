"""Event-loop lag: a ticker that asks to run every ``interval`` seconds and records how late it runs.

    async with LoopLag() as lag:
        ...                      # the benchmark
    print(lag.summary())         # p50 / p99 / max lateness in milliseconds

A callback scheduled with ``call_later`` runs as soon as the loop gets to it after its time; anything that
holds the loop (Pillow, SQLite, a long parse on the loop thread) delays it by as long as it holds it. The
ticker is a single timer callback, so measuring costs the loop a few microseconds per tick.

Lag has two causes, told apart by ``callbacks=True``, which also times every callback the loop runs (about a
microsecond each): one callback holding the loop (blocking: what must not happen) or very many short ones
ready at once (saturation: a loop simply busy, as under a burst of a hundred simultaneous requests). The
summary's ``longest_ms`` is the longest single callback.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from types import TracebackType

GOAL_P99_MS = 20.0  # issue 7: p99 loop lag at most 20 ms while the benchmarks run


@dataclass(frozen=True, slots=True)
class LagSummary:
    ticks: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    longest_ms: float | None = None  # the longest single callback, when timed

    @property
    def met(self) -> bool:
        return self.p99_ms <= GOAL_P99_MS

    def __str__(self) -> str:
        ms = f"p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms, max {self.max_ms:.1f} ms"
        longest = "" if self.longest_ms is None else f"; longest callback {self.longest_ms:.1f} ms"
        return f"loop lag {ms} ({self.ticks} ticks){longest}"


def percentile(values: list[float], p: float) -> float:
    """The ``p``-th percentile (0-100) by nearest rank; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))
    return ordered[rank]


class LoopLag:
    """Measures the running loop's lag while the ``async with`` block runs (see the module docstring)."""

    def __init__(self, interval: float = 0.005, *, callbacks: bool = False) -> None:
        self.interval = interval
        self.callbacks = callbacks
        self.lags: list[float] = []  # seconds late, one per tick
        self.longest = 0.0  # seconds, the longest callback (with callbacks=True)
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0

    async def __aenter__(self) -> LoopLag:
        self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        if self.callbacks:
            _timing.add(self)
            _install()
        self._schedule()

    def stop(self) -> None:
        _timing.discard(self)
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def summary(self) -> LagSummary:
        ms = [lag * 1000 for lag in self.lags]
        longest = self.longest * 1000 if self.callbacks else None
        return LagSummary(len(ms), percentile(ms, 50), percentile(ms, 99), max(ms, default=0.0), longest)

    def _schedule(self) -> None:
        self._due = time.perf_counter() + self.interval
        self._handle = asyncio.get_running_loop().call_later(self.interval, self._tick)

    def _tick(self) -> None:
        self.lags.append(max(0.0, time.perf_counter() - self._due))
        self._schedule()


_timing: set[LoopLag] = set()  # tickers timing callbacks now
_original_run = asyncio.Handle._run


def _install() -> None:
    if asyncio.Handle._run is not _original_run:
        return

    def timed_run(handle: asyncio.Handle) -> None:
        if not _timing:
            _original_run(handle)
            return
        began = time.perf_counter()
        try:
            _original_run(handle)
        finally:
            took = time.perf_counter() - began
            for lag in _timing:
                lag.longest = max(lag.longest, took)

    asyncio.Handle._run = timed_run  # type: ignore[method-assign]


async def idle_lag(seconds: float = 0.5, interval: float = 0.005) -> LagSummary:
    """The lag of this loop with nothing else to do: the machine's own jitter, for comparison."""
    async with LoopLag(interval) as lag:
        await asyncio.sleep(seconds)
    return lag.summary()
