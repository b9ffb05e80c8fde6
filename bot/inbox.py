"""Platform events kept in SQLite from the moment they arrive until they have been handled.

A platform such as Telegram forgets an update once the bot confirms it, and a bot confirms updates as it
receives them, before its handlers have run. A process killed in between would lose those commands: the user
typed ``/draw`` and nothing ever answers. So an adapter :meth:`Inbox.receive` s each event before it is
confirmed and marks it :meth:`Inbox.done` once its handler returned; at the next start :meth:`Inbox.take_over`
hands back whatever a dead process left unhandled, to be handled again.

:meth:`receive` refuses an event it holds already: the platform redelivers what was never confirmed, and a
handled event is remembered (without its text) for :data:`REMEMBER` seconds for that reason. What a crash can
still make run twice, an event handled but not yet marked done, is made harmless by the core: ``/draw`` is
admitted once per event (the job's ``origin``, see :mod:`bot.quotas`); a repeated ``/quota`` is answered twice.
An event is handed back at most :data:`MAX_ATTEMPTS` times, then dropped (logged), so an event that crashes
the process cannot do so forever; one older than :data:`REMEMBER` is dropped as the platform itself would.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from bot.store import Store

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 3
# Telegram keeps an unconfirmed update for 24 hours: it cannot redeliver anything older, and an older command
# is not worth answering either.
REMEMBER = 24 * 3600.0
_PRUNE_EVERY = 3600.0  # seconds between two deletions of forgotten events


@dataclass(frozen=True, slots=True)
class HeldEvent:
    event_id: int
    payload: str  # JSON, as given to receive()
    received_at: float


class Inbox:
    """The ``inbox`` table on the shared :class:`Store`."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock
        self._pruned_at = 0.0

    async def receive(self, platform: str, event_id: int, payload: str) -> bool:
        """Keep the event until :meth:`done`. ``False`` when it is known already (a redelivery): skip it."""
        row = await self._store.fetchone(
            "INSERT INTO inbox (platform, event_id, payload, received_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT DO NOTHING RETURNING event_id",
            (platform, event_id, payload, self._clock()),
        )
        return row is not None

    async def done(self, platform: str, event_id: int) -> None:
        """The event was handled: forget what it said, remember that it came. Lazy (see
        :meth:`bot.store.Store.fetchall`): a mark lost to a crash only makes the core see a repeat."""
        now = self._clock()
        await self._store.execute(
            "UPDATE inbox SET handled_at = ?, payload = '' WHERE platform = ? AND event_id = ?",
            (now, platform, event_id),
            lazy=True,
        )
        if now - self._pruned_at > _PRUNE_EVERY:
            self._pruned_at = now
            await self._store.execute("DELETE FROM inbox WHERE handled_at < ?", (now - REMEMBER,), lazy=True)

    async def take_over(self, platform: str) -> list[HeldEvent]:
        """At start: the events a previous process received but did not finish handling, oldest first, each
        counted as one more attempt. Those handed back :data:`MAX_ATTEMPTS` times or older than
        :data:`REMEMBER` are dropped."""
        cutoff = self._clock() - REMEMBER
        dropped = await self._store.fetchall(
            "DELETE FROM inbox WHERE platform = ? AND (received_at < ? OR (handled_at IS NULL AND attempts >= ?)) "
            "RETURNING event_id, handled_at",
            (platform, cutoff, MAX_ATTEMPTS),
        )
        unhandled = sorted(r["event_id"] for r in dropped if r["handled_at"] is None)
        if unhandled:
            log.warning("%s: %s unhandled event(s) dropped, too old or failed too often: %s", platform,
                        len(unhandled), unhandled)  # fmt: skip
        rows = await self._store.fetchall(
            "UPDATE inbox SET attempts = attempts + 1 WHERE platform = ? AND handled_at IS NULL "
            "RETURNING event_id, payload, received_at",
            (platform,),
        )
        held = sorted(
            (HeldEvent(r["event_id"], r["payload"], r["received_at"]) for r in rows), key=lambda e: e.event_id
        )
        if held:
            log.info("%s: %s event(s) received before the last stop are handled again", platform, len(held))
        return held

    async def unhandled(self, platform: str) -> int:
        """How many events of ``platform`` are received and not yet handled."""
        row = await self._store.fetchone(
            "SELECT count(*) AS n FROM inbox WHERE platform = ? AND handled_at IS NULL", (platform,)
        )
        return int(row["n"]) if row else 0
