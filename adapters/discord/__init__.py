"""The Discord adapter (discord.py 2): slash commands in servers and DMs around the shared core.

``adapters.discord`` is a subpackage, so ``import discord`` inside it still means discord.py.

Modules: :mod:`.adapter` (life cycle, command sync), :mod:`.commands` (the slash commands),
:mod:`.handlers` and :mod:`.admin` (what they do), :mod:`.views` (persistent buttons, the Edit form),
:mod:`.sink` (progress and delivery), :mod:`.route` (what a job stores to be delivered later),
:mod:`.files` (attachments within Discord's limits), :mod:`.translator` (zh localizations), :mod:`.refs`
(users, servers and languages).
"""

from adapters.discord.adapter import DiscordAdapter

__all__ = ["DiscordAdapter"]
