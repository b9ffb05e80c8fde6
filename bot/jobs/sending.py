"""The moment a job's pictures start to leave: marked as late as the adapter can tell, after its rate limits.

The mark says the pictures may be in the chat: a job that dies for the last time after it is told so
(``job_crashed_delivering``) rather than that it was interrupted, and with several processes the mark is where a
paused process finds itself fenced, right before it would send. So it should come when the upload's request is
about to go out, not when it starts waiting its turn behind a platform's flood limits, which can take seconds
under load. A sink that can tell (``marks_sending = True``) awaits :func:`sending` at that moment; for the
others the core marks the job just before it calls ``deliver``.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager

Mark = Callable[[], Awaitable[None]]

_mark: contextvars.ContextVar[Mark | None] = contextvars.ContextVar("sdbot_sending", default=None)


class Fenced(Exception):
    """The job is no longer this process's (its lease ran out, another process took it over): send nothing."""


async def sending() -> None:
    """Called by an adapter right before a delivery's upload request leaves; raises :class:`Fenced` when the
    job must not be delivered by this process. Does nothing outside a delivery, or the second time."""
    mark = _mark.get()
    if mark is not None:
        await mark()


@contextmanager
def marking(mark: Mark) -> Iterator[None]:
    """Within the block (a sink's ``deliver``), :func:`sending` calls ``mark`` once."""
    done = False

    async def once() -> None:
        nonlocal done
        if not done:
            done = True
            await mark()

    token = _mark.set(once)
    try:
        yield
    finally:
        _mark.reset(token)
