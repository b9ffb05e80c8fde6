"""What users type, made safe to store, send to an image service and show back to anyone."""

from __future__ import annotations

import re
import unicodedata

_BIDI_CONTROLS = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_NEWLINES = re.compile(r"\r\n?")
# C0 and C1 controls, DEL, bidi controls and surrogates; line feed and tab are kept.
_UNSAFE = re.compile(rf"[\x00-\x08\x0b-\x1f\x7f-\x9f{_BIDI_CONTROLS}\ud800-\udfff]")


def _replace(match: re.Match[str]) -> str:
    return " " if match.group().isspace() else ""


def clean(text: str) -> str:
    """``text`` without the characters listed in the module documentation (idempotent)."""
    if text.isprintable():  # the common case, quickly: nothing to remove (newlines and tabs are not printable)
        return text
    return _UNSAFE.sub(_replace, _NEWLINES.sub("\n", text))


def blank(text: str) -> bool:
    """True when ``text`` shows nothing: only white space and invisible format characters (zero-width
    spaces and joiners, marks, the byte order mark)."""
    return all(ch.isspace() or unicodedata.category(ch) == "Cf" for ch in text)
