"""Raw /draw arguments -> a :class:`DrawRequest` the active backend accepts, or a :class:`DrawError`."""

from __future__ import annotations

import math
import re
import unicodedata

from bot.draw import params
from bot.draw.capabilities import SEED, Capabilities
from bot.draw.grammar import DrawArgs, OptionValue, closest_value, parse
from bot.draw.options import OPTIONS, Option
from bot.draw.request import DrawRequest
from bot.draw.sanitize import blank, clean
from bot.errors import DrawError

_INT = re.compile(r"^[+-]?\d+$")
_FLOAT = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?$", re.IGNORECASE)
_MAX_DIGITS = 24  # longer digit strings are out of range anyway; int() would refuse past 4300


def parse_request(text: str, caps: Capabilities = SEED) -> DrawRequest:
    """The whole path from what a user typed to a request ``caps``' backend accepts."""
    return validate(parse(text, caps), caps)


def validate(args: DrawArgs, caps: Capabilities = SEED) -> DrawRequest:
    # Discord's typed options arrive here without passing the grammar: clean them the same way.
    opts = {name: clean(value) if isinstance(value, str) else value for name, value in args.options.items()}
    prompt = clean(args.prompt).strip()
    if blank(prompt):  # nothing visible: zero-width characters alone are no prompt
        raise DrawError("empty_prompt", option="prompt")
    if len(prompt) > caps.prompt_max:
        raise DrawError("prompt_too_long", option="prompt", length=len(prompt), max=caps.prompt_max)

    values: dict[str, object] = {}
    for option in OPTIONS:
        values[option.field] = _value(option, opts.get(option.name), caps)
    return DrawRequest(prompt=prompt, **values)  # type: ignore[arg-type]


def _value(option: Option, value: OptionValue | None, caps: Capabilities) -> object:
    """The option's checked value (its default when not given), or a DrawError naming it."""
    if value is not None and not option.supported(caps):
        raise DrawError("unsupported_option", option=option.name, backend=caps.backend)
    if option.kind == "text":
        return None if value is None else _text(option, value, caps)
    if option.kind == "size":
        return _size(value, caps)
    if option.kind == "choice":
        return _choice(option, value, caps)
    value = option.default if value is None else value
    if value is None:
        return None
    if option.kind == "int":
        low, high = option.range(caps)
        return _integer(option.name, value, (int(low), int(high)))  # type: ignore[arg-type]
    return _number(option.name, value, option.range(caps))  # type: ignore[arg-type]


def _text(option: Option, value: OptionValue, caps: Capabilities) -> str:
    text = str(value).strip()
    if blank(text):
        raise DrawError("missing_value", option=option.name, example=option.example)
    assert option.length is not None
    if len(text) > option.length(caps):
        raise DrawError(f"{option.name}_too_long", option=option.name, length=len(text), max=option.length(caps))
    return text


def _display(value: OptionValue) -> str:
    text = str(value)
    return text if len(text) <= 40 else text[:39] + "…"


def _integer(option: str, value: OptionValue, bounds: tuple[int, int]) -> int:
    low, high = bounds
    if isinstance(value, (bool, float)):
        raise DrawError("invalid_number", option=option, value=_display(value), min=low, max=high)
    if isinstance(value, str):
        text = unicodedata.normalize("NFKC", value).strip()
        if not _INT.match(text):
            raise DrawError("invalid_number", option=option, value=_display(value), min=low, max=high)
        if len(text.lstrip("+-0")) > _MAX_DIGITS:
            raise DrawError("out_of_range", option=option, value=_display(value), min=low, max=high)
        value = int(text)
    if not low <= value <= high:
        raise DrawError("out_of_range", option=option, value=_display(value), min=low, max=high)
    return value


def _number(option: str, value: OptionValue, bounds: tuple[float, float]) -> float:
    low, high = bounds
    shown = {"min": _fmt(low), "max": _fmt(high)}
    if isinstance(value, bool):
        raise DrawError("invalid_number", option=option, value=_display(value), **shown)
    if isinstance(value, str):
        text = unicodedata.normalize("NFKC", value).strip()
        if not _FLOAT.match(text):
            raise DrawError("invalid_number", option=option, value=_display(value), **shown)
        number = float(text)
    else:
        number = float(value)
    if math.isnan(number) or not low <= number <= high:
        raise DrawError("out_of_range", option=option, value=_display(value), **shown)
    return number


def _fmt(number: float) -> str:
    return repr(float(number)).removesuffix(".0")


def _size(value: OptionValue | None, caps: Capabilities) -> str:
    if value is None:
        if params.DEFAULT_SIZE in caps.sizes:
            return params.DEFAULT_SIZE
        return caps.sizes[0]
    key = params.size_key(str(value))
    if key not in caps.sizes:
        raise DrawError("unsupported_size", option="size", value=_display(value), allowed=caps.sizes)
    return key


def _choice(option: Option, value: OptionValue | None, caps: Capabilities) -> str:
    assert option.choices is not None and option.lookup is not None and option.known is not None
    supported, name = option.choices(caps), option.name
    if value is None:
        return option.default if option.default in supported else supported[0]  # type: ignore[return-value]
    canonical = option.lookup(caps, str(value))
    if canonical is None:
        spellings = {zh: style for style, zh in params.STYLES.items()} if name == "style" else None
        known = option.known(caps)
        raise DrawError(
            f"unknown_{name}",
            option=name,
            value=_display(value),
            suggestion=closest_value(str(value), supported, spellings) or closest_value(str(value), known, spellings),
            allowed=supported,
        )
    if canonical not in supported:
        raise DrawError(f"unsupported_{name}", option=name, value=canonical, backend=caps.backend, allowed=supported)
    return canonical
