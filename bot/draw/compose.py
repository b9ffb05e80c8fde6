"""What a /draw asks for, from everything the user gave: its text, options given apart from the text
(Discord's typed slash options) and the message it answers (a Telegram reply). Both platforms' rules, once."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

from bot.draw import grammar
from bot.draw.capabilities import Capabilities
from bot.draw.grammar import DrawArgs, OptionValue
from bot.errors import SdbotError


def compose(
    text: str,
    caps: Capabilities,
    *,
    typed: Mapping[str, OptionValue | None] | None = None,
    replied: str | None = None,
) -> DrawArgs:
    """``text`` parsed, with ``typed`` options added (one the text repeats is ``duplicate_option``). When the
    text has no prompt and answers a message (``replied``), that message is the prompt; a replied ``/draw``
    command lends its options too, and the user's own win."""
    own = grammar.parse(text, caps).merge(dict(typed or {}))
    source = (replied or "").strip()
    if own.prompt or not source:
        return own
    # A /draw line (someone's command, or the Edit button's message) is a whole request to start from.
    drawn = [line.strip() for line in source.splitlines() if line.startswith("/") and split_command(line)[0] == "draw"]
    base = DrawArgs(split_command(source)[1] if source.startswith("/") else source)
    if drawn:
        base = DrawArgs(split_command(drawn[0])[1])
        with contextlib.suppress(SdbotError):  # a broken command's words are still a prompt
            base = grammar.parse(drawn[0], caps)
    return DrawArgs(base.prompt, {**base.options, **own.options})


def split_command(text: str) -> tuple[str, str]:
    """``/quota@SomeBot  rest`` -> ``("quota", "rest")``."""
    head, _, rest = text.strip().partition(" ")
    return head.lstrip("/").split("@", 1)[0].casefold(), rest.strip()
