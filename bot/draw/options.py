"""The /draw options, declared once: the grammar, validation, the request's /draw text, the help and Discord's
slash command all read :data:`OPTIONS`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from bot.draw import params
from bot.draw.capabilities import Capabilities

Kind = Literal["choice", "size", "int", "float", "text"]


@dataclass(frozen=True, slots=True)
class Option:
    name: str  # --name, and its key in DrawArgs
    field: str  # the DrawRequest field it sets
    kind: Kind  # how many words its value takes and how it is checked
    example: str  # shown when its value is missing
    aliases: tuple[str, ...] = ()  # other spellings of --name
    default: str | int | float | None = None  # None: absent unless given
    bounds: Callable[[Capabilities], tuple[float, float]] | None = None  # int, float: the range
    choices: Callable[[Capabilities], tuple[str, ...]] | None = None  # choice, size: what this backend offers
    lookup: Callable[[Capabilities, str], str | None] | None = None  # choice: any spelling -> canonical
    known: Callable[[Capabilities], tuple[str, ...]] | None = None  # choice: every value some backend offers
    supported: Callable[[Capabilities], bool] = lambda caps: True  # the backend can take it at all
    length: Callable[[Capabilities], int] | None = None  # text: the longest accepted

    def range(self, caps: Capabilities) -> tuple[float, float]:
        assert self.bounds is not None
        return self.bounds(caps)


OPTIONS: tuple[Option, ...] = (
    Option(
        "style",
        "style",
        "choice",
        "--style Anime",
        default=params.DEFAULT_STYLE,
        choices=lambda caps: caps.styles,
        lookup=Capabilities.lookup_style,
        known=lambda caps: caps.known_styles,
    ),
    Option("size", "size", "size", "--size 768x1024", default=params.DEFAULT_SIZE, choices=lambda caps: caps.sizes),
    Option("n", "n", "int", "--n 2", default=params.DEFAULT_N, bounds=lambda caps: (1, caps.max_n)),
    Option("steps", "steps", "int", "--steps 30", default=params.DEFAULT_STEPS, bounds=lambda caps: caps.steps),
    Option(
        "sampler",
        "sampler_index",
        "choice",
        '--sampler "DPM++ 2M Karras"',
        aliases=("sampler-index", "sampler_index"),
        default=params.DEFAULT_SAMPLER,
        choices=lambda caps: caps.samplers,
        lookup=Capabilities.lookup_sampler,
        known=lambda caps: caps.known_samplers,
    ),
    Option("seed", "seed", "int", "--seed 42", bounds=lambda caps: params.SEED_RANGE, supported=lambda c: c.seed),
    Option(
        "cfg",
        "cfg_scale",
        "float",
        "--cfg 7.5",
        aliases=("cfg-scale", "cfg_scale"),
        default=params.DEFAULT_CFG,
        bounds=lambda caps: caps.cfg,
    ),
    Option(
        "negative",
        "negative_prompt",
        "text",
        "--negative blurry, low quality",
        aliases=("negative-prompt", "negative_prompt", "neg", "no"),
        supported=lambda caps: caps.negative_prompt,
        length=lambda caps: caps.negative_max,
    ),
)
BY_NAME: dict[str, Option] = {option.name: option for option in OPTIONS}
# Every spelling of every option, folded (NFKC, case-folded) -> canonical option name.
SPELLINGS: dict[str, str] = {spelling: o.name for o in OPTIONS for spelling in (o.name, *o.aliases)}
