"""Where in a group /draw may be used: per chat (a Discord server), the channels its admins allowed.

A chat with no allowed channel lets every channel draw, so nothing changes until an admin picks some.
:meth:`Channels.allowed` is asked
on every /draw in a server, so answers are remembered: this object's own changes replace them at once, and
they are read again after :data:`CACHE_SECONDS` in case another process changed them.
"""

from __future__ import annotations

import time

from bot.storage import Storage

CACHE_SECONDS = 30.0
_CACHE_MAX = 10_000  # chats remembered; past this the memo starts over


class Channels:
    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._known: dict[str, tuple[float, tuple[str, ...]]] = {}  # chat -> (read at, allowed channels)

    async def allowed(self, chat_key: str) -> list[str]:
        """The chat's allowed channel ids in the order they were allowed; empty means every channel."""
        known = self._known.get(chat_key)
        now = time.monotonic()
        if known is not None and now - known[0] < CACHE_SECONDS:
            return list(known[1])
        allowed = await self._storage.channels.allowed(chat_key)
        if len(self._known) >= _CACHE_MAX:
            self._known.clear()
        self._known[chat_key] = (now, tuple(allowed))
        return allowed

    async def permits(self, chat_key: str, channel_ids: set[str]) -> bool:
        """Whether a request in any of ``channel_ids`` (a thread and its parent channel, say) may be served."""
        allowed = await self.allowed(chat_key)
        return not allowed or bool(channel_ids & set(allowed))

    async def allow(self, chat_key: str, channel_id: str) -> list[str]:
        await self._storage.channels.allow(chat_key, channel_id)
        self._known.pop(chat_key, None)
        return await self.allowed(chat_key)

    async def remove(self, chat_key: str, channel_id: str) -> list[str]:
        await self._storage.channels.remove(chat_key, channel_id)
        self._known.pop(chat_key, None)
        return await self.allowed(chat_key)

    async def clear(self, chat_key: str) -> None:
        await self._storage.channels.clear(chat_key)
        self._known.pop(chat_key, None)
