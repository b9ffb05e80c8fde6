"""Records whose SQL both engines run as written (``?`` placeholders, which the PostgreSQL engine numbers):
the allowed channels and the inbox of platform events."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from bot.storage.port import HeldEvent


class Statements(Protocol):
    """What records need of an engine's connection: statements with ``?`` parameters, and transactions."""

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> Sequence[Any]: ...
    async def fetchone(self, sql: str, params: Sequence[Any] = ()) -> Any: ...
    async def execute(self, sql: str, params: Sequence[Any] = ()) -> None: ...
    def transaction(self) -> AbstractAsyncContextManager[None]: ...


class PortableChannels:
    def __init__(self, db: Statements, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock

    async def allowed(self, chat_key: str) -> list[str]:
        rows = await self._db.fetchall(
            "SELECT channel_id FROM allowed_channels WHERE chat_key = ? ORDER BY created_at, channel_id",
            (chat_key,),
        )
        return [row["channel_id"] for row in rows]

    async def allow(self, chat_key: str, channel_id: str) -> None:
        await self._db.execute(
            "INSERT INTO allowed_channels (chat_key, channel_id, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            (chat_key, channel_id, self._clock()),
        )

    async def remove(self, chat_key: str, channel_id: str) -> None:
        await self._db.execute(
            "DELETE FROM allowed_channels WHERE chat_key = ? AND channel_id = ?", (chat_key, channel_id)
        )

    async def clear(self, chat_key: str) -> None:
        await self._db.execute("DELETE FROM allowed_channels WHERE chat_key = ?", (chat_key,))


class PortableInbox:
    def __init__(self, db: Statements) -> None:
        self._db = db

    async def receive(
        self, platform: str, event_id: int, payload: str, now: float, *, worker: str | None = None,
        until: float | None = None,
    ) -> bool:  # fmt: skip
        row = await self._db.fetchone(
            "INSERT INTO inbox (platform, event_id, payload, received_at, worker, held_until) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING event_id",
            (platform, event_id, payload, now, worker, until),
        )
        return row is not None

    async def renew(self, worker: str, until: float) -> None:
        await self._db.execute(
            "UPDATE inbox SET held_until = ? WHERE worker = ? AND handled_at IS NULL", (until, worker)
        )

    async def done(self, platform: str, event_id: int, now: float) -> None:
        await self._db.execute(
            "UPDATE inbox SET handled_at = ?, payload = '' WHERE platform = ? AND event_id = ?",
            (now, platform, event_id),
        )

    async def forget_handled_before(self, when: float) -> None:
        await self._db.execute("DELETE FROM inbox WHERE handled_at < ?", (when,))

    async def take_over(
        self, platform: str, *, now: float, since: float, max_attempts: int, worker: str | None = None,
        until: float | None = None,
    ) -> tuple[list[int], list[HeldEvent]]:  # fmt: skip
        async with self._db.transaction():
            dropped = await self._db.fetchall(
                "DELETE FROM inbox WHERE platform = ? AND (received_at < ? OR (handled_at IS NULL AND attempts >= ?)) "
                "RETURNING event_id, handled_at",
                (platform, since, max_attempts),
            )
            rows = await self._db.fetchall(
                "UPDATE inbox SET attempts = attempts + 1, worker = ?, held_until = ? WHERE platform = ? "
                "AND handled_at IS NULL AND (held_until IS NULL OR held_until < ?) "
                "RETURNING event_id, payload, received_at",
                (worker, until, platform, now),
            )
        unhandled = sorted(r["event_id"] for r in dropped if r["handled_at"] is None)
        held = sorted(
            (HeldEvent(r["event_id"], r["payload"], r["received_at"]) for r in rows), key=lambda e: e.event_id
        )
        return unhandled, held

    async def unhandled(self, platform: str) -> int:
        row = await self._db.fetchone(
            "SELECT count(*) AS n FROM inbox WHERE platform = ? AND handled_at IS NULL", (platform,)
        )
        return int(row["n"]) if row else 0
