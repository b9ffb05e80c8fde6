"""Users and chats in SQLite (``users``, ``chats``)."""

from __future__ import annotations

import time
from collections.abc import Callable

from bot.chats.refs import ChatRef, UserRef
from bot.messages.i18n import Lang
from bot.storage.sqlite.database import Database

_TOUCH_USER = """
    INSERT INTO users (key, platform, user_id, display_name, platform_language, created_at, updated_at)
    VALUES (:key, :platform, :user_id, :name, :lang, :now, :now)
    ON CONFLICT (key) DO UPDATE SET
        display_name = coalesce(excluded.display_name, display_name),
        platform_language = coalesce(excluded.platform_language, platform_language),
        updated_at = excluded.updated_at
"""
_TOUCH_CHAT = """
    INSERT INTO chats (key, platform, chat_id, is_group, title, created_at, updated_at)
    VALUES (:key, :platform, :chat_id, :group, :title, :now, :now)
    ON CONFLICT (key) DO UPDATE SET
        is_group = excluded.is_group,
        title = coalesce(excluded.title, title),
        updated_at = excluded.updated_at
"""


class SQLitePeople:
    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock

    async def touch_user(self, user: UserRef) -> None:
        await self._db.execute(
            _TOUCH_USER,
            {
                "key": user.key,
                "platform": user.platform,
                "user_id": user.user_id,
                "name": user.display_name,
                "lang": user.language_code,
                "now": self._clock(),
            },
        )

    async def touch_chat(self, chat: ChatRef) -> None:
        await self._db.execute(
            _TOUCH_CHAT,
            {
                "key": chat.key,
                "platform": chat.platform,
                "chat_id": chat.chat_id,
                "group": int(chat.is_group),
                "title": chat.title,
                "now": self._clock(),
            },
        )

    async def set_language(self, user: UserRef, lang: Lang | None) -> None:
        await self.touch_user(user)
        await self._db.execute(
            "UPDATE users SET language = ?, updated_at = ? WHERE key = ?", (lang, self._clock(), user.key)
        )

    async def language_choices(self) -> dict[str, str]:
        rows = await self._db.fetchall("SELECT key, language FROM users WHERE language IS NOT NULL")
        return {row["key"]: row["language"] for row in rows}

    async def display_names(self, keys: list[str]) -> dict[str, str]:
        if not keys:
            return {}
        marks = ",".join("?" * len(keys))
        rows = await self._db.fetchall(
            f"SELECT key, display_name FROM users WHERE key IN ({marks}) AND display_name IS NOT NULL", keys
        )
        return {row["key"]: row["display_name"] for row in rows}
