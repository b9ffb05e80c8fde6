"""The inbox of platform events in SQLite (``inbox``, migration 3)."""

from __future__ import annotations

from bot.storage.port import HeldEvent
from bot.storage.sqlite.database import Database


class SQLiteInbox:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def receive(self, platform: str, event_id: int, payload: str, now: float) -> bool:
        row = await self._db.fetchone(
            "INSERT INTO inbox (platform, event_id, payload, received_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT DO NOTHING RETURNING event_id",
            (platform, event_id, payload, now),
        )
        return row is not None

    async def done(self, platform: str, event_id: int, now: float) -> None:
        await self._db.execute(
            "UPDATE inbox SET handled_at = ?, payload = '' WHERE platform = ? AND event_id = ?",
            (now, platform, event_id),
        )

    async def forget_handled_before(self, when: float) -> None:
        await self._db.execute("DELETE FROM inbox WHERE handled_at < ?", (when,))

    async def take_over(self, platform: str, *, since: float, max_attempts: int) -> tuple[list[int], list[HeldEvent]]:
        async with self._db.transaction():
            dropped = await self._db.fetchall(
                "DELETE FROM inbox WHERE platform = ? AND (received_at < ? OR (handled_at IS NULL AND attempts >= ?)) "
                "RETURNING event_id, handled_at",
                (platform, since, max_attempts),
            )
            rows = await self._db.fetchall(
                "UPDATE inbox SET attempts = attempts + 1 WHERE platform = ? AND handled_at IS NULL "
                "RETURNING event_id, payload, received_at",
                (platform,),
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
