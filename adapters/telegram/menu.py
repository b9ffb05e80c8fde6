"""The command menu Telegram clients show when a user types "/": in English for English clients, Chinese for
Chinese ones (``language_code`` must be the two letters ``zh``), ``SDBOT_LANG`` for the rest; /admin appears
only in the admins' own chats."""

from __future__ import annotations

import logging

from telegram import Bot, BotCommand, BotCommandScope, BotCommandScopeChat, BotCommandScopeDefault
from telegram.error import TelegramError

from bot.messages.i18n import LANGUAGES, Lang, t

log = logging.getLogger(__name__)

PUBLIC = ("draw", "quota", "lang", "cancel", "settings", "help", "start")
ADMIN = (*PUBLIC, "admin")


def commands(lang: Lang, names: tuple[str, ...] = PUBLIC) -> list[BotCommand]:
    return [BotCommand(name, t(lang, f"menu.{name}")) for name in names]


def admin_chats(admins: frozenset[str]) -> list[int]:
    """Telegram admins from ``SDBOT_ADMINS``; a user's private chat has the user's id."""
    return sorted(int(key.split(":", 1)[1]) for key in admins if key.startswith("telegram:"))


async def register(bot: Bot, default: Lang, admins: frozenset[str]) -> None:
    """setMyCommands for every language; a failure costs only the menu, so it is logged, not raised."""
    scopes: list[tuple[BotCommandScope, tuple[str, ...]]] = [(BotCommandScopeDefault(), PUBLIC)]
    scopes += [(BotCommandScopeChat(chat), ADMIN) for chat in admin_chats(admins)]
    variants: list[tuple[Lang, str | None]] = [(default, None), *((lang, lang) for lang in LANGUAGES)]
    for scope, names in scopes:
        for lang, code in variants:
            try:
                await bot.set_my_commands(commands(lang, names), scope=scope, language_code=code)
            except TelegramError as exc:  # an admin who never opened a chat with the bot: "chat not found"
                log.warning("command menu (%s, %s) not set: %s", scope.type, lang, exc)
