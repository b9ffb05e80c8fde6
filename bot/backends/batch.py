"""Services that draw one picture per call (Bedrock, Stability v2beta, ComfyUI's pool members...): ``--n`` calls at
once, with consecutive seeds, the pictures that arrived kept when some fail."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from bot.backends.base import GeneratedImage, ProgressCallback
from bot.errors import BackendError

log = logging.getLogger(__name__)


async def one_per_call(
    n: int,
    seed: int,
    call: Callable[[int], Awaitable[list[GeneratedImage]]],
    *,
    provider: str,
    progress: ProgressCallback | None = None,
) -> list[GeneratedImage]:
    """``call(seed + i)`` for each of the ``n`` pictures, at once. The pictures that did arrive were paid for, so
    they are delivered when others fail (the core refunds the missing ones); when none arrived, the first
    failure is raised. An exception that is not a :class:`BackendError` is a bug and surfaces as one."""
    done = 0

    async def one(i: int) -> list[GeneratedImage]:
        nonlocal done
        images = await call(seed + i)
        done += 1
        if progress is not None:
            await progress(done / n)
        return images

    results = await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True)
    images = [image for result in results if isinstance(result, list) for image in result]
    failures: list[BackendError] = []
    for result in results:
        if isinstance(result, BackendError):
            failures.append(result)
        elif isinstance(result, BaseException):
            raise result
    if failures and not images:
        raise failures[0]
    if failures:
        log.warning("%s: %d of %d images failed: %s", provider, len(failures), n, failures[0].code)
    return images
