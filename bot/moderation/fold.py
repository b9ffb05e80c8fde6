"""Text as the block list sees it. People who want a blocked word drawn write it in ways a plain comparison misses:
``KiLL``, full-width ``ｋｉｌｌ``, ``k i l l`` or ``k.i.l.l``, zero-width characters between its letters, Cyrillic
``кіll`` that looks Latin, Chinese with spaces between the characters (``暴 力``). :func:`fold` undoes each:
NFKC (full-width and other compatibility forms), case folding, invisible and combining characters dropped,
homoglyphs of Latin letters mapped to them (Unicode's confusables table, from ``confusable_homoglyphs``), every
run of separators made one space and the spaces between Chinese characters dropped. A word rule then allows a
space between any two of its letters (:mod:`bot.moderation.rules`), which catches ``k i l l`` and ``ki ll``
without matching ``skill``."""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass

from confusable_homoglyphs import confusables

_DROPPED = {"Cf", "Mn", "Me", "Cc"}  # zero-width and other format characters, combining marks, controls
_SEPARATORS = re.compile(r"[\W_]+")  # anything but letters and digits (Chinese characters are letters)
_CJK = r"\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK_GAP = re.compile(rf"(?<=[{_CJK}]) (?=[{_CJK}])")


@dataclass(frozen=True, slots=True)
class Folded:
    """``words``: the folded text, words separated by one space (none between Chinese characters): what word
    rules look for. ``raw``: the same before separators were touched, for the operators' own patterns."""

    words: str
    raw: str


@functools.cache
def _latin() -> dict[int, str]:
    """Each non-ASCII character that Unicode lists as confusable with a Latin letter or digit -> that character."""
    table: dict[int, str] = {}
    for char, glyphs in confusables.confusables_data.items():
        if len(char) != 1 or char.isascii():
            continue
        for glyph in glyphs:
            target = glyph["c"]
            if len(target) == 1 and target.isascii() and target.isalnum():
                table[ord(char)] = target.casefold()
                break
    return table


def _letters(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(ch for ch in unicodedata.normalize("NFKD", text) if unicodedata.category(ch) not in _DROPPED)
    return unicodedata.normalize("NFC", text).translate(_latin())


def fold(text: str) -> Folded:
    letters = _letters(text)
    spaced = _SEPARATORS.sub(" ", letters).strip()
    return Folded(words=_CJK_GAP.sub("", spaced), raw=letters)


def is_cjk(text: str) -> bool:
    """Whether ``text`` has Chinese (or Japanese) characters: such words have no spaces around them to match at."""
    return re.search(f"[{_CJK}]", text) is not None
