"""A sink's one throttle for progress: updates marked per item, shown by one task per lane with their latest
state, at most one per ``interval`` in a lane and ``overall`` a second in all (:class:`aiolimiter.AsyncLimiter`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from aiolimiter import AsyncLimiter

log = logging.getLogger(__name__)

Lane = TypeVar("Lane", bound=Hashable)
_MAX_PACES = 10_000  # lanes remembered; past this those whose pause is over are forgotten


class Lanes(Generic[Lane]):
    """``due(item)``: whether it has something to show; ``apply(item)``: show it (exceptions are logged)."""

    def __init__(
        self,
        due: Callable[[int], bool],
        apply: Callable[[int], Awaitable[object]],
        interval: float,
        *,
        overall: float | None = None,
    ) -> None:
        self._due, self._apply = due, apply
        self._interval = interval
        self._overall = AsyncLimiter(overall, 1.0) if overall else None
        self._marked: dict[Lane, dict[int, None]] = {}  # lane -> items to show, oldest first
        self._paces: dict[Lane, AsyncLimiter] = {}
        self._tasks: dict[Lane, asyncio.Task[None]] = {}
        self._lane_of: dict[int, Lane] = {}  # marked item -> its lane
        self._applying: dict[int, asyncio.Event] = {}  # item -> set once it is shown (being shown now)

    def mark(self, lane: Lane, item: int) -> None:
        self._marked.setdefault(lane, {})[item] = None
        self._lane_of[item] = lane
        if lane not in self._tasks:
            self._tasks[lane] = asyncio.get_running_loop().create_task(self._drain(lane), name=f"lane-{lane}")

    async def spend(self, lane: Lane) -> None:
        """Count a request made outside the lane (a new message) against its pace, without waiting."""
        pace = self._pace(lane)
        if pace is not None and pace.has_capacity():
            await pace.acquire()

    async def settle(self, item: int) -> None:
        """Forget what is marked for ``item`` and wait for it to be shown if it is being shown now."""
        lane = self._lane_of.pop(item, None)
        if lane is not None:
            self._marked.get(lane, {}).pop(item, None)
        shown = self._applying.get(item)
        if shown is not None:
            await shown.wait()

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._marked.clear()
        self._lane_of.clear()

    def _pace(self, lane: Lane) -> AsyncLimiter | None:
        if self._interval <= 0:
            return None
        pace = self._paces.get(lane)
        if pace is None:
            if len(self._paces) > _MAX_PACES:
                self._paces = {key: p for key, p in self._paces.items() if not p.has_capacity()}
            pace = self._paces[lane] = AsyncLimiter(1, self._interval)
        return pace

    async def _drain(self, lane: Lane) -> None:
        try:
            while marked := self._marked.get(lane):
                item = next(iter(marked))
                if self._due(item):
                    if (pace := self._pace(lane)) is not None:
                        await pace.acquire()
                    if self._overall is not None:
                        await self._overall.acquire()
                if marked.pop(item, False) is False:  # settled while waiting: not to be shown any more
                    continue
                self._lane_of.pop(item, None)
                shown = self._applying[item] = asyncio.Event()
                try:
                    await self._apply(item)
                except Exception as exc:  # progress is cosmetic: never let it take the lane down
                    log.warning("progress of %s not shown: %s", item, type(exc).__name__)
                finally:
                    del self._applying[item]
                    shown.set()
        finally:
            self._tasks.pop(lane, None)
            if not self._marked.get(lane):
                self._marked.pop(lane, None)
