"""Stability's current models, as both Stability's REST v2beta and AWS Bedrock serve them (SD3.5, Stable Image
Core and Ultra): one picture per call, an aspect ratio instead of a size, no steps or sampler. The fields and
each model's options live here once, so the two services cannot drift. So does what both do with an upscaler's
answer (:func:`resized`: exactly twice the picture's sides) and the limits of Stability's upscalers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.backends.sdxl_v1 import STYLE_PRESETS
from bot.draw import params
from bot.draw.capabilities import Capabilities
from bot.draw.request import DrawRequest
from bot.draw.shape import ASPECT_RATIOS, nearest_ratio
from bot.errors import BackendError

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
    # Draws from a picture: ``image`` and ``strength``, no ``aspect_ratio`` (SD3.5: ``mode=image-to-image``).
    image_to_image: bool = False


# STABILITY_MODEL -> the v2beta endpoint and the model field (sd3 only).
# Core draws from text only; Ultra takes ``image`` with ``strength`` (both or neither); sd3 ``mode=image-to-image``.
V2_MODELS: Mapping[str, tuple[str, Model]] = {
    "core": ("core", Model()),
    "ultra": ("ultra", Model(image_to_image=True)),
    "sd3.5-large": ("sd3", Model(cfg=(1.0, 10.0), image_to_image=True)),
    "sd3.5-medium": ("sd3", Model(cfg=(1.0, 10.0), image_to_image=True)),
    # The distilled models run at CFG 1 and ignore the negative prompt: offering either would be a lie.
    "sd3.5-large-turbo": ("sd3", Model(negative=False, image_to_image=True)),
    "sd3.5-flash": ("sd3", Model(negative=False, image_to_image=True)),
}

# Bedrock model id (without an inference profile's "us." prefix) -> what it takes. Bedrock's pages list
# no style_preset and no cfg_scale for these models. Only SD3.5 Large documents image-to-image there (Core's
# page: text-to-image only; Ultra v1:1's image-to-image is not documented on Bedrock, so it is not offered).
BEDROCK_MODELS: Mapping[str, Model] = {
    "stability.sd3-5-large-v1:0": Model(styles=False, image_to_image=True),
    "stability.stable-image-core-v1:1": Model(styles=False),
    "stability.stable-image-ultra-v1:1": Model(styles=False),
}

# Stability's upscalers (v2beta ``/v2beta/stable-image/upscale/<kind>``, Bedrock's Image Services): the pictures
# each takes. Fast: sides 32-1536 px, 1,024-1,048,576 pixels, answers 4x. Conservative: sides >= 64 px,
# 4,096-9,437,184 pixels, aspect ratio within 1:2.5-2.5:1, answers about 4 megapixels.
FAST = "fast"
CONSERVATIVE = "conservative"


@dataclass(frozen=True, slots=True)
class UpscaleLimits:
    min_side: int
    max_side: int | None
    min_pixels: int
    max_pixels: int
    max_aspect: float | None  # the longer side over the shorter, at most


UPSCALE_LIMITS: Mapping[str, UpscaleLimits] = {
    FAST: UpscaleLimits(32, 1536, 1024, 1_048_576, None),
    CONSERVATIVE: UpscaleLimits(64, None, 4096, 9_437_184, 2.5),
}


def capabilities(backend: str, model: Model, *, upscale: bool = False) -> Capabilities:
    """Every size is offered (each is drawn at its nearest ratio); steps and sampler are not. Drawing from a
    picture where the model can (at the default strength); the Upscale button where an upscaler is set."""
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
        image_to_image=model.image_to_image,
        upscale=upscale,
    )


def ratio(request: DrawRequest) -> str:
    """The aspect ratio ``request`` is drawn at (a picture drawn from was fitted to it by the core), which the
    pictures drawn carry as their ``ratio``."""
    return nearest_ratio(request.width, request.height, ASPECT_RATIOS)


def fields(request: DrawRequest, model: Model, *, seed: int, output_format: str = "png") -> dict[str, Any]:
    """The request's fields as both services name them (a form on v2beta, JSON on Bedrock). Drawing from a
    picture: ``strength`` instead of ``aspect_ratio`` (which both services refuse with a picture: the picture's
    shape is the answer's); the picture itself goes as each service takes it (a file part, base64)."""
    out: dict[str, Any] = {"prompt": request.prompt}
    if request.source is None:
        out["aspect_ratio"] = ratio(request)
    else:
        assert request.strength is not None, "validation sets the strength with the picture"
        out["strength"] = request.strength
    out["seed"] = seed % SEED_MODULUS
    out["output_format"] = output_format
    if request.negative_prompt and model.negative:
        out["negative_prompt"] = request.negative_prompt
    preset = STYLE_PRESETS.get(request.style) if model.styles else None
    if preset is not None:
        out["style_preset"] = preset
    if model.cfg is not None:
        out["cfg_scale"] = request.cfg_scale
    return out


def upscale_fields(request: DrawRequest, kind: str, *, seed: int, output_format: str = "png") -> dict[str, Any]:
    """An upscaler's fields besides the picture: fast takes only the format; conservative the prompt (required),
    the negative prompt and the seed (its creativity stays at the service's default)."""
    out: dict[str, Any] = {"output_format": output_format}
    if kind == CONSERVATIVE:
        out["prompt"] = request.prompt
        if request.negative_prompt:
            out["negative_prompt"] = request.negative_prompt
        out["seed"] = seed % SEED_MODULUS
    return out


def upscale_refusal(kind: str, width: int, height: int, *, provider: str, setting: str) -> BackendError | None:
    """Why the ``kind`` upscaler will not take a ``width`` x ``height`` picture (its documented limits), before
    anything is sent: ``backend_invalid_request`` with the limits, the picture's size and the setting that
    chooses the upscaler, for a clear message; None when it will."""
    limits = UPSCALE_LIMITS[kind]
    sides_ok = min(width, height) >= limits.min_side and (
        limits.max_side is None or max(width, height) <= limits.max_side
    )
    pixels_ok = limits.min_pixels <= width * height <= limits.max_pixels
    aspect_ok = limits.max_aspect is None or max(width, height) / min(width, height) <= limits.max_aspect
    if sides_ok and pixels_ok and aspect_ok:
        return None
    too_large = limits.max_side is not None and (
        max(width, height) > limits.max_side or width * height > limits.max_pixels
    )
    return BackendError(
        "backend_invalid_request",
        provider=provider,
        # too large: what fast refuses of our pictures (Core's 1.5 megapixels); unfit: too small or too narrow
        provider_code="upscale_too_large" if too_large else "upscale_unfit",
        size=f"{width}x{height}",
        upscaler=kind,
        max_side=limits.max_side or 0,
        max_mp=f"{limits.max_pixels / 2**20:g}",
        setting=setting,
    )
