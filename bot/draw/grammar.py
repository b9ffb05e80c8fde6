"""The /draw command language: text -> :class:`DrawArgs` (prompt and raw option values), and back."""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from bot.draw import params
from bot.draw.capabilities import SEED, Capabilities
from bot.draw.options import BY_NAME, OPTIONS, SPELLINGS, OptionValue, as_typed
from bot.draw.request import DrawRequest
from bot.draw.sanitize import clean
from bot.errors import DrawError

QUOTES: dict[str, str] = {'"': '"', "'": "'", "“": "”", "”": "”", "‘": "’", "「": "」", "『": "』"}

_COMMAND_PREFIX = re.compile(r"^\s*/draw(?:@\w+)?(?=\s|$)", re.IGNORECASE)
# "--", and what phones and IMEs turn it into: em/en dashes, a horizontal bar, full-width hyphens.
_DASHES = r"(?:--|——|—|–|―|－－|−−)"
_QUOTE_CHARS = re.escape("".join(QUOTES) + "".join(QUOTES.values()))
# A name starts with a letter and runs to white space, "=" or a quote: "—style「x」" is --style and a value.
_OPTION = re.compile(_DASHES + rf"(?P<name>[^\W\d_][^\s=＝{_QUOTE_CHARS}]*)(?P<eq>[=＝])?")
_MAX_SPAN = 6  # words an enumerated value may span ("dpm ++ 2m sde karras")
_SIZE_SHAPE = re.compile(r"^\d+x\d+$")
# A run of anything but white space (the regular expressions' \s is exactly str.isspace()).
_WORD = re.compile(r"\S+")
_CJK = re.compile(r"[\u3400-\u9fff]")  # CJK unified ideographs (and extension A)


@dataclass(frozen=True, slots=True)
class Token:
    kind: Literal["word", "quoted", "option"]
    value: str  # words: as typed; quoted: the unescaped inside; options: the name as typed
    inline: Token | None = None  # the value after "=" in "--name=value"


@dataclass(slots=True)
class DrawArgs:
    """What the user asked for, before validation: the prompt and each given option's raw value."""

    prompt: str
    options: dict[str, OptionValue] = field(default_factory=dict)

    def merge(self, typed: dict[str, OptionValue | None]) -> DrawArgs:
        """Add options given another way (Discord's typed options). Giving one twice is an error."""
        for name, value in typed.items():
            if value is None:
                continue
            if name in self.options:
                raise DrawError("duplicate_option", option=name)
            self.options[name] = value
        return self


def strip_command(text: str) -> str:
    """Remove a leading ``/draw`` or ``/draw@SomeBot``."""
    return _COMMAND_PREFIX.sub("", text, count=1)


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    i = 0
    while (word := _WORD.search(text, i)) is not None:
        i = word.start()
        if text[i] in QUOTES:
            value, i = _read_quoted(text, i)
            tokens.append(Token("quoted", value))
            continue
        match = _OPTION.match(text, i)
        if match is None:
            tokens.append(Token("word", word.group()))
            i = word.end()
            continue
        i = match.end()
        inline: Token | None = None
        if match.group("eq") and (attached := _WORD.match(text, i)) is not None:  # "--n=2", not "--n= 2"
            if text[i] in QUOTES:
                value, i = _read_quoted(text, i)
                inline = Token("quoted", value)
            else:
                inline, i = Token("word", attached.group()), attached.end()
        tokens.append(Token("option", match.group("name"), inline))
    return tokens


def _read_quoted(text: str, start: int) -> tuple[str, int]:
    """Read a quoted group starting at ``text[start]`` (the opening quote); return its value and the end."""
    opening = text[start]
    closing = QUOTES[opening]
    out: list[str] = []
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in (closing, "\\"):
            out.append(text[i + 1])
            i += 2
            continue
        if ch == closing:
            return "".join(out), i + 1
        out.append(ch)
        i += 1
    raise DrawError("unclosed_quote", option=None, quote=opening, context=excerpt(text[start:]))


def parse(text: str, caps: Capabilities = SEED) -> DrawArgs:
    """Split /draw text into prompt and option values. ``caps`` supplies the enumerated values that
    decide how many words a style or sampler spans."""
    tokens = tokenize(strip_command(clean(text)))
    prompt: list[str] = []
    options: dict[str, OptionValue] = {}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token.kind != "option":
            prompt.append(token.value)
            i += 1
            continue
        name = option_name(token.value)
        if name in options:
            raise DrawError("duplicate_option", option=name)
        following = i + 1
        while following < len(tokens) and tokens[following].kind != "option":
            following += 1
        candidates = ([token.inline] if token.inline else []) + tokens[i + 1 : following]
        if not candidates:
            raise DrawError("missing_value", option=name, example=BY_NAME[name].example)
        value, used = _take_value(name, candidates, caps)
        options[name] = value
        used_from_stream = used - (1 if token.inline else 0)
        i += 1 + max(used_from_stream, 0)
    return DrawArgs(prompt=" ".join(prompt).strip(), options=options)


