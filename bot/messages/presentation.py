"""How /draw is described to people, the same on every platform: what each option does (for /help and Discord's
command), the caption with the prompt and the parameters that reproduce it, and the ``/draw`` text behind the
"Edit" button."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.draw.capabilities import Capabilities
from bot.draw.grammar import render_command
from bot.draw.options import Option, as_typed, shown
from bot.draw.request import DrawRequest
from bot.draw.shape import Drawn
from bot.messages.i18n import Lang, format_list, t

if TYPE_CHECKING:
    from bot.jobs.generation import Generation


CHOICES_SHOWN = 3  # an enumeration's first values in its description; Discord lists them all


def describe(option: Option, lang: Lang, caps: Capabilities) -> str:
    """What ``option`` does and what this backend accepts of it: a line of /help, and Discord's description."""
    fallback = option.fallback(caps)
    if fallback is None and option.implied is not None:
        fallback = option.implied(caps)
    values = {"default": None if fallback is None else option.label(lang, fallback, short=True)}
    if option.bounds is not None:
        low, high = option.range(caps)
        values |= {"min": as_typed(low), "max": as_typed(high)}
    if option.offered is not None:
        offered = option.choices(caps)
        first = format_list(lang, [option.label(lang, value, short=True) for value in offered[:CHOICES_SHOWN]])
        values["choices"] = first + ("…" if len(offered) > CHOICES_SHOWN else "")
    return t(lang, f"option.{option.name}", **values)


# The parameters a caption shows, in order; each is the catalog message caption.part.<name>.
CAPTION_PARTS: tuple[str, ...] = ("seed", "style", "size", "steps", "sampler", "cfg")


def parameters_line(request: DrawRequest, lang: Lang, drawn: Drawn | None = None) -> str:
    """The parameters that reproduce the picture, without the options the service did not use, and with the size
    a ratio-based service drew at."""
    drawn = drawn or Drawn()
    values = shown(request, lang)
    if drawn.size is not None:
        values["size"] = t(lang, "caption.drawn", drawn=drawn.size, ratio=drawn.ratio, size=values["size"])
    source = request.source
    if request.task == "upscale":
        parts = [t(lang, "caption.upscaled", size=request.size)]
    else:
        parts = [t(lang, f"caption.part.{name}", **values) for name in CAPTION_PARTS if name not in drawn.unused]
    if source is not None and request.task == "draw":  # what it was drawn from, and how far from it
        key = "caption.part.picture_fitted" if source.fitted else "caption.part.picture"
        parts.append(t(lang, key, strength=values["strength"], original=source.original, size=source.size))
    if drawn.service is not None:  # a pool's member: which of the operator's services drew it
        parts.append(t(lang, "caption.part.service", service=drawn.service))
    return " · ".join(parts)


def caption(request: DrawRequest, lang: Lang, *, limit: int, drawn: Drawn | None = None) -> str:
    """Prompt, negative prompt and parameters in at most ``limit`` characters: the parameters line is kept
    whole (it is what reproduces the image); the prompt texts are cut with an ellipsis to make room."""
    params = parameters_line(request, lang, drawn)
    negative = t(lang, "caption.negative", negative=request.negative_prompt) if request.negative_prompt else ""
    budget = limit - len(params) - 1
    prompt = _cut(request.prompt, max(budget - (len(negative) + 1 if negative else 0), budget // 2))
    parts = [prompt]
    if negative:
        parts.append(_cut(negative, budget - len(prompt) - 1))
    parts.append(params)
    text = "\n".join(p for p in parts if p)
    return text if len(text) <= limit else _cut(text, limit)


def edit_command(request: DrawRequest, omit: frozenset[str] = frozenset()) -> str:
    """The whole ``/draw`` text that reproduces ``request``, seed included, for the user to copy and change; without
    the options in ``omit`` (the service's unsupported ones, which sent back would be refused)."""
    return render_command(request, include_defaults=True, omit=omit)


def _cut(text: str, limit: int) -> str:
    if limit <= 0:
        return ""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def shortfall(generation: Generation, lang: Lang) -> str | None:
    """The sentence telling a user the service returned fewer pictures than asked for (none missing: None)."""
    if not generation.missing:
        return None
    return t(
        lang,
        "job.fewer",
        count=generation.missing,
        delivered=len(generation.images),
        asked=generation.request.n,
    )
