"""A fake Stability AI REST API on 127.0.0.1: v1 (text-to-image, balance, engines) and v2beta (Stable Image
Core, Ultra and SD3.5).

v1 wire format (reference: shared/reference/backends.md, seed 002, Stability's v1 OpenAPI spec):

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
- ``POST /v1/generation/{engine_id}/image-to-image`` (Stability's v1 OpenAPI ``imageToImage``): a
  ``multipart/form-data`` body (anything else -> 400 ``bad_request``): ``init_image`` (the picture, required: its
  size is the answer's), ``text_prompts[i][text]``/``text_prompts[i][weight]`` (arrays as the spec spells them in a
  form; at least one text), ``init_image_mode`` IMAGE_STRENGTH (default) | STEP_SCHEDULE, ``image_strength`` 0-1
  (how much of the picture is kept, default 0.35), ``step_schedule_start``/``_end`` 0-1, and the text-to-image
  values (``cfg_scale``, ``samples``, ``steps``, ``seed``, ``sampler``, ``style_preset``, ``clip_guidance_preset``)
  checked the same way. SDXL engines take only an ``init_image`` of the nine SDXL sizes (400
  ``invalid_sdxl_v1_dimensions``, as text-to-image's ``width``/``height``); ``width``/``height`` are not fields
  of this operation and are ignored (recorded). Answers as text-to-image, pictures at the init image's size.

v2beta wire format (reference: backends.md "Current APIs" section 1, Stability's v2beta OpenAPI snapshot of
2026-09-22 as kept by ``aself101/stability-ai-api``, and that repository's live battery and DECISIONS.md):

- ``POST /v2beta/stable-image/generate/{core|ultra|sd3}``: ``multipart/form-data`` only; any other body (JSON
  included) -> 400 ``bad_request`` ``"content-type: must be multipart/form-data"``. Parts without a file name
  are text fields (UTF-8), parts with one (or that are not UTF-8) are files; ``image`` may be either.
- Order, as the live service does it (DECISIONS #4): a body over 10 MiB -> 413 ``payload_too_large``
  (``"body: payloads cannot be larger than 10MiB in size"``); then parameter validation -> 400 ``bad_request``
  listing every problem in ``errors`` (so bad parameters with a bad key give 400); then the key
  (``authorization: Bearer KEY``): missing -> 401 ``unauthorized`` ``"missing authorization header"``, wrong ->
  401 ``"Incorrect API key provided"`` (those two texts are v1's; v2beta's 401 text is not documented).
- Validation (``check_form``): ``prompt`` required, 1-10000 chars (``"prompt: required"``, the live text);
  ``negative_prompt`` <= 10000; ``seed`` an integer 0-4294967294 (0 or absent: the fake draws one);
  ``aspect_ratio`` in ``ASPECT_RATIOS`` (default 1:1); ``output_format`` png|jpeg|webp (default png);
  ``style_preset`` in ``STYLE_PRESETS``. sd3 only: ``model`` in ``SD3_MODELS`` (the spec's three values plus
  ``sd3.5-flash``, which the live validator lists; the retired ``sd3-*`` names are refused as the validator
  does), ``mode`` text-to-image|image-to-image, ``cfg_scale`` 1-10; ``mode=image-to-image`` requires ``image``
  and ``strength`` (0-1) and refuses ``aspect_ratio`` (live 400, DECISIONS #7); an ``image`` without
  ``mode=image-to-image`` is refused too (the spec: "only valid for image-to-image requests"; the live answer
  is not recorded). ultra: ``image`` requires ``strength`` (0-1); its sides 64-16384 px and >= 4096 pixels.
  sd3's ``image`` needs sides >= 64 px. An ``image`` that Pillow cannot open -> ``"image: could not be read as
  an image"`` (the fake's wording). Unknown fields are ignored (recorded). Enum errors read
  ``"model: must be one of 'sd3.5-large' | ..."``, range errors ``"cfg_scale: must be between 1 and 10"``.
- Success: ``Accept: image/*`` (or ``*/*``, or none: anything without ``application/json``) -> 200, the raw
  picture, ``Content-Type: image/png|image/jpeg|image/webp`` after ``output_format`` (real PNG/JPEG/WEBP made
  with Pillow), headers ``finish-reason: SUCCESS|CONTENT_FILTERED``, ``seed`` and ``x-request-id``.
  ``Accept: application/json`` -> 200 ``{"image": base64, "seed", "finish_reason"}`` with
  ``Content-Type: application/json; type=image/png`` (the format's type), ``x-request-id`` and no
  ``finish-reason``/``seed`` headers.
- Sizes (one picture per call): sd3 and ultra follow ``SD3_SIZES`` (~1 MP: 1:1 1024x1024, 16:9 1344x768, 21:9
  1536x640, 3:2 1216x832, 5:4 1088x896, 4:5 896x1088, 2:3 832x1216, 9:16 768x1344, 9:21 640x1536; the live
  battery saw 1344x768 at 16:9 on both); core follows ``CORE_SIZES``, the same table times 1.5 (1:1
  1536x1536 as observed live on v2beta and Bedrock; 16:9 2016x1152, 21:9 2304x960, 3:2 1824x1248, 5:4
  1632x1344, 4:5 1344x1632, 2:3 1248x1824, 9:16 1152x2016, 9:21 960x2304: Stability documents only "1.5
  megapixels", so the other eight are this fake's choice). Image-to-image: the table's entry whose ratio is
  nearest the input picture's.
- ``POST /v2beta/stable-image/upscale/fast`` and ``/conservative`` (backends.md section 1.5, the spec's
  validation rules): multipart, the same 413 / validation / key / fault order as generate. Fast: ``image``
  (required) with width and height 32-1536 px and 1,024-1,048,576 pixels, ``output_format``; the answer is the
  picture at 4x. Conservative: ``image`` (sides >= 64 px, 4,096-9,437,184 pixels, aspect ratio within 1:2.5 and
  2.5:1) and ``prompt`` (required, ``"prompt: required"`` as the live service says), ``negative_prompt``,
  ``seed``, ``output_format``, ``creativity`` 0.2-0.5; the answer is about 4 megapixels (4,194,304 pixels at the
  picture's aspect ratio). Both answers are the input picture itself resized (Pillow), so a test can see what was
  upscaled. Credits: fast 2, conservative 40. Limit violations read ``"image: width and height must be between 32
  and 1536 pixels, 1024 to 1048576 pixels in all"`` (the fake's wording; 400 ``bad_request``). The creative
  upscaler (asynchronous) is not served.
- Credits, from the same balance as v1 (``GET /v1/user/balance``): core 3, ultra 8, sd3.5-large 6.5,
  sd3.5-large-turbo 4, sd3.5-medium 3.5, sd3.5-flash 2.5 (``V2_CREDITS``, ``SD3_MODELS``), charged for every
  200 (CONTENT_FILTERED included), never for an error. ``refuse_without_credits=True`` answers 402
  ``payment_required`` (``"You lack sufficient credits to make this request. ..."``, as reported by users; not
  in the spec) when the balance is below the price; by default the balance simply goes negative.
- Errors are ``{"id": 32 hex, "name", "errors": [...]}``; a 429 ``rate_limit_exceeded`` has ``id``
  ``"rate_limit_exceeded"`` too, as in the spec's example.

Usage::

    async with FakeStability(api_key="sk-test") as fake:
        fake.push_status(429, name="rate_limit_exceeded", headers={"Retry-After": "1"})
        fake.push_content_filtered()
        fake.generate_calls[-1].body["text_prompts"]

Constructor: ``FakeStability(api_key="sk-test", credits=100.0, cost_per_image=0.2, engines=ENGINES,
refuse_without_credits=False)``; ``engines`` maps engine id -> name; ids containing ``"xl-1024"`` are SDXL
engines; ``cost_per_image`` is v1's price (v2beta's are fixed, above).

Planned faults (one FIFO for both APIs; a v1 text-to-image request with the right key takes one, a v2beta
generate request takes one once it passed validation and the key check; common ones in
``tests.fakes.image_api``: ``push_delay``, ``push_disconnect``, ``push_malformed_json``,
``push_not_an_image``, ``push_bomb``, ``push_wrong_size``, ``push_truncated``, ``push_corrupt_pixels``,
``push_trickle``, ``push_response``; on v2beta the picture faults keep the promised ``Content-Type``):

- ``push_status(status, name=None, message=None, headers=None, errors=None)``: the error body Stability
  sends, shaped by the route that takes it: v1 ``{id, name, message}``, v2beta ``{id, name, errors}``
  (``errors`` defaults to ``[message]``). ``name`` defaults by status: v1 400 bad_request, 401 unauthorized,
  403 permission_denied, 404 not_found, 429 rate_limit_exceeded, 500 server_error, ...; v2beta
  ``V2_ERROR_NAMES``: 400 bad_request, 401 unauthorized, 402 payment_required, 403 content_moderation, 404
  not_found, 413 payload_too_large, 422 invalid_language, 429 rate_limit_exceeded, 500 internal_error, ...
  The message defaults to the documented text for the name (``V2_ERROR_MESSAGES``: the moderation, 413, 422
  ``invalid_language``/``public_figure``, 429 and 500 texts are the spec's, word for word).
- ``push_moderation()``: 403 ``content_moderation`` ``"Your request was flagged by our content moderation
  system, as a result your request was denied and you were not charged."`` (not charged).
- ``push_content_filtered(count=None)``: v1: a 200 whose first ``count`` artifacts (all by default) have
  ``finishReason: CONTENT_FILTERED`` and a grey (blurred) image of the right size; v2beta: a 200 whose
  picture is grey (blurred) with ``finish-reason: CONTENT_FILTERED`` (JSON: ``finish_reason``), charged
  (``count`` does not matter there: one picture per call).

Recorded: ``generate_calls: list[Call]`` (v1 text-to-image and image-to-image, v2beta generate and upscale
requests, all of them); ``v2_calls: list[FormCall]`` (every v2beta generate and upscale request: ``endpoint``
(``core``, ``ultra``, ``sd3``, ``upscale/fast``, ``upscale/conservative``), ``fields`` name -> str, ``files`` name ->
bytes, ``headers``; empty fields when the body was not multipart); ``v1_image_calls: list[FormCall]`` (every v1
image-to-image request, ``endpoint`` the engine id); ``requests`` has every request.
"""

