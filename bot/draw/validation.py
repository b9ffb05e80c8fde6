"""Raw /draw arguments -> a :class:`DrawRequest` the active backend accepts, or a :class:`DrawError`."""

from __future__ import annotations

import math
import re
import unicodedata

from bot.draw import params
from bot.draw.capabilities import SEED, Capabilities
from bot.draw.grammar import DrawArgs, OptionValue, closest_value, excerpt, parse
from bot.draw.options import OPTIONS, Option, as_typed
from bot.draw.picture import size_for
from bot.draw.request import DrawRequest
from bot.draw.sanitize import blank, clean
from bot.errors import DrawError

_INT = re.compile(r"^[+-]?\d+$")
_FLOAT = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?$", re.IGNORECASE)
_MAX_DIGITS = 24  # longer whole numbers are out of every range


def parse_request(text: str, caps: Capabilities = SEED, *, picture: tuple[int, int] | None = None) -> DrawRequest:
    """The whole path from what a user typed to a request ``caps``' backend accepts."""
    return validate(parse(text, caps), caps, picture=picture)


def validate(args: DrawArgs, caps: Capabilities = SEED, *, picture: tuple[int, int] | None = None) -> DrawRequest:
    """``picture``: the width and height of the picture it draws from, if any: its shape is the size's default, and
    the service's default strength applies (the caller attaches the :class:`~bot.draw.request.Source`)."""
    # Discord's typed options arrive here without passing the grammar: clean them the same way.
    opts = {name: clean(value) if isinstance(value, str) else value for name, value in args.options.items()}
    prompt = clean(args.prompt).strip()
    if blank(prompt):  # nothing visible: zero-width characters alone are no prompt
        raise DrawError("empty_prompt", option="prompt")
    if len(prompt) > caps.prompt_max:
        raise DrawError("prompt_too_long", option="prompt", length=len(prompt), max=caps.prompt_max)

    if picture is not None and not caps.image_to_image:
        raise DrawError("picture_unsupported", option="image", backend=caps.backend)
    if picture is None and opts.get("strength") is not None and caps.image_to_image:
        raise DrawError("strength_needs_picture", option="strength")
    values = {option.field: _value(option, opts.get(option.name), caps) for option in OPTIONS}
    if picture is not None:
        if opts.get("size") is None:
            values["size"] = size_for(*picture, caps.sizes, str(values["size"]))
        if values["strength"] is None:
            values["strength"] = caps.strength
    return DrawRequest(prompt=prompt, **values)  # type: ignore[arg-type]


def _value(option: Option, value: OptionValue | None, caps: Capabilities) -> object:
    """The option's checked value (its default when not given), or a DrawError naming it."""
    if value is None:
        value = option.fallback(caps)
        if value is None or not option.supported(caps):
            return value  # kept as the request's own default: the service does not use it
    elif not option.supported(caps):
        raise DrawError("unsupported_option", option=option.name, backend=caps.backend)
    if option.kind == "text":
        return _text(option, value, caps)
    if option.kind == "size":
        return _size(value, caps)
    if option.kind == "choice":
        return _choice(option, value, caps)
    return _number(option, value, caps)


def _text(option: Option, value: OptionValue, caps: Capabilities) -> str:
    text = str(value).strip()
    if blank(text):
        raise DrawError("missing_value", option=option.name, example=option.example)
    assert option.length is not None
    if len(text) > option.length(caps):
        raise DrawError(f"{option.name}_too_long", option=option.name, length=len(text), max=option.length(caps))
    return text


def _number(option: Option, value: OptionValue, caps: Capabilities) -> int | float:
    """A whole number (``int`` options) or any number, typed or given as one (Discord), in this backend's range."""
    low, high = option.range(caps)
    whole = option.kind == "int"
    error = {"option": option.name, "value": excerpt(str(value)), "min": as_typed(low), "max": as_typed(high)}
    if isinstance(value, str):
        value = unicodedata.normalize("NFKC", value).strip()
        if not (_INT if whole else _FLOAT).match(value):
            raise DrawError("invalid_number", **error)
        if whole and len(value.lstrip("+-0")) > _MAX_DIGITS:  # int() would refuse past 4300 digits
            raise DrawError("out_of_range", **error)
    elif isinstance(value, bool) or (whole and isinstance(value, float)):
        raise DrawError("invalid_number", **error)
    number = int(value) if whole else float(value)
    if math.isnan(number) or not low <= number <= high:
        raise DrawError("out_of_range", **error)
    return number


def _size(value: OptionValue, caps: Capabilities) -> str:
    key = params.size_key(str(value))
    if key not in caps.sizes:
        raise DrawError("unsupported_size", option="size", value=excerpt(str(value)), allowed=caps.sizes)
    return key


def _choice(option: Option, value: OptionValue, caps: Capabilities) -> str:
    offered, name = option.choices(caps), option.name
    canonical = option.lookup(caps, str(value))
    if canonical is None:
        spellings = {native: value for value, native in option.names.items()}
        raise DrawError(
            f"unknown_{name}",
            option=name,
            value=excerpt(str(value)),
            suggestion=closest_value(str(value), offered, spellings)
            or closest_value(str(value), option.known(caps), spellings),
            allowed=offered,
        )
    if canonical not in offered:
        raise DrawError(f"unsupported_{name}", option=name, value=canonical, backend=caps.backend, allowed=offered)
    return canonical
