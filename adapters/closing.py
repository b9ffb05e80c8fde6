"""Results that reach an adapter while it stops, shared by every platform's sink."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import NoReturn, TypeVar

from bot.core import DeliveryGone
from bot.jobs.job import Job

log = logging.getLogger(__name__)
T = TypeVar("T")


async def park(job: Job) -> NoReturn:
    # Returning would mark the job done (or failed), raising would fail and refund it. Waiting until
    # Core.close() cancels us leaves it unfinished, and the next start finishes it.
    log.info("job %s: result held back by shutdown; it is sent at the next start", job.id)
    await asyncio.Event().wait()
    raise AssertionError("unreachable: nothing sets this event")


class ShutdownGate:
    """Counts results under way so :meth:`close` can give them a grace period, and parks the rest."""

    def __init__(self) -> None:
        self.closing = False
        self._sending = 0
        self._idle = asyncio.Event()
        self._idle.set()

    async def send(self, job: Job, send: Callable[[], Awaitable[T]]) -> T:
        """Run ``send()``; during shutdown, park instead, or when the closing connection breaks it."""
        if self.closing:
            await park(job)
        self._sending += 1
        self._idle.clear()
        try:
            return await send()
        except DeliveryGone:
            raise
        except Exception:
            if not self.closing:
                raise
            # The connection was closed under this result: not the job's fault, the next start sends it.
        finally:
            self._sending -= 1
            if not self._sending:
                self._idle.set()
        await park(job)

    async def close(self, grace: float) -> None:
        """Stop sending: results under way get ``grace`` seconds to finish, later ones are parked."""
        self.closing = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), grace)
