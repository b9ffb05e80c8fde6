"""A chat's defaults for /draw (its admins' ``/settings``): style, size, steps and negative prompt, applied under the
user's own options. A default the service no longer takes (the operator changed services) is left out rather
than refused: the user did not type it."""

from __future__ import annotations

from collections.abc import Mapping

from bot.draw.capabilities import Capabilities
from bot.draw.grammar import DrawArgs
from bot.draw.options import BY_NAME, as_typed
from bot.draw.request import DrawRequest
from bot.draw.validation import validate
from bot.errors import DrawError

SETTABLE: tuple[str, ...] = ("style", "size", "steps", "negative")  # option names a chat may default


def apply(
    args: DrawArgs,
    defaults: Mapping[str, str],
    caps: Capabilities,
    *,
    picture: tuple[int, int] | None = None,
) -> DrawRequest:
    """``args`` validated with the chat's ``defaults`` under them (the user's own options win; a picture's shape
    wins over a default size)."""
    chosen = {
        name: value
        for name, value in defaults.items()
        if name in SETTABLE and name not in args.options and not (picture and name == "size")
    }
    while True:
        try:
            return validate(DrawArgs(args.prompt, {**chosen, **args.options}), caps, picture=picture)
        except DrawError as exc:
            if exc.option not in chosen:
                raise
            del chosen[exc.option]  # a default today's service does not take: drawn without it


def checked(name: str, value: str, caps: Capabilities) -> str:
    """``value`` as stored for the default ``name`` (its canonical spelling), or the ``DrawError`` a /draw typing it
    would get (``setting_unknown`` for a name that cannot be defaulted)."""
    if name not in SETTABLE:
        raise DrawError("setting_unknown", option=name, settings=", ".join(SETTABLE))
    option = BY_NAME[name]
    request = validate(DrawArgs("-", {name: value}), caps)
    return as_typed(getattr(request, option.field))
