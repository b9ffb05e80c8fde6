"""The Stability REST v1 text-to-image body and artifacts, shared by Stability's own API and AWS Bedrock's
``stability.stable-diffusion-xl-v1`` (which takes the same JSON). Written once so the two cannot drift.

Image-to-image is the same body without ``width``/``height`` (the picture's size is the answer's) plus
``init_image``, ``init_image_mode=IMAGE_STRENGTH`` and ``image_strength``: how much of the picture is KEPT
(Stability: "values close to 1 will yield images very similar to the init_image"), so ``1 - strength``. Stability
takes it as a multipart form (:func:`image_to_image_form`), Bedrock as JSON with the picture in base64."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from bot.backends.base import GeneratedImage
from bot.backends.http import decode_b64, sniff_format
from bot.draw import params
from bot.draw.capabilities import Capabilities
from bot.draw.request import DrawRequest
from bot.errors import BackendError

log = logging.getLogger(__name__)

# The only dimensions SDXL v1.0 accepts on Stability and on Bedrock (API error invalid_sdxl_v1_dimensions).
# The seed's sizes other than 1024x1024 are not among them, and resizing a request behind the user's back
# would be a silent substitution, so SDXL backends offer exactly these.
SDXL_SIZES: tuple[str, ...] = (
    "1024x1024",
    "1152x896",
    "1216x832",
    "1344x768",
    "1536x640",
    "640x1536",
    "768x1344",
    "832x1216",
    "896x1152",
)

# Our style -> Stability style_preset. "Base" is the model without a preset, so it sends none.
STYLE_PRESETS: Mapping[str, str | None] = {
    "Base": None,
    "3D Model": "3d-model",
    "Analog Film": "analog-film",
    "Anime": "anime",
    "Cinematic": "cinematic",
    "Comic Book": "comic-book",
    "Craft Clay": "modeling-compound",
    "Digital Art": "digital-art",
    "Enhance": "enhance",
    "Fantasy Art": "fantasy-art",
    "Isometric": "isometric",
    "Line Art": "line-art",
    "Lowpoly": "low-poly",
    "Neonpunk": "neon-punk",
    "Origami": "origami",
    "Photographic": "photographic",
    "Pixel Art": "pixel-art",
    "Texture": "tile-texture",
}

# Our sampler -> Stability sampler. Stability has no scheduler option, so the "Karras" variants (a different
# noise schedule) have no equivalent, nor do the SDE samplers; they are not offered. Stability's DDIM, DDPM
# and DPM++ 2S a, which the seed does not list, are offered under their A1111 names.
SAMPLERS: Mapping[str, str] = {
    "Euler": "K_EULER",
    "Euler a": "K_EULER_ANCESTRAL",
    "Heun": "K_HEUN",
    "DPM2": "K_DPM_2",
    "DPM2 a": "K_DPM_2_ANCESTRAL",
    "LMS": "K_LMS",
    "DPM++ 2M": "K_DPMPP_2M",
    "DPM++ 2S a": "K_DPMPP_2S_ANCESTRAL",
    "DDIM": "DDIM",
    "DDPM": "DDPM",
}

# --strength when none is typed: v1's documented image_strength default 0.35 (the picture kept), as our strength.
DEFAULT_STRENGTH = 0.65
CFG_RANGE = (0.0, 35.0)  # Stability's own bounds; wider than the seed's 0-30
PROMPT_MAX = 2000  # per text_prompts entry
SEED_MODULUS = params.SEED_RANGE[1] + 1


def v1_sizes(engine: str) -> tuple[str, ...]:
    """Sizes an engine accepts: the SDXL list for SDXL engines; for the older ones, the seed's sizes that are
    multiples of 64 between 512x512 and 1024x1024 pixels (Stability's rule for non-SDXL v1 engines)."""
    if "xl-1024" in engine:
        return SDXL_SIZES
    out = []
    for size in params.SIZES:
        width, height = (int(part) for part in size.split("x"))
        if width % 64 == 0 and height % 64 == 0 and 262144 <= width * height <= 1048576:
            out.append(size)
    return tuple(out)


def capabilities(
    backend: str, sizes: tuple[str, ...], *, max_n: int = params.N_RANGE[1], image_to_image: bool = True
) -> Capabilities:
    return Capabilities(
        backend=backend,
        sizes=sizes,
        samplers=tuple(SAMPLERS),
        styles=tuple(STYLE_PRESETS),
        max_n=max_n,
        # Steps stay at the seed's 10-50 on every backend: past 50 SDXL gains little while time and cost grow.
        steps=params.STEPS_RANGE,
        cfg=CFG_RANGE,
        prompt_max=PROMPT_MAX,
        negative_max=PROMPT_MAX,
        image_to_image=image_to_image,
        strength=DEFAULT_STRENGTH,
    )


def body(request: DrawRequest, *, seed: int, samples: int) -> dict[str, Any]:
    """The v1 text-to-image JSON for ``request``. Raises ``KeyError`` for an unmapped style or sampler, which
    validation against :func:`capabilities` rules out."""
    prompts: list[dict[str, Any]] = [{"text": request.prompt, "weight": 1.0}]
    if request.negative_prompt:
        prompts.append({"text": request.negative_prompt, "weight": -1.0})
    out: dict[str, Any] = {
        "text_prompts": prompts,
        "cfg_scale": request.cfg_scale,
        "width": request.width,
        "height": request.height,
        "samples": samples,
        "steps": request.steps,
        "seed": seed % SEED_MODULUS,
        "sampler": SAMPLERS[request.sampler_index],
    }
    preset = STYLE_PRESETS[request.style]
    if preset is not None:
        out["style_preset"] = preset
    return out


def image_strength(request: DrawRequest) -> float:
    """v1's ``image_strength`` for ``request``: how much of the picture is kept, where our strength is how far
    the drawing moves from it."""
    strength = request.strength if request.strength is not None else DEFAULT_STRENGTH
    return round(1.0 - strength, 6)


def image_to_image_body(request: DrawRequest, *, seed: int, samples: int, init_image: str) -> dict[str, Any]:
    """Bedrock's SDXL image-to-image JSON: the text-to-image body without a size, with the picture
    (``init_image``, base64) and how much of it is kept."""
    out = body(request, seed=seed, samples=samples)
    del out["width"], out["height"]
    out.update(init_image=init_image, init_image_mode="IMAGE_STRENGTH", image_strength=image_strength(request))
    return out


def image_to_image_form(request: DrawRequest, *, seed: int, samples: int) -> list[tuple[str, str]]:
    """Stability v1's image-to-image form fields (the picture goes as the ``init_image`` file part):
    ``text_prompts[i][text]``/``[weight]`` as the spec spells arrays in a form, then the text-to-image body's
    other values, without a size."""
    values = body(request, seed=seed, samples=samples)
    out: list[tuple[str, str]] = []
    for index, prompt in enumerate(values.pop("text_prompts")):
        out += [
            (f"text_prompts[{index}][text]", prompt["text"]),
            (f"text_prompts[{index}][weight]", str(prompt["weight"])),
        ]
    del values["width"], values["height"]
    values.update(init_image_mode="IMAGE_STRENGTH", image_strength=image_strength(request))
    out += [(name, str(value)) for name, value in values.items()]
    return out


def artifacts(data: Any, request: DrawRequest, provider: str) -> list[GeneratedImage]:
    """Images from ``{"artifacts": [{"base64", "seed", "finishReason"}]}``.

    ``CONTENT_FILTERED`` artifacts are kept, marked ``filtered`` (the caller turns an all-filtered result into
    the ``content_filtered`` outcome); ``ERROR`` artifacts are dropped, and an answer with none left fails.
    """
    items = data.get("artifacts") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        raise BackendError("backend_unavailable", provider=provider, reason="no_artifacts")
    out = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("base64"), str | memoryview):
            raise BackendError("backend_bad_image", provider=provider, reason="artifact")
        reason = item.get("finishReason", "SUCCESS")
        if reason == "ERROR":
            log.warning("%s: an artifact finished with ERROR; dropped", provider)
            continue
        raw = decode_b64(item["base64"], provider)
        seed = item.get("seed")
        out.append(
            GeneratedImage(
                raw,
                sniff_format(raw),
                request.width,
                request.height,
                seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
                filtered=reason == "CONTENT_FILTERED",
            )
        )
    if not out:
        raise BackendError("backend_unavailable", provider=provider, provider_code="ERROR", reason="artifact_error")
    return out
