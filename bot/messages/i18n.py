"""Messages in zh and en from the gettext catalogs in ``locales/``."""

from __future__ import annotations

import gettext
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, Literal

from bot.draw.options import BY_NAME

Lang = Literal["en", "zh"]
LANGUAGES: tuple[Lang, ...] = ("en", "zh")
DOMAIN = "sdbot"


def locale_dir() -> Path:
    """Where the compiled catalogs are: inside the wheel, or the source tree's ``locales/``."""
    bot = Path(__file__).parent.parent
    packaged = bot / "_locales"
    return packaged if packaged.is_dir() else bot.parent / "locales"


@cache
def catalog(lang: Lang) -> gettext.GNUTranslations:
    with open(locale_dir() / lang / "LC_MESSAGES" / f"{DOMAIN}.mo", "rb") as fh:
        return gettext.GNUTranslations(fh)


def has(lang: Lang, key: str) -> bool:
    messages = catalog(lang)._catalog  # type: ignore[attr-defined]
    return key in messages or (key, 0) in messages


def is_plural(lang: Lang, key: str) -> bool:
    """Whether ``key`` has plural forms (``msgid_plural``): its form is chosen by the ``count`` value."""
    return (key, 0) in catalog(lang)._catalog  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Msg:
    """A message to render later, in the reader's language. Params may themselves be :class:`Msg`."""

    key: str
    params: dict[str, Any] = field(default_factory=dict)

    def render(self, lang: Lang) -> str:
        return t(lang, self.key, **self.params)


def t(lang: Lang, key: str, /, **values: Any) -> str:
    """The message ``key`` in ``lang`` with its placeholders filled. A message with plural forms takes the
    form the language's plural rule gives for ``count`` ("1 picture", "2 pictures"; Chinese has one form)."""
    if is_plural(lang, key):
        text = catalog(lang).ngettext(key, key, int(values.get("count", 0)))
    else:
        text = catalog(lang).gettext(key)
    if not values:
        return text
    return text.format_map(_Values({name: _show(lang, value) for name, value in values.items()}))


class _Values(dict[str, str]):
    # A placeholder without a value shows as empty rather than raising in front of a user; the catalog
    # tests make sure every placeholder a message uses is one the code passes.
    def __missing__(self, key: str) -> str:
        return ""


def _show(lang: Lang, value: Any) -> str:
    if isinstance(value, Msg):
        return value.render(lang)
    if isinstance(value, (list, tuple)):
        return format_list(lang, value)
    if value is None:
        return t(lang, "value.none")
    return str(value)


def format_list(lang: Lang, values: Iterable[object]) -> str:
    return t(lang, "list.separator").join(str(v) for v in values)


def resolve_language(explicit: str | None, platform_code: str | None, default: Lang) -> Lang:
    """An explicit choice, else the platform's language code (``zh-hans``, ``zh-CN``... -> zh), else default."""
    for code in (explicit, platform_code):
        lang = normalize_language(code)
        if lang is not None:
            return lang
    return default


def normalize_language(code: str | None) -> Lang | None:
    if not code:
        return None
    base = code.strip().replace("_", "-").split("-")[0].casefold()
    return base if base in LANGUAGES else None  # type: ignore[return-value]


def render_error(error: Exception, lang: Lang) -> str:
    """The user-facing text of any error: documented ones from the catalog, anything else as 'internal'."""
    from bot.errors import SdbotError

    if not isinstance(error, SdbotError):
        return t(lang, "error.internal")
    values = dict(error.params)
    if error.option is not None:
        values.setdefault("option", error.option)
    suggestion = values.pop("suggestion", None)
    values["hint"] = Msg("hint.did_you_mean", {"suggestion": suggestion}) if suggestion else ""
    if (option := BY_NAME.get(error.option or "")) and "allowed" in values:
        values["allowed"] = [option.label(lang, value) for value in values["allowed"]]
    for key in error.message_keys:
        if has(lang, key):
            return t(lang, key, **values)
    return t(lang, "error.internal")
