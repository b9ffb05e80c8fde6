"""Services that draw at an aspect ratio instead of a size (Stability v2beta, Bedrock's SD3.5, Core and Ultra):
which ratio a ``--size`` stands for, and how a picture was drawn when that differs from what was typed."""

from __future__ import annotations

import math
from dataclasses import dataclass

# Stability's aspect_ratio values (v2beta and Bedrock), widest first.
ASPECT_RATIOS: tuple[str, ...] = ("21:9", "16:9", "3:2", "5:4", "1:1", "4:5", "2:3", "9:16", "9:21")
# How far a picture's own ratio may be from the one asked for: services round sides to multiples of 64, which
# moves 4:5 to 896x1088 (3 %), never more than this.
RATIO_TOLERANCE = 0.06


def ratio_value(ratio: str) -> float:
    width, height = (int(part) for part in ratio.split(":"))
    return width / height


def nearest_ratio(width: int, height: int, ratios: tuple[str, ...] = ASPECT_RATIOS) -> str:
    """The ratio among ``ratios`` closest to ``width`` x ``height`` (by the logarithm, so 2:1 and 1:2 are as far
    from 1:1); the first of two as close."""
    wanted = math.log(width / height)
    return min(ratios, key=lambda ratio: abs(math.log(ratio_value(ratio)) - wanted))


def matches_ratio(width: int, height: int, ratio: str) -> bool:
    """Whether a picture of ``width`` x ``height`` is what a service asked for ``ratio`` draws."""
    return abs(width / height / ratio_value(ratio) - 1) <= RATIO_TOLERANCE


@dataclass(frozen=True, slots=True)
class Drawn:
    """What a caption must say beyond the request: the size and ratio a ratio-based service drew at, and the
    options the service did not use (a caption that showed them would claim what did not happen)."""

    size: str | None = None  # "1344x768", when the service drew another size than the request's
    ratio: str | None = None  # "16:9", the ratio it was asked for
    unused: frozenset[str] = frozenset()  # option names (steps, sampler, cfg...) the service ignores
    service: str | None = None  # the pool's member that drew it
    # What may be done with the pictures now (the buttons under them): Upscale, and Variations (drawn from one).
    upscale: bool = False
    vary: bool = False
