"""``/sdadmin``: what server managers and the bot's administrators may change from Discord."""

from __future__ import annotations

from typing import Literal

import discord

from adapters.discord.refs import chat_ref, user_key, user_ref
from adapters.discord.replies import guarded, lang_of, reply
from bot.config import Settings
from bot.core import Core
from bot.draw.defaults import SETTABLE
from bot.draw.options import OptionValue
from bot.messages.i18n import t

Role = Literal["operator", "manager"]
ChannelAction = Literal["allow", "remove", "list", "clear"]
CHANNEL_ACTIONS: tuple[ChannelAction, ...] = ("allow", "remove", "list", "clear")


def role(interaction: discord.Interaction, settings: Settings) -> Role | None:
    if user_key(interaction.user.id) in settings.admins:
        return "operator"
    if interaction.guild_id is not None:
        perms = interaction.permissions
        if perms.manage_guild or perms.administrator:
            return "manager"
    return None


class AdminHandlers:
    def __init__(self, core: Core, settings: Settings) -> None:
        self.core = core
        self.settings = settings

    async def _allowed(self, interaction: discord.Interaction, *, operator_only: bool = False) -> Role | None:
        who = role(interaction, self.settings)
        lang = lang_of(self.core, interaction)
        if who is None or interaction.guild_id is None:
            await reply(interaction, t(lang, "discord.admin_only"))
            return None
        if operator_only and who != "operator":
            await reply(interaction, t(lang, "discord.operator_only"))
            return None
        return who

    @guarded
    async def servercap(self, interaction: discord.Interaction, images: int | None) -> None:
        who = await self._allowed(interaction)
        if who is None:
            return
        lang = lang_of(self.core, interaction)
        ceiling = self.settings.chat_daily_images
        if who == "manager" and images is not None and ceiling and not 0 < images <= ceiling:
            await reply(interaction, t(lang, "discord.cap_too_high", limit=ceiling))
            return
        await reply(interaction, await self.core.set_chat_cap(chat_ref(interaction), images, lang))

    @guarded
    async def channels(self, interaction: discord.Interaction, action: str, channel_id: int | None = None) -> None:
        if await self._allowed(interaction) is None:
            return
        lang = lang_of(self.core, interaction)
        target = str(channel_id or interaction.channel_id)
        allowed = await self.core.edit_channels(chat_ref(interaction), action, target)
        if not allowed:
            await reply(interaction, t(lang, "discord.channels.all"))
        else:
            await reply(interaction, t(lang, "discord.channels.list", channels=[f"<#{c}>" for c in allowed]))

    @guarded
    async def stats(self, interaction: discord.Interaction) -> None:
        if await self._allowed(interaction) is None:
            return
        lang = lang_of(self.core, interaction)
        await reply(interaction, await self.core.stats_report(lang, chat_ref(interaction)))

    @guarded
    async def member_command(self, interaction: discord.Interaction, command: str, member_id: int, *rest: str) -> None:
        """``quota``, ``ban``, ``unban``, ``reset``: the core's ``/admin`` commands, for operators only."""
        if await self._allowed(interaction, operator_only=True) is None:
            return
        args = " ".join((command, user_key(member_id), *rest))
        text = await self.core.handle_command(user_ref(interaction), chat_ref(interaction), "admin", args)
        await reply(interaction, text)

    @guarded
    async def block(self, interaction: discord.Interaction, action: str, value: str | None) -> None:
        """``/sdadmin block``: the core's ``/admin block`` (the block list), for operators only; answered only to
        them, so the list and who was refused stay theirs."""
        if await self._allowed(interaction, operator_only=True) is None:
            return
        args = " ".join(("block", action, *([value] if value else [])))
        user, chat = user_ref(interaction), chat_ref(interaction)
        await reply(interaction, await self.core.handle_command(user, chat, "admin", args, private=True))

    @guarded
    async def chat_settings(
        self, interaction: discord.Interaction, typed: dict[str, OptionValue | None], reset: str | None
    ) -> None:
        """``/settings``: the chat's /draw defaults; the server's managers and ``SDBOT_ADMINS`` change them (in a
        DM, its user). Answered only to the user."""
        changes: dict[str, str | None] = {name: str(value) for name, value in typed.items() if value is not None}
        if reset is not None:
            changes |= dict.fromkeys((*SETTABLE, "moderation") if reset == "all" else (reset,))
        manager = interaction.guild_id is None or role(interaction, self.settings) is not None
        user, chat = user_ref(interaction), chat_ref(interaction)
        await reply(interaction, await self.core.chat_settings(user, chat, changes, manager=manager))
