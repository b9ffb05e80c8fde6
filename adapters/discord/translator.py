"""Command, option and choice texts for Discord from our gettext catalogs. Notes: docs/MODULES.md."""

from __future__ import annotations

import discord
from discord import app_commands

from bot.draw.options import BY_NAME
from bot.messages.i18n import Lang, t

# Discord's Chinese locales; our catalogs have one Chinese.
LOCALES: dict[discord.Locale, Lang] = {discord.Locale.chinese: "zh", discord.Locale.taiwan_chinese: "zh"}
DESCRIPTION_MAX = 100  # Discord's limit for descriptions and choice names


def text(key: str) -> app_commands.locale_str:
    """A name, description or choice name: the catalog message ``key`` (option names in the catalogs are
    lowercase without spaces, as Discord requires)."""
    return app_commands.locale_str(t("en", key), key=key)


def style_choice(style: str) -> app_commands.Choice[str]:
    return app_commands.Choice(name=app_commands.locale_str(style, style=style), value=style)


class CatalogTranslator(app_commands.Translator):
    async def translate(
        self,
        string: app_commands.locale_str,
        locale: discord.Locale,
        context: app_commands.TranslationContextTypes,
    ) -> str | None:
        lang = LOCALES.get(locale)
        if lang is None:
            return None  # other locales see the English default
        if "style" in string.extras:
            return BY_NAME["style"].label(lang, string.extras["style"])[:DESCRIPTION_MAX]
        key = string.extras.get("key")
        if key is None:
            return None
        translated = t(lang, key)
        if context.location is app_commands.TranslationContextLocation.parameter_name:
            return translated
        return translated[:DESCRIPTION_MAX]
