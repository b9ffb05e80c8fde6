"""The /draw options, declared once: the grammar, validation, the request's /draw text, captions, /help and
Discord's slash command all read :data:`OPTIONS`."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from bot.draw import params
from bot.draw.capabilities import Capabilities
from bot.draw.request import DrawRequest

Kind = Literal["choice", "size", "int", "float", "text"]
OptionValue = str | int | float

_DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(DrawRequest)}


@dataclass(frozen=True, slots=True, eq=False)
class Option:
    """One option. Its default is its DrawRequest field's; what a backend accepts of it comes from that
    backend's Capabilities; what it does, in words, is the catalog message ``option.<name>``."""

    name: str  # --name, its key in DrawArgs, its name on Discord
    field: str  # the DrawRequest field it sets
    kind: Kind  # how many words its value takes and how it is checked
    zh: str  # its Chinese name: another spelling of --name, and its name on Discord in Chinese
    example: str  # shown when its value is missing
    aliases: tuple[str, ...] = ()  # other spellings of --name
    bounds: Callable[[Capabilities], tuple[float, float]] | None = None  # int, float: the range
    offered: Callable[[Capabilities], tuple[str, ...]] | None = None  # choice, size: what this backend offers
    values: tuple[str, ...] = ()  # choice: what some backend offers (the others are "unknown", not "unsupported")
    names: Mapping[str, str] = dataclasses.field(default_factory=dict)  # choice: Chinese names, typed or shown
    spellings: Mapping[str, str] = dataclasses.field(default_factory=dict)  # choice: other names of values
    requires: Callable[[Capabilities], bool] = lambda caps: True  # what a backend must have to take it
    length: Callable[[Capabilities], int] | None = None  # text: the longest accepted
    # The backend's value when none is given and the field stays None until then (--strength: set with a picture).
    implied: Callable[[Capabilities], OptionValue] | None = None

    @property
    def default(self) -> OptionValue | None:
        return _DEFAULTS[self.field]

    def supported(self, caps: Capabilities) -> bool:
        """Whether the backend takes this option at all (a service that draws without steps does not)."""
        return self.name not in caps.unsupported and self.requires(caps)

    def fallback(self, caps: Capabilities) -> OptionValue | None:
        """The value when none is given: the default, unless this backend does not offer it (then its first)."""
        if self.default is None:  # no value is a choice of its own (--model: whichever service is free)
            return None
        offered = self.choices(caps) if self.offered else ()
        return offered[0] if offered and self.default not in offered else self.default

    def range(self, caps: Capabilities) -> tuple[float, float]:
        assert self.bounds is not None
        return self.bounds(caps)

    def choices(self, caps: Capabilities) -> tuple[str, ...]:
        assert self.offered is not None
        return self.offered(caps)

    def lookup(self, caps: Capabilities, typed: str) -> str | None:
        """The value any spelling of it stands for (any case, its Chinese name, another API's name), or None."""
        return _index(self, self.choices(caps)).get(params.fold(typed))

    def known(self, caps: Capabilities) -> tuple[str, ...]:
        return tuple(dict.fromkeys(_index(self, self.choices(caps)).values()))

    def label(self, lang: str, value: OptionValue, *, short: bool = False) -> str:
        """``value`` as people read it: ``Anime（动漫）`` in Chinese (``动漫``, ``short``), numbers as typed."""
        native = self.names.get(str(value)) if lang == "zh" else None
        if not native:
            return as_typed(value)
        return native if short else f"{value}（{native}）"


def as_typed(value: OptionValue) -> str:
    """A value as it is typed: ``5`` and ``7.5`` for the numbers 5.0 and 7.5."""
    return repr(float(value)).removesuffix(".0") if isinstance(value, float) else str(value)


@functools.lru_cache(maxsize=64)
def _index(option: Option, offered: tuple[str, ...]) -> dict[str, str]:
    """Folded spelling -> value, built once per backend's offer rather than for every word parsed."""
    index = {params.fold(value): value for value in (*option.values, *offered)}
    others = {**option.spellings, **{native: value for value, native in option.names.items()}}
    for other, value in others.items():
        index.setdefault(params.fold(other), value)
    return index


def shown(request: DrawRequest, lang: str) -> dict[str, str | None]:
    """Each option's value in ``request`` as people read it, by option name: the placeholders of a caption."""
    return {o.name: None if (v := getattr(request, o.field)) is None else o.label(lang, v) for o in OPTIONS}


OPTIONS: tuple[Option, ...] = (
    Option(
        "style",
        "style",
        "choice",
        zh="风格",
        example="--style Anime",
        offered=lambda c: c.styles,
        values=tuple(params.STYLES),
        names=params.STYLES,
        spellings=params.STYLE_ALIASES,
    ),
    Option("size", "size", "size", zh="尺寸", example="--size 768x1024", offered=lambda c: c.sizes),
    Option("n", "n", "int", zh="数量", example="--n 2", bounds=lambda c: (1, c.max_n)),
    Option("steps", "steps", "int", zh="步数", example="--steps 30", bounds=lambda c: c.steps),
    Option(
        "sampler",
        "sampler_index",
        "choice",
        zh="采样器",
        example='--sampler "DPM++ 2M Karras"',
        aliases=("sampler-index", "sampler_index"),
        offered=lambda c: c.samplers,
        values=params.SAMPLERS,
    ),
    Option(
        "seed",
        "seed",
        "int",
        zh="种子",
        example="--seed 42",
        bounds=lambda c: params.SEED_RANGE,
        requires=lambda c: c.seed,
    ),
    Option(
        "cfg",
        "cfg_scale",
        "float",
        zh="相关性",
        example="--cfg 7.5",
        aliases=("cfg-scale", "cfg_scale"),
        bounds=lambda c: c.cfg,
    ),
    Option(
        "negative",
        "negative_prompt",
        "text",
        zh="反向描述",
        example="--negative blurry, low quality",
        aliases=("negative-prompt", "negative_prompt", "neg", "no"),
        requires=lambda c: c.negative_prompt,
        length=lambda c: c.negative_max,
    ),
    Option(
        "strength",
        "strength",
        "float",
        zh="强度",
        example="--strength 0.6",
        aliases=("denoise", "denoising-strength"),
        bounds=lambda c: params.STRENGTH_RANGE,
        requires=lambda c: c.image_to_image,
        implied=lambda c: c.strength,
    ),
    Option(
        "model",
        "model",
        "choice",
        zh="模型",
        example="--model gpu1",
        offered=lambda c: c.models,
        requires=lambda c: bool(c.models),
    ),
)
BY_NAME: dict[str, Option] = {option.name: option for option in OPTIONS}
# Every spelling of every option, folded (NFKC, case-folded) -> canonical option name.
SPELLINGS: dict[str, str] = {s.casefold(): o.name for o in OPTIONS for s in (o.name, o.zh, *o.aliases)}
