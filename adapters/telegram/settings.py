"""The inline keyboards of ``/settings`` on Telegram: a button per default picked from a list (style, size,
moderation, flagged pictures), each opening its values. Callback data holds a value's index among today's
choices (64 bytes would not hold every style name)."""

from __future__ import annotations

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot.chats import policy
from bot.draw.capabilities import Capabilities
from bot.draw.options import BY_NAME
from bot.messages.i18n import Lang, t

OPTIONS = ("style", "size")  # /draw defaults picked from a list; steps and negative are typed: /settings steps 30
PER_ROW = 3


def _chosen(caps: Capabilities) -> list[str]:
    names = [name for name in OPTIONS if BY_NAME[name].supported(caps)]
    return names + [name for name in policy.POLICIES if policy.offered(name, "telegram")]


def settings_keyboard(caps: Capabilities, lang: Lang) -> InlineKeyboardMarkup:
    buttons = [InlineKeyboardButton(_name(name, lang) + " ▸", callback_data=f"set:{name}") for name in _chosen(caps)]
    return InlineKeyboardMarkup([buttons[i : i + 2] for i in range(0, len(buttons), 2)])


def values_keyboard(name: str, caps: Capabilities, lang: Lang) -> InlineKeyboardMarkup:
    buttons = [
        InlineKeyboardButton(_label(name, value, lang), callback_data=f"set:{name}:{i}")
        for i, value in enumerate(_values(name, caps))
    ]
    rows = [buttons[i : i + PER_ROW] for i in range(0, len(buttons), PER_ROW)]
    rows.append([InlineKeyboardButton(t(lang, "cmd.settings.unset"), callback_data=f"set:{name}:-")])
    return InlineKeyboardMarkup(rows)


def choice_value(name: str, index: str, caps: Capabilities) -> str | None:
    """The value a button stands for (None: unset); ``LookupError`` when the choices changed under it."""
    if name not in _chosen(caps):
        raise LookupError(name)
    if index == "-":
        return None
    return _values(name, caps)[int(index)]


def _values(name: str, caps: Capabilities) -> tuple[str, ...]:
    return policy.POLICIES[name] if name in policy.POLICIES else BY_NAME[name].choices(caps)


def _label(name: str, value: str, lang: Lang) -> str:
    if name in policy.POLICIES:
        return t(lang, f"setting.{name}.{value}").split(" (")[0].split("（")[0]
    return BY_NAME[name].label(lang, value, short=True)


def _name(name: str, lang: Lang) -> str:
    if name in policy.POLICIES:
        return t(lang, f"setting.{name}")
    return BY_NAME[name].zh if lang == "zh" else name
