"""Usage counters and limits, users and chats in PostgreSQL."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from typing import Any, Literal

from bot.chats.refs import ChatRef, UserRef
from bot.messages.i18n import Lang
from bot.quotas.rules import RATE_WINDOW, USER_LIMITS, Limits, QuotaState, UserLimit
from bot.storage.port import LANGUAGES
from bot.storage.postgres.database import PostgresDatabase
from bot.storage.postgres.jobs import CHAT_USED, LIMITS, PENDING, RECENT, USED
from bot.storage.sqlite.jobs import limit_params

_STATE = f"""
    SELECT lim.*, {PENDING} AS pending, {RECENT} AS recent, {USED} AS used, {CHAT_USED} AS chat_used
    FROM ({LIMITS}) AS lim
"""


class PostgresQuotas:
    def __init__(self, db: PostgresDatabase, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock

    async def state(self, user_key: str, chat_key: str, limits: Limits, day: str, now: float) -> QuotaState:
        row = await self._db.fetchone(_STATE, limit_params(user_key, chat_key, limits, day, now))
        assert row is not None  # the LEFT JOINs always yield one row
        values = {field.name: row[field.name] for field in dataclasses.fields(QuotaState)}
        flags = ("banned", "daily_override", "chat_override")
        return QuotaState(**{k: bool(v) if k in flags else int(v) for k, v in values.items()})  # type: ignore[arg-type]

    async def rate_wait(self, user_key: str, rate: int, now: float) -> float:
        row = await self._db.fetchone(
            "SELECT created_at FROM jobs WHERE user_key = $1 AND created_at > $2 "
            "ORDER BY created_at DESC LIMIT 1 OFFSET $3",
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
        await self._db.execute(
            "INSERT INTO chats (key, platform, chat_id, is_group, daily_images, created_at, updated_at) "
            "VALUES ($1, $2, $3, 1, $4, $5, $5) "
            "ON CONFLICT (key) DO UPDATE SET daily_images = excluded.daily_images, updated_at = excluded.updated_at",
            (chat_key, platform, chat_id, value, now),
        )

    async def reset_usage(self, scope: Literal["user", "chat"], key: str, day: str) -> int:
        row = await self._db.fetchone(
            "DELETE FROM usage WHERE scope = $1 AND key = $2 AND day = $3 RETURNING images", (scope, key, day)
        )
        return int(row["images"]) if row else 0

    async def _upsert_user(self, user_key: str, update: str, values: dict[str, Any]) -> None:
        platform, _, user_id = user_key.partition(":")
        columns = ", ".join(values)
        marks = ", ".join(f":{c}::bigint" for c in values)
        await self._db.execute(
            f"INSERT INTO users (key, platform, user_id, {columns}, created_at, updated_at) "
            f"VALUES (:key, :platform, :user_id, {marks}, :now, :now) "
            f"ON CONFLICT (key) DO UPDATE SET {update}, updated_at = excluded.updated_at",
            {"key": user_key, "platform": platform, "user_id": user_id, "now": self._clock(), **values},
        )


class PostgresPeople:
    def __init__(self, db: PostgresDatabase, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock

    async def touch_user(self, user: UserRef) -> None:
        await self._db.execute(
            "INSERT INTO users (key, platform, user_id, display_name, platform_language, created_at, updated_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (key) DO UPDATE SET "
            "display_name = coalesce(excluded.display_name, users.display_name), "
            "platform_language = coalesce(excluded.platform_language, users.platform_language), "
            "updated_at = excluded.updated_at",
            (user.key, user.platform, user.user_id, user.display_name, user.language_code, self._clock()),
        )

    async def touch_chat(self, chat: ChatRef) -> None:
        await self._db.execute(
            "INSERT INTO chats (key, platform, chat_id, is_group, title, created_at, updated_at) "
            "VALUES ($1, $2, $3, $4, $5, $6, $6) ON CONFLICT (key) DO UPDATE SET "
            "is_group = excluded.is_group, title = coalesce(excluded.title, chats.title), "
            "updated_at = excluded.updated_at",
            (chat.key, chat.platform, chat.chat_id, int(chat.is_group), chat.title, self._clock()),
        )

    async def set_language(self, user: UserRef, lang: Lang | None) -> None:
        await self.touch_user(user)
        await self._db.execute(
            "UPDATE users SET language = $1, updated_at = $2 WHERE key = $3", (lang, self._clock(), user.key)
        )
        # Every process keeps the choices in memory (bot.chats.directory): they all hear of it at once.
        await self._db.execute("SELECT pg_notify($1, $2)", (LANGUAGES, f"{user.key}\t{lang or ''}"))

    async def language_choices(self) -> dict[str, str]:
        rows = await self._db.fetchall("SELECT key, language FROM users WHERE language IS NOT NULL")
        return {row["key"]: row["language"] for row in rows}

    async def display_names(self, keys: list[str]) -> dict[str, str]:
        rows = await self._db.fetchall(
            "SELECT key, display_name FROM users WHERE key = ANY($1::text[]) AND display_name IS NOT NULL", (keys,)
        )
        return {row["key"]: row["display_name"] for row in rows}
