"""The inline keyboards of ``/settings`` on Telegram: a button per enumerated default (style, size), each opening
its values. Callback data holds a value's index among today's choices (64 bytes would not hold every style name)."""

from __future__ import annotations

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot.draw.capabilities import Capabilities
from bot.draw.options import BY_NAME
from bot.messages.i18n import Lang, t

CHOSEN = ("style", "size")  # the defaults picked from a list; steps and negative are typed: /settings steps 30
PER_ROW = 3


def settings_keyboard(caps: Capabilities, lang: Lang) -> InlineKeyboardMarkup:
    names = [name for name in CHOSEN if BY_NAME[name].supported(caps)]
    return InlineKeyboardMarkup(
        [[InlineKeyboardButton(_name(name, lang) + " ▸", callback_data=f"set:{name}") for name in names]]
    )


def values_keyboard(name: str, caps: Capabilities, lang: Lang) -> InlineKeyboardMarkup:
    option = BY_NAME[name]
    buttons = [
        InlineKeyboardButton(option.label(lang, value, short=True), callback_data=f"set:{name}:{i}")
        for i, value in enumerate(option.choices(caps))
    ]
    rows = [buttons[i : i + PER_ROW] for i in range(0, len(buttons), PER_ROW)]
    rows.append([InlineKeyboardButton(t(lang, "cmd.settings.unset"), callback_data=f"set:{name}:-")])
    return InlineKeyboardMarkup(rows)


def choice_value(name: str, index: str, caps: Capabilities) -> str | None:
    """The value a button stands for (None: unset); ``LookupError`` when the choices changed under it."""
    if name not in CHOSEN:
        raise LookupError(name)
    if index == "-":
        return None
    return BY_NAME[name].choices(caps)[int(index)]


def _name(name: str, lang: Lang) -> str:
    return BY_NAME[name].zh if lang == "zh" else name