from __future__ import annotations

import base64
import functools
import io
import json
import math
import uuid
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

from aiohttp import web
from multidict import CIMultiDict
from PIL import Image

from tests.fakes.image_api import BOMB, CORRUPT_PIXELS, NOT_IMAGE, TRUNCATED, WRONG_SIZE, Fault, ImageApiFake
from tests.fakes.images import blurred_png, png_bytes

CONTENT_FILTERED = "content_filtered"
STATUS = "status"  # an error answer rendered in the shape of the route that takes it (v1 or v2beta)

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

# -- v2beta --------------------------------------------------------------------------------------------------
V2_GENERATE_PATH = "/v2beta/stable-image/generate/{endpoint}"
V2_ENDPOINTS = ("core", "ultra", "sd3")
V2_MAX_SEED = 4294967294
V2_MAX_BODY = 10 * 1024 * 1024
PROMPT_MAX = 10000
ASPECT_RATIOS = ("21:9", "16:9", "3:2", "5:4", "1:1", "4:5", "2:3", "9:16", "9:21")
OUTPUT_FORMATS = ("png", "jpeg", "webp")
MODES = ("text-to-image", "image-to-image")
# sd3's ``model`` -> credits. The spec's enum has the first three; the live validator also lists sd3.5-flash.
SD3_MODELS: dict[str, float] = {
    "sd3.5-large": 6.5,
    "sd3.5-large-turbo": 4.0,
    "sd3.5-medium": 3.5,
    "sd3.5-flash": 2.5,
}
V2_CREDITS: dict[str, float] = {"core": 3.0, "ultra": 8.0, "upscale/fast": 2.0, "upscale/conservative": 40.0}
UPSCALE_KINDS = ("fast", "conservative")
V2_UPSCALE_PATH = "/v2beta/stable-image/upscale/{kind}"
CONSERVATIVE_PIXELS = 4 * 1024 * 1024  # "about 4 megapixels"
INIT_IMAGE_MODES = ("IMAGE_STRENGTH", "STEP_SCHEDULE")
# ~1 megapixel, as SD3.5 and Ultra answer (16:9 -> 1344x768 observed live on both).
SD3_SIZES: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024),
    "16:9": (1344, 768),
    "21:9": (1536, 640),
    "3:2": (1216, 832),
    "5:4": (1088, 896),
    "4:5": (896, 1088),
    "2:3": (832, 1216),
    "9:16": (768, 1344),
    "9:21": (640, 1536),
}
# Core: the same table times 1.5, so 1:1 is the 1536x1536 observed live (the other ratios are this fake's choice).
CORE_SIZES: dict[str, tuple[int, int]] = {ratio: (w * 3 // 2, h * 3 // 2) for ratio, (w, h) in SD3_SIZES.items()}
V2_SIZES: dict[str, dict[str, tuple[int, int]]] = {"core": CORE_SIZES, "ultra": SD3_SIZES, "sd3": SD3_SIZES}
V2_ERROR_NAMES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    402: "payment_required",
    403: "content_moderation",
    404: "not_found",
    413: "payload_too_large",
    422: "invalid_language",
    429: "rate_limit_exceeded",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}
MODERATION_MESSAGE = (
    "Your request was flagged by our content moderation system, as a result your request was denied and you "
    "were not charged."
)
V2_ERROR_MESSAGES: dict[str, str] = {
    "bad_request": "one or more provided parameters are invalid",
    "unauthorized": "Incorrect API key provided",
    "payment_required": (
        "You lack sufficient credits to make this request. Please purchase more credits at "
        "https://platform.stability.ai/account/credits and try again."
    ),
    "content_moderation": MODERATION_MESSAGE,
    "not_found": "The requested resource was not found",
    "generation_not_found": "id: the generation either does not exist or has expired.",
    "payload_too_large": "body: payloads cannot be larger than 10MiB in size",
    "invalid_language": "English is the only supported language for this service.",
    "public_figure": (
        "Our system detected the likeness of a public figure in your image. To comply with our guidelines, this "
        "request cannot be processed. Please upload a different image."
    ),
    "rate_limit_exceeded": (
        "You have exceeded the rate limit of 150 requests within a 10 second period, and have been timed out "
        "for 60 seconds."
    ),
    "internal_error": "An unexpected server error has occurred, please try again later.",
}
_PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}


