"""The block list's rules and how they match. A ``word`` rule is text: folded like the prompt, it matches as a
whole word with any spaces or separators between its letters (a Chinese one anywhere, Chinese having no spaces
between words). A ``regex`` rule is the operator's own regular expression, searched in the folded text (case
folded, full-width and homoglyphs mapped, invisible characters gone)."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Literal

from bot.errors import SdbotError
from bot.moderation.fold import Folded, fold, is_cjk

Kind = Literal["word", "regex"]
KINDS: tuple[Kind, ...] = ("word", "regex")
PATTERN_MAX = 200


@dataclass(frozen=True, slots=True)
class Rule:
    id: int
    kind: Kind
    pattern: str
    added_by: str
    created_at: float
    level: str = "all"  # "strict": only where moderation is strict (a Discord channel that is not age-restricted)


@dataclass(frozen=True, slots=True)
class Refusal:
    """A prompt the list refused: who, where, when, which rule and in which field. Shown to admins only."""

    user: str
    chat: str
    rule_id: int | None  # None once the rule was removed
    pattern: str  # the rule as it was then
    field: str  # "prompt" or "negative"
    at: float


def check_pattern(kind: str, pattern: str) -> str:
    """The pattern as stored, or ``block_invalid`` saying what is wrong (empty, too long, a regex that does not
    compile, a word with nothing left once folded)."""
    pattern = pattern.strip()
    if kind not in KINDS or not pattern or len(pattern) > PATTERN_MAX:
        raise SdbotError("block_invalid", pattern=pattern[:50], max=PATTERN_MAX)
    if kind == "word" and not fold(pattern).words:
        raise SdbotError("block_invalid", pattern=pattern[:50], max=PATTERN_MAX)
    if kind == "regex":
        try:
            re.compile(pattern)
        except re.error as exc:
            raise SdbotError("block_regex", pattern=pattern[:50], reason=str(exc)) from None
    return pattern


@functools.lru_cache(maxsize=4096)
def letters(pattern: str) -> str:
    """A word rule's letters, folded, without separators: what must appear in the text with its own separators
    taken out before the rule can match at all (a substring test first spares most rules their regex)."""
    return fold(pattern).words.replace(" ", "")


@functools.lru_cache(maxsize=4096)
def compiled(kind: str, pattern: str) -> re.Pattern[str]:
    """The regular expression a rule is searched with (compiled once per rule)."""
    if kind == "regex":
        return re.compile(pattern, re.IGNORECASE)
    word = letters(pattern)
    body = r"[\W_]?".join(re.escape(ch) for ch in word)
    if is_cjk(word):
        return re.compile(body)
    return re.compile(rf"(?<![^\W_]){body}(?![^\W_])")


def first_match(rules: list[Rule], text: str, folded: Folded | None = None) -> Rule | None:
    """The first rule ``text`` breaks, or None."""
    folded = folded or fold(text)
    joined = folded.words.replace(" ", "")
    for rule in rules:
        if rule.kind == "regex":
            if compiled(rule.kind, rule.pattern).search(folded.raw):
                return rule
        elif letters(rule.pattern) in joined and compiled(rule.kind, rule.pattern).search(folded.words):
            return rule
    return None


def breaks(prompt: str, negative: str | None, rules: list[Rule], *, strict: bool = False) -> tuple[Rule, str] | None:
    """The first rule the prompt (then the negative prompt) breaks, with the field's name, or None. ``strict``
    rules count only where moderation is ``strict``."""
    applied = [rule for rule in rules if strict or rule.level != "strict"]
    for field, text in (("prompt", prompt), ("negative", negative)):
        if text:
            rule = first_match(applied, text)
            if rule is not None:
                return rule, field
    return None
