"""Who and where an interaction comes from, in the core's terms, and the language to answer in."""

from __future__ import annotations

import discord

from adapters.discord.route import age_restricted
from bot.chats.refs import ChatRef, UserRef
from bot.messages.i18n import normalize_language

PLATFORM = "discord"


def language_code(interaction: discord.Interaction) -> str | None:
    """The user's Discord language when we speak it, else the server's; ``/lang`` overrides both (core)."""
    for locale in (interaction.locale, interaction.guild_locale):
        if locale is not None and normalize_language(locale.value):
            return locale.value
    return None


def user_ref(interaction: discord.Interaction) -> UserRef:
    user = interaction.user
    return UserRef(PLATFORM, str(user.id), language_code(interaction), user.display_name)


def chat_ref(interaction: discord.Interaction) -> ChatRef:
    """The server (caps and allowed channels are per server), or the DM channel."""
    strict = not age_restricted(interaction)  # Discord keeps NSFW content to age-restricted channels
    if interaction.guild_id is not None:
        title = getattr(interaction.guild, "name", None) or None  # a server not in the cache has no name
        return ChatRef(PLATFORM, str(interaction.guild_id), True, title=title, strict=strict)
    return ChatRef(PLATFORM, str(interaction.channel_id), False, strict=strict)


def user_key(user_id: int) -> str:
    return f"{PLATFORM}:{user_id}"