class StabilityError(Exception):
    """An answer Stability would give instead of images."""

    def __init__(self, status: int, name: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.name = name
        self.message = message


def error_body(name: str, message: str) -> dict[str, str]:
    return {"id": uuid.uuid4().hex, "name": name, "message": message}


def v2_error_body(name: str, errors: list[str]) -> dict[str, Any]:
    """v2beta's error body; the spec's 429 example carries the name as its id too."""
    error_id = name if name == "rate_limit_exceeded" else uuid.uuid4().hex
    return {"id": error_id, "name": name, "errors": list(errors)}


def v2_error(
    status: int, name: str, errors: list[str] | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    body = v2_error_body(name, errors or [V2_ERROR_MESSAGES.get(name, name)])
    return web.json_response(body, status=status, headers=headers)


# -- pictures in the requested format --------------------------------------------------------------------------
def reencode(png: bytes, output_format: str) -> bytes:
    """``png`` as a real PNG, JPEG or WEBP file."""
    if output_format == "png":
        return png
    out = io.BytesIO()
    with Image.open(io.BytesIO(png)) as image:
        image.convert("RGB").save(out, format=_PIL_FORMATS[output_format], quality=90)
    return out.getvalue()


@functools.lru_cache(maxsize=64)
def picture(width: int, height: int, seed: int, output_format: str = "png") -> bytes:
    """``png_bytes(width, height, seed)`` in ``output_format`` (png, jpeg or webp)."""
    return reencode(png_bytes(width, height, seed), output_format)


@functools.lru_cache(maxsize=16)
def blurred_picture(width: int, height: int, output_format: str = "png") -> bytes:
    """The grey stand-in for a filtered (blurred) picture, in ``output_format``."""
    return reencode(blurred_png(width, height), output_format)


def render_image(fake: ImageApiFake, fault: Fault | None, width: int, height: int, seed: int, fmt: str) -> bytes:
    """A success's picture in ``fmt``, altered by a picture fault; the broken ones (not an image, bomb, truncated,
    corrupt pixels) come as they are, whatever format was asked, since that is the point of them."""
    kind = fault.kind if fault is not None else None
    if kind in (NOT_IMAGE, BOMB, TRUNCATED, CORRUPT_PIXELS):
        return fake.image(fault, width, height, seed)
    if kind == WRONG_SIZE:
        return picture(max(8, width // 2), max(8, height // 2), seed, fmt)
    return picture(width, height, seed, fmt)


def nearest_size(sizes: dict[str, tuple[int, int]], width: int, height: int) -> tuple[int, int]:
    """The entry of ``sizes`` whose aspect ratio is nearest ``width`` / ``height`` (image-to-image output)."""
    target = math.log(width / height)
    return min(sizes.values(), key=lambda size: abs(math.log(size[0] / size[1]) - target))


def image_size(data: bytes) -> tuple[int, int] | None:
    """Width and height of an encoded picture, or None when Pillow cannot open it."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except Exception:  # any decoding failure means "not a picture"
        return None


# -- multipart ---------------------------------------------------------------------------------------------
def _params(value: str) -> Message:
    message = Message()
    message["content-type"] = value
    return message


def parse_multipart(raw: bytes, content_type: str) -> tuple[dict[str, str], dict[str, bytes]]:
    """The text fields and the file parts of a ``multipart/form-data`` body; ValueError when it is not one.

    A part with a file name, or whose bytes are not UTF-8, is a file; the others are text fields.
    """
    header = _params(content_type)
    boundary = header.get_param("boundary")
    if header.get_content_type() != "multipart/form-data" or not isinstance(boundary, str) or not boundary:
        raise ValueError("not multipart/form-data")
    delimiter = b"--" + boundary.encode()
    chunks = raw.split(delimiter)
    if len(chunks) < 3 or not chunks[-1].startswith(b"--"):
        raise ValueError("no closing boundary")
    fields: dict[str, str] = {}
    files: dict[str, bytes] = {}
    for chunk in chunks[1:-1]:
        if not chunk.startswith(b"\r\n") or not chunk.endswith(b"\r\n"):
            raise ValueError("bad part framing")
        head, separator, data = chunk[2:-2].partition(b"\r\n\r\n")
        if not separator:
            head, data = (head[:-2], b"") if head.endswith(b"\r\n") else (head, b"")
        disposition = ""
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-disposition":
                disposition = value.strip()
        parsed = Message()
        parsed["content-disposition"] = disposition
        part = parsed.get_param("name", header="content-disposition")
        if parsed.get_content_disposition() != "form-data" or not isinstance(part, str):
            raise ValueError("part without a form-data name")
        if parsed.get_param("filename", header="content-disposition") is not None:
            files[part] = data
            continue
        try:
            fields[part] = data.decode("utf-8")
        except UnicodeDecodeError:
            files[part] = data
    return fields, files


# -- v2beta validation ----------------------------------------------------------------------------------------
def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _form_enum(fields: dict[str, str], name: str, allowed: Any, default: str | None, errors: list[str]) -> Any:
    value = fields.get(name)
    if value is None:
        return default
    if value not in allowed:
        errors.append(f"{name}: must be one of " + " | ".join(f"'{option}'" for option in allowed))
        return default
    return value


def _form_number(
    fields: dict[str, str], name: str, low: float, high: float, errors: list[str], *, integer: bool = False
) -> float | None:
    text = fields.get(name)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        errors.append(f"{name}: must be a number")
        return None
    if not math.isfinite(value) or (integer and not value.is_integer()):
        errors.append(f"{name}: must be {'an integer' if integer else 'a number'}")
        return None
    if not low <= value <= high:
        errors.append(f"{name}: must be between {_fmt(low)} and {_fmt(high)}")
        return None
    return value


@dataclass
class FormParams:
    """What a valid v2beta generate request asks for."""

    endpoint: str
    prompt: str
    seed: int
    aspect_ratio: str
    output_format: str
    model: str | None = None  # sd3 only
    image_size: tuple[int, int] | None = None  # the input picture's, for image-to-image
    credits: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    size: tuple[int, int] | None = None  # the answer's, when the request decides it (upscale)
    image: bytes | None = None  # the picture to upscale: the answer is it, resized


def check_form(endpoint: str, fields: dict[str, str], files: dict[str, bytes]) -> tuple[list[str], FormParams]:
    """Validate a v2beta generate form like the live validator: every problem is listed, none stops the rest."""
    errors: list[str] = []
    prompt = fields.get("prompt")
    if not prompt:
        errors.append("prompt: required")
    elif len(prompt) > PROMPT_MAX:
        errors.append(f"prompt: must be at most {PROMPT_MAX} characters")
    if len(fields.get("negative_prompt", "")) > PROMPT_MAX:
        errors.append(f"negative_prompt: must be at most {PROMPT_MAX} characters")
    seed = _form_number(fields, "seed", 0, V2_MAX_SEED, errors, integer=True)
    aspect_ratio = _form_enum(fields, "aspect_ratio", ASPECT_RATIOS, "1:1", errors)
    output_format = _form_enum(fields, "output_format", OUTPUT_FORMATS, "png", errors)
    style = _form_enum(fields, "style_preset", sorted(STYLE_PRESETS), None, errors)
    strength = _form_number(fields, "strength", 0, 1, errors)
    image = files["image"] if "image" in files else fields["image"].encode() if "image" in fields else None
    model = None
    cfg_scale = None
    uses_image = False
    if endpoint == "sd3":
        model = _form_enum(fields, "model", list(SD3_MODELS), "sd3.5-large", errors)
        mode = _form_enum(fields, "mode", MODES, "text-to-image", errors)
        cfg_scale = _form_number(fields, "cfg_scale", 1, 10, errors)
        if mode == "image-to-image":
            uses_image = image is not None
            if image is None:
                errors.append("image: required")
            if "strength" not in fields:
                errors.append("strength: required")
            if "aspect_ratio" in fields:
                errors.append("aspect_ratio: only valid for text-to-image requests")
        elif image is not None:
            errors.append("image: only valid for image-to-image requests")
    elif endpoint == "ultra" and image is not None:
        uses_image = True
        if "strength" not in fields:
            errors.append("strength: required when image is provided")
    size = None
    if uses_image and image is not None:
        size = image_size(image)
        if size is None:
            errors.append("image: could not be read as an image")
        elif endpoint == "ultra" and not (
            64 <= size[0] <= 16384 and 64 <= size[1] <= 16384 and size[0] * size[1] >= 4096
        ):
            errors.append("image: width and height must be between 64 and 16384 pixels, at least 4096 pixels in all")
        elif min(size) < 64:
            errors.append("image: every side must be at least 64 pixels")
    credits = SD3_MODELS.get(model or "", 0.0) if endpoint == "sd3" else V2_CREDITS[endpoint]
    params = FormParams(
        endpoint=endpoint,
        prompt=prompt or "",
        seed=int(seed or 0),
        aspect_ratio=aspect_ratio or "1:1",
        output_format=output_format or "png",
        model=model,
        image_size=size,
        credits=credits,
        extra={"style_preset": style, "strength": strength, "cfg_scale": cfg_scale},
    )
    return errors, params


def check_upscale_form(kind: str, fields: dict[str, str], files: dict[str, bytes]) -> tuple[list[str], FormParams]:
    """Validate a v2beta upscale form (``fast`` or ``conservative``): every problem listed, as generate's."""
    errors: list[str] = []
    endpoint = f"upscale/{kind}"
    image = files["image"] if "image" in files else fields["image"].encode() if "image" in fields else None
    output_format = _form_enum(fields, "output_format", OUTPUT_FORMATS, "png", errors)
    seed = None
    if kind == "conservative":
        prompt = fields.get("prompt")
        if not prompt:
            errors.append("prompt: required")
        elif len(prompt) > PROMPT_MAX:
            errors.append(f"prompt: must be at most {PROMPT_MAX} characters")
        if len(fields.get("negative_prompt", "")) > PROMPT_MAX:
            errors.append(f"negative_prompt: must be at most {PROMPT_MAX} characters")
        seed = _form_number(fields, "seed", 0, V2_MAX_SEED, errors, integer=True)
        _form_number(fields, "creativity", 0.2, 0.5, errors)
    size = out = None
    if image is None:
        errors.append("image: required")
    else:
        size = image_size(image)
        if size is None:
            errors.append("image: could not be read as an image")
        elif kind == "fast":
            width, height = size
            if not (32 <= width <= 1536 and 32 <= height <= 1536 and 1024 <= width * height <= 1_048_576):
                errors.append(
                    "image: width and height must be between 32 and 1536 pixels, 1024 to 1048576 pixels in all"
                )
            out = (4 * width, 4 * height)
        else:
            width, height = size
            if min(size) < 64 or not 4096 <= width * height <= 9_437_184:
                errors.append("image: every side must be at least 64 pixels, 4096 to 9437184 pixels in all")
            elif max(size) / min(size) > 2.5:
                errors.append("image: the aspect ratio must be between 1:2.5 and 2.5:1")
            scale = math.sqrt(CONSERVATIVE_PIXELS / (width * height))
            out = (round(width * scale), round(height * scale))
    params = FormParams(
        endpoint=endpoint,
        prompt=fields.get("prompt", ""),
        seed=int(seed or 0),
        aspect_ratio="1:1",
        output_format=output_format or "png",
        image_size=size,
        credits=V2_CREDITS[endpoint],
        size=out,
        image=image,
    )
    return errors, params


def upscaled(image: bytes, width: int, height: int, fmt: str) -> bytes:
    """The picture ``image`` resized to ``width`` x ``height`` in ``fmt``: what an upscaler gives, seen from here."""
    with Image.open(io.BytesIO(image)) as img:
        big = img.convert("RGB").resize((width, height), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    big.save(out, format=_PIL_FORMATS[fmt], **({"compress_level": 1} if fmt == "png" else {"quality": 90}))
    return out.getvalue()


def form_body(fields: dict[str, str]) -> tuple[dict[str, Any], list[str]]:
    """A v1 image-to-image form as text-to-image's JSON body (``text_prompts`` gathered from
    ``text_prompts[i][text|weight]``, numbers parsed), for :func:`check_body`; and the form's own problems."""
    errors: list[str] = []
    prompts: dict[int, dict[str, Any]] = {}
    body: dict[str, Any] = {}
    for name, value in fields.items():
        if name.startswith("text_prompts["):
            index, _, rest = name.removeprefix("text_prompts[").partition("][")
            key = rest.removesuffix("]")
            if not index.isdigit() or key not in ("text", "weight"):
                errors.append(f"{name}: unknown field")
                continue
            entry = prompts.setdefault(int(index), {})
            if key == "weight":
                try:
                    entry["weight"] = float(value)
                except ValueError:
                    errors.append(f"{name}: must be a number")
            else:
                entry["text"] = value
        elif name in ("samples", "steps", "seed"):
            try:
                body[name] = int(value)
            except ValueError:
                errors.append(f"{name}: must be an integer")
        elif name in ("cfg_scale", "image_strength", "step_schedule_start", "step_schedule_end"):
            try:
                number = float(value)
            except ValueError:
                errors.append(f"{name}: must be a number")
                continue
            body[name] = number
        else:
            body[name] = value
    body["text_prompts"] = [prompts[index] for index in sorted(prompts)]
    for name in ("image_strength", "step_schedule_start", "step_schedule_end"):
        if name in body and not 0 <= body[name] <= 1:
            errors.append(f"{name}: must be between 0 and 1")
    mode = body.get("init_image_mode", "IMAGE_STRENGTH")
    if mode not in INIT_IMAGE_MODES:
        errors.append(f"init_image_mode: must be one of {', '.join(INIT_IMAGE_MODES)}")
    return body, errors


@dataclass(frozen=True)
class FormCall:
    """One v2beta generate request: its endpoint, text fields and file parts as the fake parsed them."""

    endpoint: str
    fields: dict[str, str]
    files: dict[str, bytes]
    headers: CIMultiDict[str]


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
    body: Any,
    *,
    sdxl: bool = True,
    accept_png: bool = False,
    max_steps: int = 50,
    default_size: int = 512,
    init_size: tuple[int, int] | None = None,
) -> dict[str, Any]:
    """Validate a text-to-image body like Stability v1; return the effective parameters.

    Raises ``StabilityError``. Bedrock reuses this with its own limits (``max_steps``, ``default_size``).
    Image-to-image passes ``init_size``, the init image's: that is the size checked and drawn (``width`` and
    ``height`` are not fields of image-to-image).
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
    }
    if init_size is None:
        params["width"] = _number(body, "width", default_size, 128, 10**6, integer=True)
        params["height"] = _number(body, "height", default_size, 128, 10**6, integer=True)
    else:
        params["width"], params["height"] = init_size
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
    elif init_size is not None:
        pass  # other engines take an init image of any size the service can read
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
        refuse_without_credits: bool = False,
    ) -> None:
        super().__init__()
        self.api_key = api_key
        self.credits = credits
        self.cost_per_image = cost_per_image
        self.engines = dict(ENGINES if engines is None else engines)
        self.refuse_without_credits = refuse_without_credits
        self.v2_calls: list[FormCall] = []
        self.v1_image_calls: list[FormCall] = []
        self.app.router.add_post("/v1/generation/{engine_id}/text-to-image", self._text_to_image)
        self.app.router.add_post("/v1/generation/{engine_id}/image-to-image", self._image_to_image)
        self.app.router.add_get("/v1/user/balance", self._balance)
        self.app.router.add_get("/v1/engines/list", self._engines)
        endpoints = "|".join(V2_ENDPOINTS)
        self.app.router.add_post(V2_GENERATE_PATH.format(endpoint=f"{{endpoint:{endpoints}}}"), self._generate_v2)
        kinds = "|".join(UPSCALE_KINDS)
        self.app.router.add_post(V2_UPSCALE_PATH.format(kind=f"{{kind:{kinds}}}"), self._upscale_v2)

    def push_status(
        self,
        status: int,
        name: str | None = None,
        message: str | None = None,
        headers: dict[str, str] | None = None,
        errors: list[str] | None = None,
    ) -> Fault:
        options = {"name": name, "message": message, "errors": list(errors) if errors else None}
        return self.push(Fault(STATUS, status=status, headers=dict(headers or {}), options=options))

    def push_moderation(self) -> Fault:
        return self.push_status(403, "content_moderation", MODERATION_MESSAGE)

    def _v1_status(self, fault: Fault) -> web.Response:
        name = fault.options["name"] or ERROR_NAMES.get(fault.status, "error")
        message = fault.options["message"] or ERROR_MESSAGES.get(name) or V2_ERROR_MESSAGES.get(name, name)
        return web.json_response(error_body(name, message), status=fault.status, headers=fault.headers)

    def _v2_status(self, fault: Fault) -> web.Response:
        name = fault.options["name"] or V2_ERROR_NAMES.get(fault.status, "error")
        message = fault.options["message"] or V2_ERROR_MESSAGES.get(name) or ERROR_MESSAGES.get(name, name)
        return v2_error(fault.status, name, fault.options["errors"] or [message], fault.headers)

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
        return await self._v1_generate(
            request, lambda accept_png, sdxl: check_body(call.body, sdxl=sdxl, accept_png=accept_png)
        )

    async def _image_to_image(self, request: web.Request) -> web.StreamResponse:
        call = await self.record_generate(request)
        fields: dict[str, str] = {}
        files: dict[str, bytes] = {}
        self.v1_image_calls.append(FormCall(request.match_info["engine_id"], fields, files, call.headers))

        def check(accept_png: bool, sdxl: bool) -> dict[str, Any]:
            try:
                parsed_fields, parsed_files = parse_multipart(call.raw_body, request.headers.get("Content-Type", ""))
            except ValueError:
                raise StabilityError(400, "bad_request", "content-type: must be multipart/form-data") from None
            fields.update(parsed_fields)
            files.update(parsed_files)
            body, errors = form_body(fields)
            if errors:
                raise StabilityError(400, "bad_request", "; ".join(errors))
            if "init_image" not in files:
                raise StabilityError(400, "bad_request", "init_image: is required")
            size = image_size(files["init_image"])
            if size is None:
                raise StabilityError(400, "bad_request", "init_image: could not be read as an image")
            return check_body(body, sdxl=sdxl, accept_png=accept_png, init_size=size)

        return await self._v1_generate(request, check)

    async def _v1_generate(self, request: web.Request, check: Any) -> web.StreamResponse:
        """A v1 generation after the body was received: key, fault, engine, ``check(accept_png, sdxl)`` (the
        parameters, or ``StabilityError``), then the artifacts."""
        denied = self._auth_error(request)
        if denied is not None:
            return denied
        fault = self.take_fault()
        if fault is not None and fault.kind == STATUS:
            return self._v1_status(fault)
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
            params = check(accept_png, "xl-1024" in engine_id)
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

    # -- v2beta ------------------------------------------------------------------------------------------------
    def _v2_auth_error(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization")
        if not header:
            return v2_error(401, "unauthorized", ["missing authorization header"])
        if header != f"Bearer {self.api_key}":
            return v2_error(401, "unauthorized", [ERROR_MESSAGES["unauthorized"]])
        return None

    async def _generate_v2(self, request: web.Request) -> web.StreamResponse:
        endpoint = request.match_info["endpoint"]
        return await self._v2(request, endpoint, functools.partial(check_form, endpoint))

    async def _upscale_v2(self, request: web.Request) -> web.StreamResponse:
        kind = request.match_info["kind"]
        return await self._v2(request, f"upscale/{kind}", functools.partial(check_upscale_form, kind))

    async def _v2(self, request: web.Request, endpoint: str, check: Any) -> web.StreamResponse:
        """A v2beta request: size, multipart, ``check(fields, files)`` (errors and parameters), key, fault, credits,
        then the picture (the request's size, the input's nearest shape, or the aspect ratio's)."""
        call = await self.record_generate(request)
        fields: dict[str, str] = {}
        files: dict[str, bytes] = {}
        form = FormCall(endpoint, fields, files, call.headers)
        self.v2_calls.append(form)
        if len(call.raw_body) > V2_MAX_BODY:
            return v2_error(413, "payload_too_large")
        try:
            parsed_fields, parsed_files = parse_multipart(call.raw_body, request.headers.get("Content-Type", ""))
        except ValueError:
            return v2_error(400, "bad_request", ["content-type: must be multipart/form-data"])
        fields.update(parsed_fields)
        files.update(parsed_files)
        errors, params = check(fields, files)
        if errors:  # the live service validates before it looks at the key
            return v2_error(400, "bad_request", errors)
        denied = self._v2_auth_error(request)
        if denied is not None:
            return denied
        fault = self.take_fault()
        if fault is not None and fault.kind == STATUS:
            return self._v2_status(fault)
        planned = await self.answer_generic_fault(request, fault)
        if planned is not None:
            return planned
        if self.refuse_without_credits and self.credits < params.credits:
            return v2_error(402, "payment_required")

        if params.size is not None:
            width, height = params.size
        elif params.image_size is not None:
            width, height = nearest_size(V2_SIZES[endpoint], *params.image_size)
        else:
            width, height = V2_SIZES[endpoint][params.aspect_ratio]
        seed = params.seed or self.rng.randint(1, V2_MAX_SEED)
        fmt = params.output_format
        if fault is not None and fault.kind == CONTENT_FILTERED:
            image, reason = blurred_picture(width, height, fmt), "CONTENT_FILTERED"
        elif params.image is not None and params.size is not None and fault is None:
            image, reason = upscaled(params.image, width, height, fmt), "SUCCESS"
        else:
            image, reason = render_image(self, fault, width, height, seed, fmt), "SUCCESS"
        self.credits -= params.credits  # every 200 is billed, a filtered one too
        request_id = uuid.uuid4().hex
        if "application/json" in request.headers.get("Accept", ""):
            body = {"image": base64.b64encode(image).decode(), "seed": seed, "finish_reason": reason}
            headers = {"Content-Type": f"application/json; type=image/{fmt}", "x-request-id": request_id}
            return web.Response(body=json.dumps(body).encode(), headers=headers)
        headers = {
            "Content-Type": f"image/{fmt}",
            "finish-reason": reason,
            "seed": str(seed),
            "x-request-id": request_id,
        }
        return web.Response(body=image, headers=headers)