def option_name(typed: str) -> str:
    """Canonical option for a typed name, or ``unknown_option`` with the closest real one."""
    key = unicodedata.normalize("NFKC", typed).casefold()
    name = SPELLINGS.get(key)
    if name is None:
        suggestion, options = _suggest_option(key), [f"--{option.name}" for option in OPTIONS]
        raise DrawError("unknown_option", option=typed, value=f"--{typed}", suggestion=suggestion, options=options)
    return name


def _take_value(name: str, candidates: list[Token], caps: Capabilities) -> tuple[str, int]:
    """The raw value of option ``name`` and how many candidate tokens it uses."""
    option = BY_NAME[name]
    if option.kind == "text":
        return " ".join(t.value for t in candidates), len(candidates)
    if option.kind in ("int", "float") or candidates[0].kind == "quoted":
        return candidates[0].value, 1
    words = []
    for token in candidates[:_MAX_SPAN]:
        if token.kind != "word":
            break
        words.append(token.value)
    if option.kind == "size":
        for k in range(len(words), 0, -1):
            if _SIZE_SHAPE.match(params.size_key("".join(words[:k]))):
                return " ".join(words[:k]), k
        return words[0], 1
    for k in range(len(words), 0, -1):
        if option.lookup(caps, " ".join(words[:k])) is not None:
            return " ".join(words[:k]), k
    # Nothing matches: report the span that looks most like a real value, for a better "did you mean".
    folded = [params.fold(v) for v in option.known(caps)]
    best_k = max(
        range(1, len(words) + 1),
        key=lambda k: max(
            (difflib.SequenceMatcher(None, params.fold(" ".join(words[:k])), f).ratio() for f in folded),
            default=0.0,
        ),
    )
    return " ".join(words[:best_k]), best_k


def closest_value(value: str, choices: Iterable[str], spellings: Mapping[str, str] | None = None) -> str | None:
    """The choice most like ``value`` (folded comparison), if any is close enough to suggest.

    ``spellings`` maps other names of a choice to it (a style's Chinese name): a typo of one of those is
    suggested in the spelling the user typed in. A word of two or three Chinese characters that shares one
    with a name is already a likely slip (动画 for 动漫), so Chinese text is matched with a lower cutoff.
    """
    chosen = set(choices)
    index = {params.fold(c): c for c in chosen}
    index.update({params.fold(other): other for other, choice in (spellings or {}).items() if choice in chosen})
    folded = params.fold(value)
    cutoff = 0.5 if _CJK.search(folded) else 0.6
    scored = [(difflib.SequenceMatcher(None, folded, key).ratio(), _common_prefix(folded, key), key) for key in index]
    # Equally similar names (动画 is as close to 漫画 as to 动漫) go to the one that starts like the typed word.
    best = max(scored, default=None, key=lambda item: (item[0], item[1]))
    return index[best[2]] if best and best[0] >= cutoff else None


def _common_prefix(a: str, b: str) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))


def _suggest_option(key: str) -> str | None:
    match = difflib.get_close_matches(key, list(SPELLINGS), n=1, cutoff=0.6)
    return f"--{match[0]}" if match else None


def excerpt(text: str, limit: int = 40) -> str:
    """The start of what someone typed, short enough to echo in a message."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


# Rendering ------------------------------------------------------------------------------------------


def quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _needs_quotes(text: str) -> bool:
    if not text or text != " ".join(text.split()):
        return True
    return any(word[0] in QUOTES or _OPTION.match(word) for word in text.split(" "))


def render_value(text: str) -> str:
    return quote(text) if _needs_quotes(text) else text


def render_command(request: DrawRequest, *, include_defaults: bool = False, omit: frozenset[str] = frozenset()) -> str:
    """``/draw`` text that :func:`parse` + validation turn back into ``request``, without the options in ``omit``
    (those the service does not take: their values are the request's defaults, unused)."""
    parts = ["/draw", render_value(request.prompt)]
    for option in sorted(OPTIONS, key=lambda o: o.kind != "text"):  # free text first, right after the prompt
        value = getattr(request, option.field)
        if value is None or option.name in omit or (not include_defaults and value == option.default):
            continue
        text = as_typed(value)
        written = render_value(text) if option.kind == "text" else quote(text) if " " in text else text
        parts += [f"--{option.name}", written]
    return " ".join(parts)
