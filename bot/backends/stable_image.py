"""Stability's current models, as both Stability's REST v2beta and AWS Bedrock serve them (SD3.5, Stable Image
Core and Ultra): one picture per call, an aspect ratio instead of a size, no steps or sampler. The fields and
each model's options live here once, so the two services cannot drift."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.backends.sdxl_v1 import STYLE_PRESETS
from bot.draw import params
from bot.draw.capabilities import Capabilities
from bot.draw.request import DrawRequest
from bot.draw.shape import ASPECT_RATIOS, nearest_ratio

PROMPT_MAX = 10000  # Stability's limit, for the prompt and the negative prompt alike
SEED_MODULUS = 4294967295  # seeds 0-4294967294; 0 asks the service for a random one
# A finish reason of a picture the service's filter blurred (v2beta) or withheld (Bedrock: "Filter reason: ...").
FILTERED = "CONTENT_FILTERED"


@dataclass(frozen=True, slots=True)
class Model:
    """What one model takes besides the prompt and the aspect ratio."""

    styles: bool = True  # style_preset
    cfg: tuple[float, float] | None = None  # cfg_scale, in this range (SD3.5 on v2beta)
    negative: bool = True  # negative_prompt


# STABILITY_MODEL -> the v2beta endpoint and the model field (sd3 only).
V2_MODELS: Mapping[str, tuple[str, Model]] = {
    "core": ("core", Model()),
    "ultra": ("ultra", Model()),
    "sd3.5-large": ("sd3", Model(cfg=(1.0, 10.0))),
    "sd3.5-medium": ("sd3", Model(cfg=(1.0, 10.0))),
    # The distilled models run at CFG 1 and ignore the negative prompt: offering either would be a lie.
    "sd3.5-large-turbo": ("sd3", Model(negative=False)),
    "sd3.5-flash": ("sd3", Model(negative=False)),
}

# Bedrock model id (without an inference profile's "us." prefix) -> what it takes. Bedrock's pages list
# no style_preset and no cfg_scale for these models.
BEDROCK_MODELS: Mapping[str, Model] = {
    "stability.sd3-5-large-v1:0": Model(styles=False),
    "stability.stable-image-core-v1:1": Model(styles=False),
    "stability.stable-image-ultra-v1:1": Model(styles=False),
}


def capabilities(backend: str, model: Model) -> Capabilities:
    """Every size is offered (each is drawn at its nearest ratio); steps and sampler are not."""
    unsupported = {"steps", "sampler"} | ({"cfg"} if model.cfg is None else set())
    if not model.styles:
        unsupported.add("style")
    return Capabilities(
        backend=backend,
        sizes=params.SIZES,
        samplers=(),
        styles=tuple(STYLE_PRESETS) if model.styles else (params.DEFAULT_STYLE,),
        cfg=model.cfg or params.CFG_RANGE,
        negative_prompt=model.negative,
        prompt_max=min(PROMPT_MAX, params.PROMPT_MAX),
        negative_max=min(PROMPT_MAX, params.NEGATIVE_MAX),
        aspect_ratios=ASPECT_RATIOS,
        unsupported=frozenset(unsupported),
    )


def fields(request: DrawRequest, model: Model, *, seed: int, output_format: str = "png") -> dict[str, Any]:
    """The request's fields as both services name them (a form on v2beta, JSON on Bedrock)."""
    out: dict[str, Any] = {
        "prompt": request.prompt,
        "aspect_ratio": nearest_ratio(request.width, request.height),
        "seed": seed % SEED_MODULUS,
        "output_format": output_format,
    }
    if request.negative_prompt and model.negative:
        out["negative_prompt"] = request.negative_prompt
    preset = STYLE_PRESETS.get(request.style) if model.styles else None
    if preset is not None:
        out["style_preset"] = preset
    if model.cfg is not None:
        out["cfg_scale"] = request.cfg_scale
    return out
