"""Where in a group /draw may be used: per chat (a Discord server), the channels its admins allowed.

A chat with no allowed channel lets every channel draw, so nothing changes until an admin picks some.
Stored in ``allowed_channels`` (migration 2); each change is one statement. :meth:`Channels.allowed` is asked
on every /draw in a server, so answers are remembered: this object's own changes replace them at once, and
they are read again after :data:`CACHE_SECONDS` in case another process changed the file.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from bot.store import Store

CACHE_SECONDS = 30.0
_CACHE_MAX = 10_000  # chats remembered; past this the memo starts over


class Channels:
    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock
        self._known: dict[str, tuple[float, tuple[str, ...]]] = {}  # chat -> (read at, allowed channels)

    async def allowed(self, chat_key: str) -> list[str]:
        """The chat's allowed channel ids in the order they were allowed; empty means every channel."""
        known = self._known.get(chat_key)
        now = time.monotonic()
        if known is not None and now - known[0] < CACHE_SECONDS:
            return list(known[1])
        rows = await self._store.fetchall(
            "SELECT channel_id FROM allowed_channels WHERE chat_key = ? ORDER BY created_at, channel_id",
            (chat_key,),
        )
        if len(self._known) >= _CACHE_MAX:
            self._known.clear()
        self._known[chat_key] = (now, tuple(row["channel_id"] for row in rows))
        return [row["channel_id"] for row in rows]

    async def permits(self, chat_key: str, channel_ids: set[str]) -> bool:
        """Whether a request in any of ``channel_ids`` (a thread and its parent channel, say) may be served."""
        allowed = await self.allowed(chat_key)
        return not allowed or bool(channel_ids & set(allowed))

    async def allow(self, chat_key: str, channel_id: str) -> list[str]:
        await self._store.execute(
            "INSERT INTO allowed_channels (chat_key, channel_id, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            (chat_key, channel_id, self._clock()),
        )
        self._known.pop(chat_key, None)
        return await self.allowed(chat_key)

    async def remove(self, chat_key: str, channel_id: str) -> list[str]:
        await self._store.execute(
            "DELETE FROM allowed_channels WHERE chat_key = ? AND channel_id = ?", (chat_key, channel_id)
        )
        self._known.pop(chat_key, None)
        return await self.allowed(chat_key)

    async def clear(self, chat_key: str) -> None:
        await self._store.execute("DELETE FROM allowed_channels WHERE chat_key = ?", (chat_key,))
        self._known.pop(chat_key, None)
