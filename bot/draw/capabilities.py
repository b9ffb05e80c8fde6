"""What a backend accepts. The core validates every request against the active backend's capabilities
before anything is sent, so users learn "this service offers these sizes" instead of a provider error."""

from __future__ import annotations

from dataclasses import dataclass

from bot.draw import params


@dataclass(frozen=True)
class Capabilities:
    """A backend's accepted values, which the /draw options' rows read. ``sizes``/``samplers``/``styles`` hold our
    canonical spellings (the seed document's, or the backend's own for values the seed does not know, e.g. an
    A1111 sampler)."""

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
    # A service that draws at an aspect ratio (Stability v2beta, Bedrock's SD3.5): each size offered is drawn
    # at the nearest of these, and the caption says which (see bot.draw.shape).
    aspect_ratios: tuple[str, ...] = ()
    unsupported: frozenset[str] = frozenset()  # option names the service does not take (steps, sampler, cfg)
    models: tuple[str, ...] = ()  # a pool's services, which --model picks from (bot.backends.pool)
    # Drawing from a picture (image-to-image): whether the service can, and its default --strength.
    image_to_image: bool = False
    strength: float = 0.6
    upscale: bool = False  # whether it can draw a picture again at twice its sides (the Upscale button)


# The seed document's own capabilities: what the placeholder backend and Qianfan accept.
SEED = Capabilities(backend="seed")
