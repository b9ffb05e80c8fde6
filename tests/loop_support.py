"""Counting the passes of the running event loop, for tests of what happens per pass."""

from __future__ import annotations

import asyncio
from types import TracebackType


class PassCounter:
    """``with PassCounter() as passes``: ``passes.now`` is the number of the loop's current pass, counted by a
    callback that runs once in every pass."""

    def __init__(self) -> None:
        self.now = 0
        self._handle: asyncio.Handle | None = None

    def __enter__(self) -> PassCounter:
        self._handle = asyncio.get_running_loop().call_soon(self._count)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._handle is not None:
            self._handle.cancel()

    def _count(self) -> None:
        self.now += 1
        self._handle = asyncio.get_running_loop().call_soon(self._count)
