"""The people the bot has met: names and platform languages as last seen, and each user's /lang choice."""

from __future__ import annotations

import asyncio
from typing import TypeVar

from bot.chats.refs import ChatRef, UserRef
from bot.messages.i18n import Lang, normalize_language, resolve_language
from bot.storage import Storage
from bot.storage.port import LANGUAGES

T = TypeVar("T")
_SEEN_MAX = 50_000  # remembered users/chats per process; past this the memo starts over


class Directory:
    def __init__(self, storage: Storage, default_lang: Lang) -> None:
        self._storage = storage
        self._default_lang = default_lang
        self._seen_users: dict[str, tuple[str | None, str | None]] = {}
        self._seen_chats: dict[str, tuple[bool, str | None]] = {}
        self._choices: dict[str, Lang] = {}
        self._reload: asyncio.Task[None] | None = None

    async def load(self) -> None:
        """Read every /lang choice; with a shared queue, keep up with those made through other processes."""
        if self._storage.queue is not None:
            await self._storage.queue.listen(LANGUAGES, self._heard)
        await self._read_choices()

    async def _read_choices(self) -> None:
        choices = await self._storage.people.language_choices()
        self._choices = {key: lang for key, code in choices.items() if (lang := normalize_language(code))}

    def _heard(self, payload: str) -> None:
        if not payload:  # notifications may have been missed (a reconnect): read them all again
            self._reload = asyncio.get_running_loop().create_task(self._read_choices())
            return
        key, _, code = payload.partition("\t")
        lang = normalize_language(code) if code else None
        if lang is None:
            self._choices.pop(key, None)
        else:
            self._choices[key] = lang

    def language_for(self, user: UserRef) -> Lang:
        """The user's /lang choice, else their platform's language, else ``SDBOT_LANG``."""
        return resolve_language(self._choices.get(user.key), user.language_code, self._default_lang)

    async def touch(self, user: UserRef, chat: ChatRef | None = None) -> None:
        """Record the user (and a group chat) as seen now, if anything about them changed."""
        seen = (user.display_name, user.language_code)
        if self._seen_users.get(user.key) != seen:
            await self._storage.people.touch_user(user)
            _remember(self._seen_users, user.key, seen)
        if chat is not None:
            await self.touch_chat(chat)

    async def touch_chat(self, chat: ChatRef) -> None:
        seen = (chat.is_group, chat.title)
        if self._seen_chats.get(chat.key) != seen:
            await self._storage.people.touch_chat(chat)
            _remember(self._seen_chats, chat.key, seen)

    async def set_language(self, user: UserRef, lang: Lang | None) -> None:
        """Remember the user's /lang choice (``None``: follow the platform's language again)."""
        await self._storage.people.set_language(user, lang)
        if lang is None:
            self._choices.pop(user.key, None)
        else:
            self._choices[user.key] = lang

    async def display_names(self, keys: list[str]) -> dict[str, str]:
        return await self._storage.people.display_names(keys)


def _remember(memo: dict[str, T], key: str, value: T) -> None:
    if len(memo) >= _SEEN_MAX:
        memo.clear()
    memo[key] = value
