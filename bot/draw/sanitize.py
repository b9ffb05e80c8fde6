"""What users type, made safe to store, send to an image service and show back to anyone.

Removed, because they mean nothing to an image model and only do harm elsewhere:

* control characters other than line feed and tab: NUL and friends can break the chat APIs (Telegram refuses
  some), terminals reading the logs, and tools reading the database. A carriage return becomes a line feed;
  control characters that act as white space (vertical tab, form feed, the separators ``\\x1c``-``\\x1f``,
  ``\\x85``) become a space, so words they separated stay apart.
* bidirectional embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069): a right-to-left override in
  a prompt or an option value would reverse the rest of the line it is echoed in (an error message, a caption),
  making the bot appear to say something else.
* lone surrogates: they cannot be encoded as UTF-8, so no platform or provider could be sent them.

Kept: everything else, including zero-width joiners and non-joiners (emoji sequences and several scripts need
them) and left-to-right / right-to-left marks. A prompt of nothing but invisible characters is empty
(:func:`blank`); a flood of them is caught by the prompt length limit like any other character.
"""

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
