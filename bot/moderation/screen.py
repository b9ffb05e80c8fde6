"""The block list at work: a request is screened against the rules as they are now in the database (``sdbot block``
may change them under a running bot, and every process of a shared database sees one list)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from bot.chats import policy
from bot.chats.refs import ChatRef, UserRef
from bot.draw.request import DrawRequest
from bot.errors import DrawError
from bot.moderation.rules import breaks
from bot.storage.port import Storage

log = logging.getLogger(__name__)


class Screen:
    """``today`` names the quota day refusals are counted on (``sdbot stats``)."""

    def __init__(self, storage: Storage, today: Callable[[], str]) -> None:
        self._storage = storage
        self._today = today

    async def check(
        self, user: UserRef, chat: ChatRef, request: DrawRequest, settings: Mapping[str, str] | None = None
    ) -> None:
        """Refuse (``prompt_blocked``, the term not echoed) a request whose prompt or negative prompt breaks the
        list; strict rules count where moderation is strict (:attr:`ChatRef.strict`, or the chat's setting: from
        ``settings`` when the caller read them already). The refusal is recorded for admins and stats. Admins are
        screened too: the list is about what the bot draws."""
        if settings is None:
            settings = await self._storage.channels.defaults(chat.key)
        strict = chat.strict or policy.strict(settings)
        hit = breaks(request.prompt, request.negative_prompt, await self._storage.moderation.rules(), strict=strict)
        if hit is None:
            return
        rule, field = hit
        await self._storage.moderation.record_refusal(user.key, chat.key, rule, field, self._today())
        log.info("a request of %s was refused by block rule %s (%s)", user.key, rule.id, field)
        raise DrawError("prompt_blocked", option=field)
