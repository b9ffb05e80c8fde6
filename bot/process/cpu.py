"""CPU work off the event loop, on one thread: decoding base64, checking and drawing images, parsing big JSON.

``asyncio.to_thread`` would run such work on the default executor, up to ``cpu_count + 4`` threads at once.
For work that holds the GIL (base64 decoding, Pillow's chunk walk, ``json.loads``) more threads add no speed,
only contention: every other thread, the event loop's and the SQLite connection's, then waits a whole switch
interval (5 ms) for each turn at the GIL, so a job's few statements take tens of milliseconds and the loop
lags. Measured with ``python -m bench.pipeline`` (120 jobs at once): with six decoding threads each SQLite
statement waited 30 ms on average and the loop's p99 lag was 40-85 ms; with this one thread, which also
offers the GIL about every millisecond while decoding (:func:`bot.backends.http.decode_b64`), statements take
well under a millisecond and the p99 lag is about 5 ms, at the same throughput.

So every such call goes through :func:`run`, which queues it for the one ``sdbot-cpu`` thread.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

WORKERS = 1
_executor: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="sdbot-cpu")
    return _executor


async def run(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(*args, **kwargs)`` on the CPU thread (with the caller's context variables), awaited."""
    call = functools.partial(contextvars.copy_context().run, fn, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_pool(), call)
