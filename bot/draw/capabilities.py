"""What a backend accepts. The core validates every request against the active backend's capabilities
before anything is sent, so users learn "this service offers these sizes" instead of a provider error."""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.draw import params


@dataclass(frozen=True)
class Capabilities:
    """A backend's accepted values. ``sizes``/``samplers``/``styles`` hold our canonical spellings (the
    seed document's, or the backend's own for values the seed does not know, e.g. an A1111 sampler)."""

    backend: str
    sizes: tuple[str, ...] = params.SIZES
    samplers: tuple[str, ...] = params.SAMPLERS
    styles: tuple[str, ...] = tuple(params.STYLES)
    max_n: int = params.N_RANGE[1]
    steps: tuple[int, int] = params.STEPS_RANGE
    cfg: tuple[float, float] = params.CFG_RANGE
    negative_prompt: bool = True
    seed: bool = True
    prompt_max: int = params.PROMPT_MAX
    negative_max: int = params.NEGATIVE_MAX
    # Values users may type that this backend cannot serve are reported as "unsupported", not "unknown".
    _style_index: dict[str, str] = field(init=False, repr=False, compare=False)
    _sampler_index: dict[str, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "_style_index", params.build_index((*params.STYLES, *self.styles), params.STYLE_ALIASES)
        )
        for style, zh in params.STYLES.items():
            self._style_index.setdefault(params.fold(zh), style)
        object.__setattr__(self, "_sampler_index", params.build_index((*params.SAMPLERS, *self.samplers)))

    def lookup_style(self, text: str) -> str | None:
        """Canonical style for any accepted spelling (English, Chinese, Stability preset), or None."""
        return self._style_index.get(params.fold(text))

    def lookup_sampler(self, text: str) -> str | None:
        return self._sampler_index.get(params.fold(text))

    @property
    def known_styles(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self._style_index.values()))

    @property
    def known_samplers(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self._sampler_index.values()))


# The seed document's own capabilities: what the placeholder backend and Qianfan accept.
SEED = Capabilities(backend="seed")
