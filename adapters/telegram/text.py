"""Telegram's text limits. Telegram counts lengths in UTF-16 code units, so an emoji counts twice: a caption
that is 1024 Python characters long can still be refused."""

from __future__ import annotations

from bot.draw.request import DrawRequest
from bot.draw.shape import Drawn
from bot.messages.i18n import Lang
from bot.messages.presentation import caption

MAX_CAPTION = 1024
MAX_TEXT = 4096
MAX_ALERT = 200  # answerCallbackQuery text


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def photo_caption(request: DrawRequest, lang: Lang, drawn: Drawn | None = None) -> str:
    """The shared caption (prompt cut, parameters whole) within Telegram's 1024 UTF-16 units."""
    limit = MAX_CAPTION
    while True:
        text = caption(request, lang, limit=limit, drawn=drawn)
        excess = utf16_len(text) - MAX_CAPTION
        if excess <= 0:
            return text
        limit -= excess  # each step removes at least the excess, so this ends within a few rounds


def chunks(text: str, limit: int = MAX_TEXT) -> list[str]:
    """``text`` in pieces of at most ``limit`` UTF-16 units, split at line ends where possible."""
    if utf16_len(text) <= limit:
        return [text]
    out: list[str] = []
    current = ""
    for line in text.splitlines(keepends=True):
        while utf16_len(line) > limit:  # one enormous line: cut it where it must be cut
            cut = _prefix(line, limit)
            if current:
                out.append(current)
                current = ""
            out.append(line[:cut])
            line = line[cut:]
        if utf16_len(current) + utf16_len(line) > limit:
            out.append(current)
            current = ""
        current += line
    if current:
        out.append(current)
    return [piece.strip("\n") or piece for piece in out if piece.strip()]


def _prefix(text: str, limit: int) -> int:
    """How many characters of ``text`` fit in ``limit`` UTF-16 units."""
    used = 0
    for index, char in enumerate(text):
        used += 2 if ord(char) > 0xFFFF else 1
        if used > limit:
            return index
    return len(text)
