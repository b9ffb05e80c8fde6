"""Command, option and choice texts for Discord from our gettext catalogs, in every language at once."""

from __future__ import annotations

from collections.abc import Callable

import discord
from discord import app_commands

from bot.messages.i18n import LANGUAGES, Lang, t

# Discord's Chinese locales; our catalogs have one Chinese.
LOCALES: dict[discord.Locale, Lang] = {discord.Locale.chinese: "zh", discord.Locale.taiwan_chinese: "zh"}
DESCRIPTION_MAX = 100  # Discord's limit for descriptions and choice names


def localized(render: Callable[[Lang], str], limit: int = DESCRIPTION_MAX) -> app_commands.locale_str:
    """A name, description or choice name, English by default, carrying its other languages for the translator
    (names are lowercase without spaces, as Discord requires, in the catalogs and the options' table alike)."""
    return app_commands.locale_str(render("en")[:limit], **{lang: render(lang)[:limit] for lang in LANGUAGES})


def text(key: str) -> app_commands.locale_str:
    """The catalog message ``key``."""
    return localized(lambda lang: t(lang, key))


class CatalogTranslator(app_commands.Translator):
    async def translate(
        self,
        string: app_commands.locale_str,
        locale: discord.Locale,
        context: app_commands.TranslationContextTypes,
    ) -> str | None:
        lang = LOCALES.get(locale)
        translated = string.extras.get(lang) if lang else None  # other locales see the English default
        return translated if translated != string.message else None
