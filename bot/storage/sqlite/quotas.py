"""Usage counters and admins' limits in SQLite (``users``, ``chats``, ``usage``)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

from bot.quotas.rules import RATE_WINDOW, USER_LIMITS, Limits, QuotaState, UserLimit
from bot.storage.sqlite.database import Database
from bot.storage.sqlite.jobs import CHAT_USED, LIMITS, PENDING, RECENT, USED, limit_params

_STATE = f"""
    SELECT lim.*, {PENDING} AS pending, {RECENT} AS recent, {USED} AS used, {CHAT_USED} AS chat_used
    FROM ({LIMITS}) AS lim
"""


class SQLiteQuotas:
    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock

    async def state(self, user_key: str, chat_key: str, limits: Limits, day: str, now: float) -> QuotaState:
        row = await self._db.fetchone(_STATE, limit_params(user_key, chat_key, limits, day, now))
        assert row is not None  # the LEFT JOINs always yield one row
        values = {field.name: row[field.name] for field in dataclasses.fields(QuotaState)}
        return QuotaState(
            **values | {name: bool(values[name]) for name in ("banned", "daily_override", "chat_override")}
        )

    async def rate_wait(self, user_key: str, rate: int, now: float) -> float:
        # When the rate-th newest request in the window leaves it.
        row = await self._db.fetchone(
            "SELECT created_at FROM jobs WHERE user_key = ? AND created_at > ? "
            "ORDER BY created_at DESC LIMIT 1 OFFSET ?",
            (user_key, now - RATE_WINDOW, max(rate - 1, 0)),
        )
        return 0.0 if row is None else max(0.0, row["created_at"] + RATE_WINDOW - now)

    async def set_user_limits(self, user_key: str, values: Mapping[UserLimit, int | None]) -> None:
        for limit in values:
            if limit not in USER_LIMITS:  # the column names below come from here
                raise ValueError(limit)
        update = ", ".join(f"{limit} = excluded.{limit}" for limit in values)
        await self._upsert_user(user_key, update, {str(limit): value for limit, value in values.items()})

    async def set_banned(self, user_key: str, banned: bool) -> None:
        await self._upsert_user(user_key, "banned = excluded.banned", {"banned": int(banned)})

    async def set_chat_limit(self, chat_key: str, value: int | None) -> None:
        platform, _, chat_id = chat_key.partition(":")
        now = self._clock()
        # A chat an admin configures before anyone drew there is taken to be a group: caps apply only there.
        await self._db.execute(
            "INSERT INTO chats (key, platform, chat_id, is_group, daily_images, created_at, updated_at) "
            "VALUES (?, ?, ?, 1, ?, ?, ?) "
            "ON CONFLICT (key) DO UPDATE SET daily_images = excluded.daily_images, updated_at = excluded.updated_at",
            (chat_key, platform, chat_id, value, now, now),
        )

    async def reset_usage(self, scope: Literal["user", "chat"], key: str, day: str) -> int:
        row = await self._db.fetchone(
            "DELETE FROM usage WHERE scope = ? AND key = ? AND day = ? RETURNING images", (scope, key, day)
        )
        return int(row["images"]) if row else 0

    async def _upsert_user(self, user_key: str, update: str, values: dict[str, Any]) -> None:
        platform, _, user_id = user_key.partition(":")
        columns = ", ".join(values)
        marks = ", ".join(f":{c}" for c in values)
        await self._db.execute(
            f"INSERT INTO users (key, platform, user_id, {columns}, created_at, updated_at) "
            f"VALUES (:key, :platform, :user_id, {marks}, :now, :now) "
            f"ON CONFLICT (key) DO UPDATE SET {update}, updated_at = excluded.updated_at",
            {"key": user_key, "platform": platform, "user_id": user_id, "now": self._clock(), **values},
        )
