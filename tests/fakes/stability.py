"""A fake Stability AI REST v1 API (text-to-image, balance, engines), on 127.0.0.1.

Wire format (reference: shared/reference/backends.md, seed 002, Stability's v1 OpenAPI spec):

- ``POST /v1/generation/{engine_id}/text-to-image`` with ``Authorization: Bearer KEY`` and a JSON body
  ``{"text_prompts": [{"text", "weight"}], "cfg_scale", "height", "width", "samples", "seed", "steps",
  "sampler", "style_preset", "clip_guidance_preset", "extras"}``.
  ``Accept: application/json`` (or none, or ``*/*``) -> 200 ``{"artifacts": [{"base64", "seed",
  "finishReason"}]}``; ``Accept: image/png`` -> the raw PNG with headers ``Finish-Reason`` and ``Seed``
  (only with ``samples`` 1, else 400 ``invalid_samples``). Seeds: ``seed`` 0 or absent draws one;
  artifact ``i`` has seed ``seed + i``.
- Errors are ``{"id", "name", "message"}``: 401 ``unauthorized`` (missing or wrong key), 404
  ``not_found`` (unknown engine), 400 ``bad_request`` (invalid JSON, missing or over-long prompts, values
  out of range: samples 1-10, steps 10-50 for SDXL engines (10-150 otherwise), cfg_scale 0-35, seed
  0-4294967295, unknown sampler/style/clip preset), 400 ``invalid_sdxl_v1_dimensions`` (SDXL engines
  accept only the nine sizes in ``SDXL_DIMENSIONS``), 400 ``invalid_height_or_width`` /
  ``invalid_pixel_count`` for the other engines.
- ``GET /v1/user/balance`` -> ``{"credits": float}`` (each image costs ``cost_per_image``);
  ``GET /v1/engines/list`` -> ``[{"id", "name", "description", "type"}]``.

Usage::

    async with FakeStability(api_key="sk-test") as fake:
        fake.push_status(429, name="rate_limit_exceeded", headers={"Retry-After": "1"})
        fake.push_content_filtered()
        fake.generate_calls[-1].body["text_prompts"]

Constructor: ``FakeStability(api_key="sk-test", credits=100.0, cost_per_image=0.2, engines=ENGINES)``;
``engines`` maps engine id -> name; ids containing ``"xl-1024"`` are SDXL engines.

Planned faults (FIFO, one per text-to-image request with the right key; common ones in
``tests.fakes.image_api``: ``push_delay``, ``push_disconnect``, ``push_malformed_json``,
``push_not_an_image``, ``push_bomb``, ``push_wrong_size``, ``push_response``):

- ``push_status(status, name=None, message=None, headers=None)``: the error body Stability sends, with
  ``name`` defaulting by status (400 bad_request, 401 unauthorized, 403 permission_denied, 404
  not_found, 429 rate_limit_exceeded, 500 server_error, ...).
- ``push_content_filtered(count=None)``: a 200 whose first ``count`` artifacts (all by default) have
  ``finishReason: CONTENT_FILTERED`` and a grey (blurred) image of the right size.

Recorded: ``generate_calls: list[Call]`` (text-to-image only); ``requests`` has every request.
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

from aiohttp import web

from tests.fakes.image_api import RESPONSE, Fault, ImageApiFake
from tests.fakes.images import blurred_png

CONTENT_FILTERED = "content_filtered"

SDXL_DIMENSIONS = frozenset(
    {
        (1024, 1024),
        (1152, 896),
        (1216, 832),
        (1344, 768),
        (1536, 640),
        (640, 1536),
        (768, 1344),
        (832, 1216),
        (896, 1152),
    }
)
SAMPLERS = frozenset(
    {
        "DDIM",
        "DDPM",
        "K_DPMPP_2M",
        "K_DPMPP_2S_ANCESTRAL",
        "K_DPM_2",
        "K_DPM_2_ANCESTRAL",
        "K_EULER",
        "K_EULER_ANCESTRAL",
        "K_HEUN",
        "K_LMS",
    }
)
STYLE_PRESETS = frozenset(
    {
        "3d-model",
        "analog-film",
        "anime",
        "cinematic",
        "comic-book",
        "digital-art",
        "enhance",
        "fantasy-art",
        "isometric",
        "line-art",
        "low-poly",
        "modeling-compound",
        "neon-punk",
        "origami",
        "photographic",
        "pixel-art",
        "tile-texture",
    }
)
CLIP_PRESETS = frozenset({"FAST_BLUE", "FAST_GREEN", "NONE", "SIMPLE", "SLOW", "SLOWER", "SLOWEST"})
ENGINES: dict[str, str] = {
    "stable-diffusion-xl-1024-v1-0": "Stable Diffusion XL v1.0",
    "stable-diffusion-xl-1024-v0-9": "Stable Diffusion XL v0.9",
    "stable-diffusion-v1-6": "Stable Diffusion v1.6",
}
ERROR_NAMES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "permission_denied",
    404: "not_found",
    429: "rate_limit_exceeded",
    500: "server_error",
    502: "bad_gateway",
    503: "service_unavailable",
}
ERROR_MESSAGES: dict[str, str] = {
    "bad_request": "one or more provided parameters are invalid",
    "unauthorized": "Incorrect API key provided",
    "permission_denied": "You do not have permission to access this resource",
    "not_found": "The requested resource was not found",
    "rate_limit_exceeded": "You have exceeded the rate limit of 150 requests within a 10 second period.",
    "server_error": "An unexpected server error occurred, please try again.",
}
MAX_SEED = 4294967295


class StabilityError(Exception):
    """An answer Stability would give instead of images."""

    def __init__(self, status: int, name: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.name = name
        self.message = message


def error_body(name: str, message: str) -> dict[str, str]:
    return {"id": uuid.uuid4().hex, "name": name, "message": message}


def _number(body: dict[str, Any], name: str, default: float, low: float, high: float, *, integer: bool) -> Any:
    value = body.get(name, default)
    wrong_type = isinstance(value, bool) or not isinstance(value, int if integer else (int, float))
    if wrong_type:
        kind = "an integer" if integer else "a number"
        raise StabilityError(400, "bad_request", f"{name}: must be {kind}")
    if not low <= value <= high:
        raise StabilityError(400, "bad_request", f"{name}: must be between {low:g} and {high:g}")
    return value


def check_body(
    body: Any, *, sdxl: bool = True, accept_png: bool = False, max_steps: int = 50, default_size: int = 512
) -> dict[str, Any]:
    """Validate a text-to-image body like Stability v1; return the effective parameters.

    Raises ``StabilityError``. Bedrock reuses this with its own limits (``max_steps``, ``default_size``).
    """
    if not isinstance(body, dict):
        raise StabilityError(400, "bad_request", "invalid JSON body")
    prompts = body.get("text_prompts")
    if not isinstance(prompts, list) or not prompts:
        raise StabilityError(400, "bad_request", "text_prompts: is required")
    for i, prompt in enumerate(prompts):
        if not isinstance(prompt, dict) or not isinstance(prompt.get("text"), str) or not prompt["text"]:
            raise StabilityError(400, "bad_request", f"text_prompts[{i}].text: is required")
        if len(prompt["text"]) > 2000:
            raise StabilityError(400, "bad_request", f"text_prompts[{i}].text: must be at most 2000 characters")
        weight = prompt.get("weight", 1)
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise StabilityError(400, "bad_request", f"text_prompts[{i}].weight: must be a number")
    params = {
        "samples": _number(body, "samples", 1, 1, 10, integer=True),
        "steps": _number(body, "steps", 30, 10, max_steps if sdxl else 150, integer=True),
        "cfg_scale": _number(body, "cfg_scale", 7, 0, 35, integer=False),
        "seed": _number(body, "seed", 0, 0, MAX_SEED, integer=True),
        "width": _number(body, "width", default_size, 128, 10**6, integer=True),
        "height": _number(body, "height", default_size, 128, 10**6, integer=True),
    }
    for name, allowed in (
        ("sampler", SAMPLERS),
        ("style_preset", STYLE_PRESETS),
        ("clip_guidance_preset", CLIP_PRESETS),
    ):
        value = body.get(name)
        if value is not None and value not in allowed:
            raise StabilityError(400, "bad_request", f"{name}: must be one of {', '.join(sorted(allowed))}")
    width, height = params["width"], params["height"]
    if sdxl:
        if (width, height) not in SDXL_DIMENSIONS:
            sizes = ", ".join(f"{w}x{h}" for w, h in sorted(SDXL_DIMENSIONS))
            raise StabilityError(
                400,
                "invalid_sdxl_v1_dimensions",
                f"For SDXL v0.9 and v1.0 engines, the dimensions must be one of: {sizes}; got {width}x{height}",
            )
    elif width % 64 or height % 64:
        raise StabilityError(400, "invalid_height_or_width", "height and width must be specified in increments of 64")
    elif not 262144 <= width * height <= 1048576:
        raise StabilityError(400, "invalid_pixel_count", "width * height must be between 262144 and 1048576")
    if accept_png and params["samples"] > 1:
        raise StabilityError(
            400,
            "invalid_samples",
            "Sample count may only be greater than 1 when the accept header is set to application/json",
        )
    return params


class FakeStability(ImageApiFake):
    """Stability AI REST v1 (see module doc)."""

    def __init__(
        self,
        *,
        api_key: str = "sk-test",
        credits: float = 100.0,
        cost_per_image: float = 0.2,
        engines: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.api_key = api_key
        self.credits = credits
        self.cost_per_image = cost_per_image
        self.engines = dict(ENGINES if engines is None else engines)
        self.app.router.add_post("/v1/generation/{engine_id}/text-to-image", self._text_to_image)
        self.app.router.add_get("/v1/user/balance", self._balance)
        self.app.router.add_get("/v1/engines/list", self._engines)

    def push_status(
        self,
        status: int,
        name: str | None = None,
        message: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Fault:
        name = name or ERROR_NAMES.get(status, "error")
        body = error_body(name, message or ERROR_MESSAGES.get(name, name))
        return self.push(Fault(RESPONSE, status=status, body=body, headers=dict(headers or {})))

    def push_content_filtered(self, count: int | None = None) -> Fault:
        return self.push(Fault(CONTENT_FILTERED, options={"count": count}))

    def _auth_error(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization")
        if not header:
            return web.json_response(error_body("unauthorized", "missing authorization header"), status=401)
        if header != f"Bearer {self.api_key}":
            return web.json_response(error_body("unauthorized", ERROR_MESSAGES["unauthorized"]), status=401)
        return None

    async def _balance(self, request: web.Request) -> web.StreamResponse:
        return self._auth_error(request) or web.json_response({"credits": float(self.credits)})

    async def _engines(self, request: web.Request) -> web.StreamResponse:
        denied = self._auth_error(request)
        if denied is not None:
            return denied
        engines = [
            {"id": engine_id, "name": name, "description": f"Stability-AI {name}", "type": "PICTURE"}
            for engine_id, name in self.engines.items()
        ]
        return web.json_response(engines)

    async def _text_to_image(self, request: web.Request) -> web.StreamResponse:
        call = await self.record_generate(request)
        denied = self._auth_error(request)
        if denied is not None:
            return denied
        fault = self.take_fault()
        planned = await self.answer_generic_fault(request, fault)
        if planned is not None:
            return planned
        engine_id = request.match_info["engine_id"]
        if engine_id not in self.engines:
            message = f"The specified engine (ID {engine_id}) was not found."
            return web.json_response(error_body("not_found", message), status=404)
        accept = request.headers.get("Accept", "")
        accept_png = "image/png" in accept and "application/json" not in accept
        try:
            params = check_body(call.body, sdxl="xl-1024" in engine_id, accept_png=accept_png)
        except StabilityError as exc:
            return web.json_response(error_body(exc.name, exc.message), status=exc.status)

        seed = params["seed"] or self.draw_seed()
        width, height = params["width"], params["height"]
        filtered = 0
        if fault is not None and fault.kind == CONTENT_FILTERED:
            count = fault.options.get("count")
            filtered = params["samples"] if count is None else count
        artifacts = []
        for i in range(params["samples"]):
            if i < filtered:
                image, reason = blurred_png(width, height), "CONTENT_FILTERED"
            else:
                image, reason = self.image(fault, width, height, seed + i), "SUCCESS"
            artifacts.append((image, (seed + i) % (MAX_SEED + 1), reason))
        self.credits -= self.cost_per_image * params["samples"]

        if accept_png:
            image, artifact_seed, reason = artifacts[0]
            headers = {"Finish-Reason": reason, "Seed": str(artifact_seed)}
            return web.Response(body=image, content_type="image/png", headers=headers)
        return web.json_response(
            {
                "artifacts": [
                    {"base64": base64.b64encode(image).decode(), "seed": artifact_seed, "finishReason": reason}
                    for image, artifact_seed, reason in artifacts
                ]
            }
        )
