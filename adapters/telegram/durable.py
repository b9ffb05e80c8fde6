"""Telegram updates kept in the core's inbox until handled, so a killed bot loses no command."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable
from typing import Any

from telegram import Bot, Update
from telegram.ext import SimpleUpdateProcessor
from tornado.web import HTTPError  # PTB's webhook server: how its handler answers other than 200

from bot.core import Core

log = logging.getLogger(__name__)

PLATFORM = "telegram"
MAX_CONCURRENT_UPDATES = 256  # what PTB's concurrent_updates(True) allows


class DurableQueue(asyncio.Queue[object]):
    """PTB's update queue; an :class:`Update` is put only once it is stored (and not if it was already).
    ``refuse_unstored`` (webhooks): an update that cannot be stored is answered 503, and Telegram sends it
    again later; by long polling it is handled anyway, since raising would end PTB's polling for good."""

    def __init__(self, core: Core, *, refuse_unstored: bool = False) -> None:
        super().__init__()
        self._core = core
        self._refuse_unstored = refuse_unstored

    async def put(self, item: object) -> None:
        if isinstance(item, Update):
            # ASCII escapes: a text with a lone surrogate (invalid UTF-8 from the API) must still be storable.
            try:
                payload = json.dumps(item.to_dict(), separators=(",", ":"))
                fresh = await self._core.receive_event(PLATFORM, item.update_id, payload)
            except Exception as exc:
                if self._refuse_unstored:
                    log.error("Telegram update %s could not be stored (%s); refused, Telegram sends it again",
                              item.update_id, exc)  # fmt: skip
                    raise HTTPError(503, reason="Service Unavailable") from None  # a warning, no traceback
                log.error("Telegram update %s could not be stored (%s); handled anyway", item.update_id, exc)
                fresh = True
            if not fresh:
                log.info("Telegram update %s arrived again, already handled or being handled; skipped", item.update_id)
                return
        await super().put(item)  # PTB's own stop signal passes straight through

    async def put_held(self, update: Update) -> None:
        """Queue an update the inbox holds already (handed back at start)."""
        await super().put(update)


class DurableProcessor(SimpleUpdateProcessor):
    """Runs each update's handlers, then lets the inbox forget it."""

    def __init__(self, core: Core, max_concurrent_updates: int = MAX_CONCURRENT_UPDATES) -> None:
        super().__init__(max_concurrent_updates)
        self._core = core

    async def do_process_update(self, update: object, coroutine: Awaitable[Any]) -> None:
        await coroutine  # PTB turns a handler's exception into a call of the error handler: this returns
        if isinstance(update, Update):
            # Not reached when cancelled (shutdown): the update stays held and is handled at the next start.
            try:
                await self._core.event_done(PLATFORM, update.update_id)
            except Exception as exc:  # it is handled again at the next start: harmless, see bot.chats.inbox
                log.error("Telegram update %s could not be marked handled: %s", update.update_id, exc)


async def replay(core: Core, queue: DurableQueue, bot: Bot) -> int:
    """Queue the updates a previous process received but did not finish handling; how many."""
    count = 0
    for held in await core.take_over_events(PLATFORM):
        try:
            update = Update.de_json(json.loads(held.payload), bot)
        except Exception as exc:  # stored by an older PTB, say: nothing to do but drop it
            log.warning("held Telegram update %s could not be read (%s); dropped", held.event_id, type(exc).__name__)
            await core.event_done(PLATFORM, held.event_id)
            continue
        await queue.put_held(update)
        count += 1
    return count
