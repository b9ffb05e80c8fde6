"""Who asks and where: :class:`UserRef` and :class:`ChatRef`, and their rows in the ``users``/``chats`` tables.

Adapters describe each person and conversation with these two small values; the core keys everything by
``"<platform>:<id>"`` (the same form ``SDBOT_ADMINS`` uses).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from bot import params
from bot.errors import SdbotError
from bot.i18n import Lang, normalize_language
from bot.sanitize import clean
from bot.store import Statement, Store

PLATFORMS: tuple[str, ...] = ("telegram", "discord")
_SEEN_MAX = 50_000  # remembered users/chats per process; past this the memo starts over

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


@dataclass(frozen=True, slots=True)
class UserRef:
    """A platform user as an adapter sees them in an update.

    ``language_code`` is what the platform reports (Telegram ``User.language_code``, Discord
    ``interaction.locale``); it decides the language of replies unless the user chose one with ``/lang``.
    """

    platform: str
    user_id: str
    language_code: str | None = None
    display_name: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "user_id", str(self.user_id))
        # Names are stored and shown (/admin stats): no control characters, overrides or lone surrogates,
        # which SQLite could not even encode.
        if self.display_name is not None:
            object.__setattr__(self, "display_name", clean(self.display_name))

    @property
    def key(self) -> str:
        return f"{self.platform}:{self.user_id}"


@dataclass(frozen=True, slots=True)
class ChatRef:
    """Where a request was made, for the per-chat image cap.

    ``chat_id``: Telegram's chat id; on Discord the guild (server) id, so the cap is per server, or the DM
    channel id with ``is_group=False``. Private chats have no cap. Where to *deliver* is the adapter's
    ``route``, not this.
    """

    platform: str
    chat_id: str
    is_group: bool
    title: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "chat_id", str(self.chat_id))
        if self.title is not None:
            object.__setattr__(self, "title", clean(self.title))

    @property
    def key(self) -> str:
        return f"{self.platform}:{self.chat_id}"


def parse_key(text: str, default_platform: str | None = None) -> str:
    """``telegram:123`` (or ``123`` on ``default_platform``) -> ``"telegram:123"``; chat ids may be negative.

    Raises ``SdbotError("bad_user")`` for anything else, so admin commands can say what they expect.
    """
    platform, sep, ident = text.strip().rpartition(":")
    platform = platform.lower() if sep else (default_platform or "")
    number = ident.removeprefix("-")
    if platform not in PLATFORMS or not params.is_whole_number(number):
        raise SdbotError("bad_user", value=text.strip() or "∅")
    return f"{platform}:{'-' if number != ident else ''}{int(number)}"  # full-width digits: the same id


class Directory:
    """The ``users`` and ``chats`` rows: names and languages as last seen, and each user's /lang choice.

    Language choices are cached in memory (loaded at start, changed only through :meth:`set_language`), so
    :meth:`language` answers without touching the database.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._seen_users: dict[str, tuple[str | None, str | None]] = {}
        self._seen_chats: dict[str, tuple[bool, str | None]] = {}
        self._choices: dict[str, Lang] = {}

    async def load(self) -> None:
        rows = await self._store.fetchall("SELECT key, language FROM users WHERE language IS NOT NULL")
        self._choices = {row["key"]: row["language"] for row in rows if normalize_language(row["language"])}

    def choice(self, user_key: str) -> Lang | None:
        """The language the user chose with /lang, if any."""
        return self._choices.get(user_key)

    async def touch_user(self, user: UserRef) -> None:
        """Record the user's name and platform language, writing only when they changed since last seen."""
        await self._write(self.changes(user))
        self.seen(user)

    async def touch_chat(self, chat: ChatRef) -> None:
        await self._write(self.changes(chat=chat))
        self.seen(chat=chat)

    def changes(self, user: UserRef | None = None, chat: ChatRef | None = None) -> list[Statement]:
        """The writes that record ``user`` and ``chat`` as seen now, if they changed since :meth:`seen` was last
        told of them (a caller running these with a statement of its own, in one hop, then calls it)."""
        out: list[Statement] = []
        now = time.time()
        if user is not None and self._seen_users.get(user.key) != (user.display_name, user.language_code):
            params = {
                "key": user.key,
                "platform": user.platform,
                "user_id": user.user_id,
                "name": user.display_name,
                "lang": user.language_code,
                "now": now,
            }
            out.append(Statement(_TOUCH_USER, params))
        if chat is not None and self._seen_chats.get(chat.key) != (chat.is_group, chat.title):
            params = {
                "key": chat.key,
                "platform": chat.platform,
                "chat_id": chat.chat_id,
                "group": int(chat.is_group),
                "title": chat.title,
                "now": now,
            }
            out.append(Statement(_TOUCH_CHAT, params))
        return out

    def seen(self, user: UserRef | None = None, chat: ChatRef | None = None) -> None:
        """``user`` and ``chat`` are recorded as they are now (their :meth:`changes` were written)."""
        if user is not None:
            if len(self._seen_users) >= _SEEN_MAX:
                self._seen_users.clear()
            self._seen_users[user.key] = (user.display_name, user.language_code)
        if chat is not None:
            if len(self._seen_chats) >= _SEEN_MAX:
                self._seen_chats.clear()
            self._seen_chats[chat.key] = (chat.is_group, chat.title)

    async def _write(self, statements: list[Statement]) -> None:
        for statement in statements:
            await self._store.execute(statement.sql, statement.params)

    async def set_language(self, user: UserRef, lang: Lang | None) -> None:
        """Remember the user's /lang choice (``None``: follow the platform's language again)."""
        await self.touch_user(user)
        await self._store.execute(
            "UPDATE users SET language = ?, updated_at = ? WHERE key = ?", (lang, time.time(), user.key)
        )
        if lang is None:
            self._choices.pop(user.key, None)
        else:
            self._choices[user.key] = lang

    async def display_names(self, keys: list[str]) -> dict[str, str]:
        if not keys:
            return {}
        marks = ",".join("?" * len(keys))
        rows = await self._store.fetchall(
            f"SELECT key, display_name FROM users WHERE key IN ({marks}) AND display_name IS NOT NULL", keys
        )
        return {row["key"]: row["display_name"] for row in rows}
