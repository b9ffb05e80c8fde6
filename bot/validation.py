"""Raw /draw arguments -> a :class:`DrawRequest` the active backend accepts, or a :class:`DrawError`."""

from __future__ import annotations

import math
import re
import unicodedata

from bot import params
from bot.capabilities import SEED, Capabilities
from bot.errors import DrawError
from bot.grammar import EXAMPLES, DrawArgs, OptionValue, closest_value, parse
from bot.request import DrawRequest
from bot.sanitize import blank, clean

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

    negative: str | None = None
    if "negative" in opts:
        negative = str(opts["negative"]).strip()
        if blank(negative):
            raise DrawError("missing_value", option="negative", example=EXAMPLES["negative"])
        if not caps.negative_prompt:
            raise DrawError("unsupported_option", option="negative", backend=caps.backend)
        if len(negative) > caps.negative_max:
            raise DrawError("negative_too_long", option="negative", length=len(negative), max=caps.negative_max)

    seed: int | None = None
    if "seed" in opts:
        if not caps.seed:
            raise DrawError("unsupported_option", option="seed", backend=caps.backend)
        seed = _integer("seed", opts["seed"], params.SEED_RANGE)

    return DrawRequest(
        prompt=prompt,
        negative_prompt=negative,
        size=_size(opts.get("size"), caps),
        n=_integer("n", opts.get("n", params.DEFAULT_N), (1, caps.max_n)),
        steps=_integer("steps", opts.get("steps", params.DEFAULT_STEPS), caps.steps),
        sampler_index=_choice("sampler", opts.get("sampler"), caps),
        seed=seed,
        cfg_scale=_number("cfg", opts.get("cfg", params.DEFAULT_CFG), caps.cfg),
        style=_choice("style", opts.get("style"), caps),
    )


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


def _choice(option: str, value: OptionValue | None, caps: Capabilities) -> str:
    supported = caps.styles if option == "style" else caps.samplers
    if value is None:
        default = params.DEFAULT_STYLE if option == "style" else params.DEFAULT_SAMPLER
        return default if default in supported else supported[0]
    lookup = caps.lookup_style if option == "style" else caps.lookup_sampler
    canonical = lookup(str(value))
    if canonical is None:
        known = caps.known_styles if option == "style" else caps.known_samplers
        spellings = {zh: style for style, zh in params.STYLES.items()} if option == "style" else None
        raise DrawError(
            f"unknown_{option}",
            option=option,
            value=_display(value),
            suggestion=closest_value(str(value), supported, spellings) or closest_value(str(value), known, spellings),
            allowed=supported,
        )
    if canonical not in supported:
        raise DrawError(
            f"unsupported_{option}", option=option, value=canonical, backend=caps.backend, allowed=supported
        )
    return canonical
