"""Answering an interaction: ephemeral text in the user's language, and never a traceback."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Concatenate, ParamSpec, Protocol, TypeVar

import discord

from adapters.discord.refs import user_ref
from bot.core import Core
from bot.messages.i18n import Lang, t

log = logging.getLogger(__name__)

CONTENT_MAX = 2000
NO_MENTIONS = discord.AllowedMentions.none()


def lang_of(core: Core, interaction: discord.Interaction) -> Lang:
    return core.language_for(user_ref(interaction))


async def reply(interaction: discord.Interaction, text: str) -> None:
    """An ephemeral answer (a follow-up when the interaction was already answered)."""
    text = text[:CONTENT_MAX]
    if interaction.response.is_done():
        await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_MENTIONS)
    else:
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_MENTIONS)


class HasCore(Protocol):
    core: Core


H = TypeVar("H", bound=HasCore)
P = ParamSpec("P")


def guarded(
    method: Callable[Concatenate[H, discord.Interaction, P], Awaitable[None]],
) -> Callable[Concatenate[H, discord.Interaction, P], Awaitable[None]]:
    """Log whatever escapes a handler and tell the user in their language that something went wrong."""

    @functools.wraps(method)
    async def wrapper(self: H, interaction: discord.Interaction, *args: P.args, **kwargs: P.kwargs) -> None:
        try:
            await method(self, interaction, *args, **kwargs)
        except Exception:
            log.exception("Discord %s failed", method.__name__)
            await apologize(self.core, interaction)

    return wrapper


async def apologize(core: Core, interaction: discord.Interaction) -> None:
    with contextlib.suppress(discord.HTTPException):
        await reply(interaction, t(lang_of(core, interaction), "error.internal"))
