"""The Discord adapter (discord.py 2): slash commands in servers and DMs around the shared core."""

from adapters.discord.adapter import DiscordAdapter

__all__ = ["DiscordAdapter"]
