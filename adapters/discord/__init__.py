"""The Discord adapter (discord.py 2): slash commands in servers and DMs around the shared core.

Why it is built this way: docs/MODULES.md, adapters/discord/__init__.py.
"""

from adapters.discord.adapter import DiscordAdapter

__all__ = ["DiscordAdapter"]
