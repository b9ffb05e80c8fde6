"""Platform events kept in the database from the moment they arrive until they have been handled."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from bot.storage import HeldEvent, Storage

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
# Telegram keeps an unconfirmed update for 24 hours: it cannot redeliver anything older, and an older command
# is not worth answering either.
REMEMBER = 24 * 3600.0
_PRUNE_EVERY = 3600.0  # seconds between two deletions of forgotten events


class Inbox:
    """The policy (how long, how often) over the storage port's inbox."""

    def __init__(self, storage: Storage, clock: Callable[[], float] = time.time) -> None:
        self._storage = storage
        self._clock = clock
        self._pruned_at = 0.0
        self.worker: str | None = None  # several processes: this one's name, and how long a hold lasts
        self.lease = 0.0

    def share(self, worker: str, lease: float) -> None:
        """Several processes share the inbox: each holds the events it received while it renews them
        (:meth:`renew`, with its jobs' leases); a take-over takes only events nobody holds."""
        self.worker, self.lease = worker, lease

    async def receive(self, platform: str, event_id: int, payload: str) -> bool:
        """Keep the event until :meth:`done`. ``False`` when it is known already (a redelivery): skip it."""
        now = self._clock()
        return await self._storage.inbox.receive(platform, event_id, payload, now, **self._hold(now))

    async def release(self) -> None:
        """This process stops: the events it holds unhandled are free for another at once."""
        if self.worker is not None:
            await self._storage.inbox.renew(self.worker, 0.0)

    async def renew(self) -> None:
        if self.worker is not None:
            await self._storage.inbox.renew(self.worker, self._clock() + self.lease)

    def _hold(self, now: float) -> dict[str, Any]:
        return {} if self.worker is None else {"worker": self.worker, "until": now + self.lease}

    async def done(self, platform: str, event_id: int) -> None:
        """The event was handled: forget what it said, remember that it came."""
        now = self._clock()
        await self._storage.inbox.done(platform, event_id, now)
        if now - self._pruned_at > _PRUNE_EVERY:
            self._pruned_at = now
            await self._storage.inbox.forget_handled_before(now - REMEMBER)

    async def take_over(self, platform: str) -> list[HeldEvent]:
        """The events a previous process received but did not finish handling (and no live process holds),
        oldest first, each counted as one more attempt. Those handed back :data:`MAX_ATTEMPTS` times or older
        than :data:`REMEMBER` are dropped."""
        now = self._clock()
        unhandled, held = await self._storage.inbox.take_over(
            platform, now=now, since=now - REMEMBER, max_attempts=MAX_ATTEMPTS, **self._hold(now)
        )
        if unhandled:
            log.warning("%s: %s unhandled event(s) dropped, too old or failed too often: %s", platform,
                        len(unhandled), unhandled)  # fmt: skip
        if held:
            log.info("%s: %s event(s) received before the last stop are handled again", platform, len(held))
        return held

    async def unhandled(self, platform: str) -> int:
        """How many events of ``platform`` are received and not yet handled."""
        return await self._storage.inbox.unhandled(platform)
