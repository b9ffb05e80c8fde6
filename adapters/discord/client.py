"""The discord.py client: default (unprivileged) intents, the command tree, the persistent buttons."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import discord
from discord import app_commands

from adapters.discord.replies import apologize
from adapters.discord.translator import CatalogTranslator
from adapters.discord.views import DYNAMIC_ITEMS, EDIT_FORM_ID, PICTURE_FORM_ID, submitted_form
from bot.core import Core

if TYPE_CHECKING:
    from adapters.discord.handlers import Handlers

log = logging.getLogger(__name__)


class SdbotTree(app_commands.CommandTree[Any]):
    def __init__(self, client: discord.Client, core: Core) -> None:
        super().__init__(client)
        self.core = core

    async def on_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        # Handlers answer their own errors; this catches what fails before them (an option discord.py
        # cannot convert, say from a modified client).
        log.error("Discord command %s failed", getattr(interaction.command, "name", "?"), exc_info=error)
        await apologize(self.core, interaction)


def guard_parsers(parsers: dict[str, Callable[[Any], None]]) -> None:
    """Make every gateway event parser drop an event it cannot read instead of raising.

    discord.py calls these straight from its gateway loop: one dispatch it cannot parse (a field missing or of
    an unexpected type, a new kind of interaction) raises out of ``connect()`` and ends the connection for
    good, so the bot would stop answering everyone. Dropping that one event is the only sane outcome.
    """
    for event, parse in list(parsers.items()):
        parsers[event] = _guarded(event, parse)


def _guarded(event: str, parse: Callable[[Any], None]) -> Callable[[Any], None]:
    def guarded(data: Any) -> None:
        try:
            parse(data)
        except Exception as exc:
            # Not the payload: it holds what users wrote and interaction tokens.
            log.warning("Discord %s event could not be read (%s); ignored", event, type(exc).__name__)
            log.debug("unreadable %s event", event, exc_info=exc)

    return guarded


class SdbotClient(discord.Client):
    def __init__(self, core: Core, *, guild_ready_timeout: float = 2.0, **sharding: Any) -> None:
        super().__init__(
            intents=discord.Intents.default(),
            guild_ready_timeout=guild_ready_timeout,
            allowed_mentions=discord.AllowedMentions.none(),
            max_messages=None,  # the bot never looks messages up; nothing to cache
            **sharding,
        )
        guard_parsers(self._connection.parsers)
        self.tree = SdbotTree(self, core)
        self.handlers: Handlers | None = None  # the buttons and the Edit form find their handlers here

    async def setup_hook(self) -> None:
        await self.tree.set_translator(CatalogTranslator())
        self.add_dynamic_items(*DYNAMIC_ITEMS)

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        form = submitted_form(interaction)
        if form is None or self.handlers is None:
            return
        custom_id, text = form
        if custom_id == EDIT_FORM_ID:
            await self.handlers.draw_text(interaction, text)
        else:
            await self.handlers.draw_picture(interaction, text, custom_id.removeprefix(PICTURE_FORM_ID))


class ShardedSdbotClient(SdbotClient, discord.AutoShardedClient):
    """The same client over ``shard_ids`` of ``shard_count`` shards (discord.py's AutoShardedClient): Discord
    sends each server's events to one shard, so the process running that shard answers that server."""
