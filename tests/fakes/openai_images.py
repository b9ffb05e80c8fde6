"""A fake OpenAI Images API (and OpenAI-compatible image services such as DeepInfra's), on 127.0.0.1.

Wire format (reference: shared/reference/backends.md "Current APIs" §7; checked against ``openai/openai-python``
``src/openai/types/image_generate_params.py``, ``images_response.py``, ``image.py``, ``image_model.py``,
``model.py`` and ``pagination.py`` (commit e43b422, 2026-08-21), DeepInfra's model API pages
(``https://deepinfra.com/black-forest-labs/FLUX-1-schnell/api``) and error bodies recorded from the live
service in public issues -- each noted where used):

- ``POST {prefix}/images/generations`` with ``Authorization: Bearer <api_key>`` and a JSON body. ``prefix`` is
  ``/v1`` by default (``/v1/openai`` imitates DeepInfra). Model families, by name:

  ==================  =========  ==============================================  ========  ====================
  family              prompt     size (default)                                  n         pictures
  ==================  =========  ==============================================  ========  ====================
  gpt-image*,         <= 32000   ``auto`` (-> 1024x1024), 1024x1024, 1536x1024,  1-10      always ``b64_json``;
  chatgpt-image*                 1024x1536; ``gpt-image-2``/``gpt-image-2-<date>``           ``response_format``
                                 also any WxH: sides multiples of 16, long side             refused (400
                                 <= 3840, at most 3840x2160 pixels, aspect                  ``unknown_parameter``)
                                 <= 3:1, at least 655360 pixels [the minimum is
                                 not in the SDK; unverified]
  dall-e-3            <= 4000    1024x1024 (default), 1792x1024, 1024x1792       1 only    ``url`` by default,
                                                                                           or ``b64_json``
  dall-e-2            <= 1000    256x256, 512x512, 1024x1024 (default)           1-10      as dall-e-3
  anything else       <= 32000   any WxH, sides multiples of 8 in 128..2048      1-10      ``answer`` (default
  (DeepInfra-like)    [limits    (default 1024x1024) [DeepInfra's limits are not           ``b64_json``), or
                      unverified] published; these are the fake's]                          ``response_format``
  ==================  =========  ==============================================  ========  ====================

  gpt-image fields: ``quality`` auto|low|medium|high, ``background`` auto|opaque|transparent (transparent needs
  png or webp and gives an RGBA picture), ``output_format`` png|jpeg|webp (the picture really is that format),
  ``output_compression`` 0-100 (jpeg/webp quality; below 100 with png is refused [message unverified]),
  ``moderation`` auto|low, ``user``. dall-e-3: ``quality`` standard|hd|auto, ``style`` vivid|natural.
  For the OpenAI families (gpt-image, dall-e) a field the API does not know answers 400 ``unknown_parameter``
  (as OpenAI does; recorded for ``response_format`` on gpt-image: ``vercel/ai#6102``, ``lofcz/LLMTornado#155``);
  fields that belong to another OpenAI family (``style`` on gpt-image, ``output_format`` on dall-e...) are
  ignored [unverified]; DeepInfra-like models ignore every field they do not use. ``stream: true`` is refused
  with 400 ``unsupported_value`` (the fake does not stream). Without ``model`` the request uses
  ``default_model`` (``dall-e-2``, the API's documented default; not served unless listed -> 404).
- Success 200: gpt-image ``{"created", "data": [{"b64_json"}], "background", "output_format", "quality", "size",
  "usage": {"input_tokens", "input_tokens_details": {"text_tokens", "image_tokens"}, "output_tokens",
  "output_tokens_details": {"image_tokens", "text_tokens"}, "total_tokens"}}`` (``auto`` reported as ``opaque``
  / ``high`` / the real size; token counts are illustrative); dall-e ``{"created", "data": [{"url"|"b64_json",
  "revised_prompt"}]}`` (dall-e-3 only has ``revised_prompt``); DeepInfra-like ``{"created", "data":
  [{"b64_json"|"url", "revised_prompt": <the prompt>}]}`` (as DeepInfra's example). Pictures are real, of the
  asked size, one seed per index. ``url`` items point at the fake itself: ``GET /oai-files/<name>.png?st=..&se=..
  &sp=r&sv=..&sr=b&sig=..`` serves the PNG (a missing or wrong ``sig`` answers 403 Azure-style XML).
- Errors ``{"error": {"message", "type", "param", "code"}}`` (every answer carries ``x-request-id``):

  - no ``Authorization`` -> 401 "You didn't provide an API key. ..." ``invalid_request_error``, code null;
    a wrong key -> 401 "Incorrect API key provided: sk-p****abcd. ..." code ``invalid_api_key``.
  - body not JSON -> 400 "We could not parse the JSON body of your request. (HINT: ...)" param/code null.
  - unknown model -> 404 "The model `x` does not exist or you do not have access to it." ``model_not_found``.
  - validation -> 400 ``invalid_request_error`` with ``param`` naming the field and OpenAI's codes:
    ``missing_required_parameter``, ``invalid_type``, ``empty_string``, ``string_above_max_length``,
    ``integer_below_min_value``/``integer_above_max_value``, ``invalid_value`` ("Invalid value: 'x'. Supported
    values are: 'a', 'b', and 'c'."), ``unknown_parameter``. dall-e-3 answers as recorded in 2024: ``n`` != 1
    -> "You must provide n=1 for this model." (param/code null); a bad size -> "The size is not supported by
    this model." code ``invalid_size``, param null.
  - a prompt containing one of ``blocked_words`` -> as ``push_moderation()``.

- ``GET {prefix}/models`` (Bearer checked the same way; the cheap probe for ``sdbot check``) ->
  ``{"object": "list", "data": [{"id", "object": "model", "created", "owned_by"}]}``; ``GET
  {prefix}/models/{id}`` -> one model, or 404 ``model_not_found``. No faults are consumed there.

Constructor: ``FakeOpenAIImages(api_key="sk-test", models=MODELS, prefix="/v1", answer="b64_json",
default_model="dall-e-2", blocked_words=())``; ``fake.base_url`` is ``fake.url + prefix`` (what a client is
configured with).

Planned faults (FIFO, one per generate request that passed the key check; the generic ones of
``tests.fakes.image_api`` apply, picture faults altering the pictures, ``push_count`` the number of items):

- ``push_error(status, code, type, message, param=None, headers=None)``: exactly that error.
- ``push_moderation(categories=("violence",), stage=None)``: 400 ``moderation_blocked``, type
  ``image_generation_user_error``, "Your request was rejected by the safety system. If you believe this is an
  error, contact us at help.openai.com and include the request ID <id>. safety_violations=[violence]." (as
  recorded: ``jeffstric/ZJT#480``, ``ucx0204/CarrotMangaTranslator#122``); with ``stage`` ("input"/"output")
  the error also has ``moderation_details``. A dall-e request gets the legacy 400 ``content_policy_violation``
  "Your request was rejected as a result of our safety system. ...".
- ``push_rate_limit(seconds=20)``: 429 type ``requests`` code ``rate_limit_exceeded`` "Rate limit reached for
  <model> in organization org-... on images per minute (IPM): ... Please try again in <seconds>s. ...", with
  ``retry-after`` (``seconds`` as given; OpenAI sends whole seconds), ``retry-after-ms`` and ``x-ratelimit-*``.
- ``push_insufficient_quota()``: 429 type and code ``insufficient_quota`` "You exceeded your current quota, ...".
- ``push_server_error(status=500)``: ``server_error`` "The server had an error while processing your request.
  Sorry about that!", code null.
- ``push_expired_url()``: a normal success whose ``url`` items answer 403 ``AuthenticationFailed`` (a link past
  its 60 minutes).

Recorded: ``generate_calls: list[Call]``, ``models_calls: list[Call]``, ``file_gets`` (names fetched),
``files`` (name -> ``StoredFile``).
"""

from __future__ import annotations

import base64
import functools
import io
import json
import math
import random
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from aiohttp import web
from PIL import Image

from tests.fakes.image_api import (
    BOMB,
    CORRUPT_PIXELS,
    NOT_IMAGE,
    TRUNCATED,
    WRONG_SIZE,
    Call,
    Fault,
    ImageApiFake,
)
from tests.fakes.images import png_bytes

MODELS = ("gpt-image-1.5", "gpt-image-2", "dall-e-3", "black-forest-labs/FLUX-1-schnell")
INVALID_REQUEST = "invalid_request_error"

GPT_IMAGE, DALL_E_3, DALL_E_2, OTHER = "gpt-image", "dall-e-3", "dall-e-2", "other"
PROMPT_MAX = {GPT_IMAGE: 32000, DALL_E_3: 4000, DALL_E_2: 1000, OTHER: 32000}
GPT_IMAGE_SIZES = ("1024x1024", "1536x1024", "1024x1536", "auto")
DALL_E_3_SIZES = ("1024x1024", "1792x1024", "1024x1792")
DALL_E_2_SIZES = ("256x256", "512x512", "1024x1024")
GPT_IMAGE_2_MAX_EDGE, GPT_IMAGE_2_MAX_PIXELS, GPT_IMAGE_2_MIN_PIXELS = 3840, 3840 * 2160, 655360
OTHER_MIN_SIDE, OTHER_MAX_SIDE, OTHER_MULTIPLE = 128, 2048, 8
GPT_IMAGE_QUALITIES = ("low", "medium", "high", "auto")
DALL_E_3_QUALITIES = ("standard", "hd", "auto")
BACKGROUNDS = ("transparent", "opaque", "auto")
OUTPUT_FORMATS = ("png", "jpeg", "webp")
MODERATIONS = ("low", "auto")
RESPONSE_FORMATS = ("url", "b64_json")
STYLES = ("vivid", "natural")
# Every field of ImageGenerateParams (openai-python); for the OpenAI families anything else is an unknown parameter.
KNOWN_FIELDS = frozenset(
    {
        "prompt",
        "model",
        "n",
        "size",
        "quality",
        "background",
        "output_format",
        "output_compression",
        "moderation",
        "response_format",
        "stream",
        "partial_images",
        "style",
        "user",
    }
)
# Output tokens of one 1024x1024 picture per quality (gpt-image-1's published table; only illustrative here).
OUTPUT_TOKENS = {"low": 272, "medium": 1056, "high": 4160}

NO_KEY_MESSAGE = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer "
    "auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're "
    "accessing the API from your browser and are prompted for a username and password. You can obtain an API "
    "key from https://platform.openai.com/account/api-keys."
)
BAD_JSON_MESSAGE = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP "
    "library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If you have "
    "trouble figuring out how to fix this, please contact us through our help center at help.openai.com.)"
)
QUOTA_MESSAGE = (
    "You exceeded your current quota, please check your plan and billing details. For more information on this "
    "error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors."
)
SERVER_ERROR_MESSAGE = "The server had an error while processing your request. Sorry about that!"
LEGACY_POLICY_MESSAGE = (
    "Your request was rejected as a result of our safety system. Your prompt may contain text that is not "
    "allowed by our safety system."
)
ORGANIZATION = "org-0123456789abcdefABCDEF01"
REQUESTS_PER_MINUTE = 50

# Fault kinds of this fake.
MODERATION = "moderation"
RATE_LIMIT = "rate_limit"
EXPIRED_URL = "expired_url"

_WXH = re.compile(r"^(\d{1,5})x(\d{1,5})$")
_PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
_CONTENT_TYPES = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


def family(model: str) -> str:
    """Which rules a model name follows (see the module docstring)."""
    if model.startswith(("gpt-image", "chatgpt-image")):
        return GPT_IMAGE
    if model in (DALL_E_3, DALL_E_2):
        return model
    return OTHER


def _arbitrary_sizes(model: str) -> bool:
    """gpt-image-2 and its dated snapshots take any WIDTHxHEIGHT within limits (image_generate_params.py)."""
    return model == "gpt-image-2" or re.fullmatch(r"gpt-image-2-\d{4}-\d{2}-\d{2}", model) is not None


def error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _json_type(value: Any) -> str:
    """How OpenAI names a JSON value's type in its messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _supported(values: Iterable[str]) -> str:
    quoted = [f"'{value}'" for value in values]
    return ", ".join(quoted[:-1]) + f", and {quoted[-1]}" if len(quoted) > 1 else quoted[0]


def mask_key(key: str) -> str:
    """How OpenAI echoes a wrong key: its start and its last four characters."""
    if len(key) <= 12:
        return key[:3] + "*" * max(0, len(key) - 3)
    return key[:8] + "*" * (len(key) - 12) + key[-4:]


@functools.lru_cache(maxsize=64)
def render(width: int, height: int, seed: int, fmt: str = "png", compression: int = 100, alpha: bool = False) -> bytes:
    """``png_bytes(width, height, seed)`` as a real ``fmt`` file; ``alpha`` adds a top-to-bottom transparency."""
    base = png_bytes(width, height, seed)
    if fmt == "png" and not alpha:
        return base
    with Image.open(io.BytesIO(base)) as opened:
        picture = opened.convert("RGB")
    if alpha:
        mask = Image.linear_gradient("L").resize((width, height))
        picture = picture.convert("RGBA")
        picture.putalpha(mask)
    out = io.BytesIO()
    options: dict[str, Any] = {} if fmt == "png" else {"quality": max(1, compression)}
    picture.save(out, format=_PIL_FORMATS[fmt], **options)
    return out.getvalue()


@dataclass
class StoredFile:
    """A picture served under ``/oai-files/`` for a ``url`` answer."""

    data: bytes
    signature: str
    content_type: str = "image/png"
    expired: bool = False


class OpenAIError(Exception):
    """A request OpenAI would refuse: status and the error object's fields."""

    def __init__(
        self, status: int, message: str, type_: str = INVALID_REQUEST, param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = error_body(message, type_, param, code)


def _invalid(param: str, message: str, code: str) -> OpenAIError:
    return OpenAIError(400, message, INVALID_REQUEST, param, code)


def _enum(body: dict[str, Any], name: str, allowed: tuple[str, ...], default: str) -> str:
    value = body.get(name)
    if value is None:
        return default
    if not isinstance(value, str):
        raise _invalid(
            name, f"Invalid type for '{name}': expected a string, but got {_json_type(value)} instead.", "invalid_type"
        )
    if value not in allowed:
        raise _invalid(name, f"Invalid value: '{value}'. Supported values are: {_supported(allowed)}.", "invalid_value")
    return value


def _integer(body: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(
            name,
            f"Invalid type for '{name}': expected an integer, but got {_json_type(value)} instead.",
            "invalid_type",
        )
    if value < low:
        message = f"Invalid '{name}': integer below minimum value. Expected a value >= {low}, but got {value} instead."
        raise _invalid(name, message, "integer_below_min_value")
    if value > high:
        message = f"Invalid '{name}': integer above maximum value. Expected a value <= {high}, but got {value} instead."
        raise _invalid(name, message, "integer_above_max_value")
    return value


def _size(body: dict[str, Any], model: str, kind: str) -> tuple[int, int, str]:
    """Width, height and the size to report, per family (module docstring)."""
    value = body.get("size")
    default = {GPT_IMAGE: "auto", DALL_E_3: "1024x1024", DALL_E_2: "1024x1024", OTHER: "1024x1024"}[kind]
    if value is None:
        value = default
    if not isinstance(value, str):
        raise _invalid(
            "size", f"Invalid type for 'size': expected a string, but got {_json_type(value)} instead.", "invalid_type"
        )
    if kind == DALL_E_3 and value not in DALL_E_3_SIZES:
        raise OpenAIError(400, "The size is not supported by this model.", code="invalid_size")
    if kind == DALL_E_2 and value not in DALL_E_2_SIZES:
        raise _invalid(
            "size", f"Invalid value: '{value}'. Supported values are: {_supported(DALL_E_2_SIZES)}.", "invalid_value"
        )
    if kind == GPT_IMAGE and value == "auto":
        return 1024, 1024, "1024x1024"
    match = _WXH.match(value)
    if kind == GPT_IMAGE and not _arbitrary_sizes(model) and (value not in GPT_IMAGE_SIZES or match is None):
        message = f"Invalid value: '{value}'. Supported values are: {_supported(GPT_IMAGE_SIZES)}."
        raise _invalid("size", message, "invalid_value")
    if match is None:
        raise _invalid("size", f"Invalid value: '{value}'. Expected a size like '1024x1024'.", "invalid_value")
    width, height = int(match.group(1)), int(match.group(2))
    if kind == GPT_IMAGE and _arbitrary_sizes(model):
        long_side, short_side = max(width, height), min(width, height)
        fits = (
            width % 16 == 0
            and height % 16 == 0
            and short_side > 0
            and long_side <= 3 * short_side
            and long_side <= GPT_IMAGE_2_MAX_EDGE
            and GPT_IMAGE_2_MIN_PIXELS <= width * height <= GPT_IMAGE_2_MAX_PIXELS
        )
        if not fits:
            message = (
                f"Invalid value: '{value}'. Width and height must be multiples of 16, the aspect ratio at most 3:1, "
                f"the longest edge at most {GPT_IMAGE_2_MAX_EDGE}px and the total pixels between "
                f"{GPT_IMAGE_2_MIN_PIXELS} and {GPT_IMAGE_2_MAX_PIXELS}."
            )
            raise _invalid("size", message, "invalid_value")
    if kind == OTHER:
        fits = all(OTHER_MIN_SIDE <= side <= OTHER_MAX_SIDE and side % OTHER_MULTIPLE == 0 for side in (width, height))
        if not fits:
            message = (
                f"Invalid value: '{value}'. Width and height must be multiples of {OTHER_MULTIPLE} between "
                f"{OTHER_MIN_SIDE} and {OTHER_MAX_SIDE}."
            )
            raise _invalid("size", message, "invalid_value")
    return width, height, f"{width}x{height}"


@dataclass(frozen=True)
class Params:
    """A valid request, with the defaults filled in."""

    model: str
    kind: str
    prompt: str
    n: int
    width: int
    height: int
    size: str
    quality: str
    background: str
    output_format: str
    compression: int
    response_format: str


def check_body(body: dict[str, Any], model: str, answer: str) -> Params:
    """Validate a generate body for ``model`` (already known to be served) as described in the module docstring."""
    kind = family(model)
    if kind != OTHER:
        for name in body:
            if name not in KNOWN_FIELDS or (name == "response_format" and kind == GPT_IMAGE):
                raise _invalid(name, f"Unknown parameter: '{name}'.", "unknown_parameter")
    if "prompt" not in body:
        raise _invalid("prompt", "Missing required parameter: 'prompt'.", "missing_required_parameter")
    prompt = body["prompt"]
    if not isinstance(prompt, str):
        raise _invalid(
            "prompt",
            f"Invalid type for 'prompt': expected a string, but got {_json_type(prompt)} instead.",
            "invalid_type",
        )
    if not prompt:
        message = (
            "Invalid 'prompt': empty string. Expected a string with minimum length 1, but got an empty string instead."
        )
        raise _invalid("prompt", message, "empty_string")
    limit = PROMPT_MAX[kind]
    if len(prompt) > limit:
        message = (
            f"Invalid 'prompt': string too long. Expected a string with maximum length {limit}, but got a string "
            f"with length {len(prompt)} instead."
        )
        raise _invalid("prompt", message, "string_above_max_length")
    if kind != OTHER and body.get("stream") is True:
        raise _invalid("stream", "Streaming is not supported by this fake.", "unsupported_value")
    n = _integer(body, "n", 1, 1, 10)
    if kind == DALL_E_3 and n != 1:
        raise OpenAIError(400, "You must provide n=1 for this model.")
    width, height, size = _size(body, model, kind)
    quality, background, output_format, compression = "standard", "auto", "png", 100
    response_format = "b64_json"
    if kind == GPT_IMAGE:
        quality = _enum(body, "quality", GPT_IMAGE_QUALITIES, "auto")
        background = _enum(body, "background", BACKGROUNDS, "auto")
        output_format = _enum(body, "output_format", OUTPUT_FORMATS, "png")
        compression = _integer(body, "output_compression", 100, 0, 100)
        _enum(body, "moderation", MODERATIONS, "auto")
        if background == "transparent" and output_format == "jpeg":
            message = "Transparent background is not supported for the jpeg output format; use png or webp."
            raise _invalid("background", message, "invalid_value")
        if output_format == "png" and compression < 100:
            raise _invalid(
                "output_compression",
                "Compression less than 100 is not supported for PNG output format.",
                "invalid_value",
            )
    else:
        default_format = "url" if kind in (DALL_E_3, DALL_E_2) else answer
        response_format = _enum(body, "response_format", RESPONSE_FORMATS, default_format)
    if kind == DALL_E_3:
        quality = _enum(body, "quality", DALL_E_3_QUALITIES, "standard")
        _enum(body, "style", STYLES, "vivid")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise _invalid(
            "user", f"Invalid type for 'user': expected a string, but got {_json_type(user)} instead.", "invalid_type"
        )
    return Params(
        model, kind, prompt, n, width, height, size, quality, background, output_format, compression, response_format
    )


class FakeOpenAIImages(ImageApiFake):
    """OpenAI's images/generations and models endpoints (see the module docstring)."""

    def __init__(
        self,
        *,
        api_key: str = "sk-test",
        models: Iterable[str] = MODELS,
        prefix: str = "/v1",
        answer: str = "b64_json",
        default_model: str = "dall-e-2",
        blocked_words: Iterable[str] = (),
    ) -> None:
        super().__init__()
        if answer not in RESPONSE_FORMATS:
            raise ValueError(f"answer must be one of {RESPONSE_FORMATS}")
        self.api_key = api_key
        self.models = tuple(models)
        self.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.answer = answer
        self.default_model = default_model
        self.blocked_words = tuple(blocked_words)
        self.models_calls: list[Call] = []
        self.files: dict[str, StoredFile] = {}
        self.file_gets: list[str] = []
        # request ids and file names come from their own generator, so the seeds do not depend on them
        self._ids = random.Random(0x1D)
        self.app.router.add_post(f"{self.prefix}/images/generations", self._generate)
        self.app.router.add_get(f"{self.prefix}/models", self._list_models)
        self.app.router.add_get(f"{self.prefix}/models/{{model:.+}}", self._get_model)
        self.app.router.add_get("/oai-files/{name}", self._get_file)
        self.app.on_response_prepare.append(self._request_id)

    @property
    def base_url(self) -> str:
        """What a client is configured with: the URL plus the prefix (e.g. http://127.0.0.1:PORT/v1)."""
        return self.url + self.prefix

    # -- planned faults ----------------------------------------------------------------------------------------
    def push_error(
        self,
        status: int,
        code: str | None,
        type: str,  # the wire field's name
        message: str,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> Fault:
        return self.push_response(status, error_body(message, type, param, code), headers)

    def push_moderation(self, categories: Iterable[str] = ("violence",), stage: str | None = None) -> Fault:
        return self.push(Fault(MODERATION, options={"categories": tuple(categories), "stage": stage}))

    def push_rate_limit(self, seconds: float = 20) -> Fault:
        return self.push(Fault(RATE_LIMIT, seconds=seconds))

    def push_insufficient_quota(self) -> Fault:
        return self.push_error(429, "insufficient_quota", "insufficient_quota", QUOTA_MESSAGE)

    def push_server_error(self, status: int = 500) -> Fault:
        return self.push_error(status, None, "server_error", SERVER_ERROR_MESSAGE)

    def push_expired_url(self) -> Fault:
        return self.push(Fault(EXPIRED_URL))

    # -- helpers -----------------------------------------------------------------------------------------------
    def _hex(self, digits: int) -> str:
        return f"{self._ids.getrandbits(4 * digits):0{digits}x}"

    async def _request_id(self, request: web.Request, response: web.StreamResponse) -> None:
        response.headers.setdefault("x-request-id", f"req_{self._hex(32)}")

    def _auth_error(self, request: web.Request) -> web.Response | None:
        header = request.headers.get("Authorization")
        if not header:
            return web.json_response(error_body(NO_KEY_MESSAGE, INVALID_REQUEST), status=401)
        scheme, _, key = header.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            return web.json_response(error_body(NO_KEY_MESSAGE, INVALID_REQUEST), status=401)
        if key != self.api_key:
            message = (
                f"Incorrect API key provided: {mask_key(key)}. You can find your API key at "
                "https://platform.openai.com/account/api-keys."
            )
            return web.json_response(error_body(message, INVALID_REQUEST, None, "invalid_api_key"), status=401)
        return None

    def _rate_headers(self, remaining: int) -> dict[str, str]:
        return {
            "x-ratelimit-limit-requests": str(REQUESTS_PER_MINUTE),
            "x-ratelimit-remaining-requests": str(remaining),
            "x-ratelimit-reset-requests": "1.2s",
        }

    @staticmethod
    def _model_not_found(model: str) -> web.Response:
        message = f"The model `{model}` does not exist or you do not have access to it."
        return web.json_response(error_body(message, INVALID_REQUEST, None, "model_not_found"), status=404)

    def _moderation_answer(self, fault: Fault | None, kind: str | None) -> web.Response:
        options: dict[str, Any] = {"categories": ("violence",), "stage": None}
        if fault is not None:
            options = fault.options
        if kind in (DALL_E_3, DALL_E_2):
            body = error_body(LEGACY_POLICY_MESSAGE, INVALID_REQUEST, None, "content_policy_violation")
            return web.json_response(body, status=400)
        message = (
            "Your request was rejected by the safety system. If you believe this is an error, contact us at "
            f"help.openai.com and include the request ID {self._hex(8)}-{self._hex(4)}-{self._hex(4)}-"
            f"{self._hex(4)}-{self._hex(12)}. safety_violations=[{', '.join(options['categories'])}]."
        )
        body = error_body(message, "image_generation_user_error", None, "moderation_blocked")
        if options["stage"] is not None:
            body["error"]["moderation_details"] = {
                "moderation_stage": options["stage"],
                "categories": list(options["categories"]),
            }
        return web.json_response(body, status=400)

    def _rate_limit_answer(self, fault: Fault, model: str) -> web.Response:
        seconds = fault.seconds
        message = (
            f"Rate limit reached for {model} in organization {ORGANIZATION} on images per minute (IPM): Limit "
            f"{REQUESTS_PER_MINUTE}, Used {REQUESTS_PER_MINUTE}, Requested 1. Please try again in {seconds:g}s. "
            "Visit https://platform.openai.com/account/rate-limits to learn more."
        )
        headers = self._rate_headers(0)
        headers.update({"retry-after": f"{seconds:g}", "retry-after-ms": str(math.ceil(seconds * 1000))})
        body = error_body(message, "requests", None, "rate_limit_exceeded")
        return web.json_response(body, status=429, headers=headers)

    def _picture(self, fault: Fault | None, params: Params, seed: int) -> bytes:
        kind = fault.kind if fault is not None else None
        width, height = params.width, params.height
        if kind in (NOT_IMAGE, BOMB, TRUNCATED, CORRUPT_PIXELS):
            return self.image(fault, width, height, seed)
        if kind == WRONG_SIZE:
            width, height = max(8, width // 2), max(8, height // 2)
        alpha = params.background == "transparent"
        return render(width, height, seed, params.output_format, params.compression, alpha)

    def _store(self, data: bytes, expired: bool) -> str:
        name = f"img-{self._hex(24)}.png"
        signature = base64.b64encode(self._ids.getrandbits(256).to_bytes(32, "big")).decode()
        self.files[name] = StoredFile(data, signature, expired=expired)
        now = time.time()
        start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))
        end = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 3600))
        fields = {"st": start, "se": end, "sp": "r", "sv": "2024-08-04", "sr": "b", "rscd": "inline"}
        query = urlencode({**fields, "rsct": "image/png", "sig": signature})
        return f"{self.url}/oai-files/{name}?{query}"

    # -- handlers ----------------------------------------------------------------------------------------------
    async def _generate(self, request: web.Request) -> web.StreamResponse:
        call = await self.record_generate(request)
        refused = self._auth_error(request)
        if refused is not None:
            return refused
        fault = self.take_fault()
        planned = await self.answer_generic_fault(request, fault)
        if planned is not None:
            return planned
        try:
            body = json.loads(call.raw_body) if call.raw_body else None
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return web.json_response(error_body(BAD_JSON_MESSAGE, INVALID_REQUEST), status=400)
        model = body.get("model")
        if model is None:
            model = self.default_model
        if not isinstance(model, str):
            message = f"Invalid type for 'model': expected a string, but got {_json_type(model)} instead."
            return web.json_response(error_body(message, INVALID_REQUEST, "model", "invalid_type"), status=400)
        if model not in self.models:
            return self._model_not_found(model)
        if fault is not None and fault.kind == MODERATION:
            return self._moderation_answer(fault, family(model))
        if fault is not None and fault.kind == RATE_LIMIT:
            return self._rate_limit_answer(fault, model)
        try:
            params = check_body(body, model, self.answer)
        except OpenAIError as exc:
            return web.json_response(exc.body, status=exc.status)
        lowered = params.prompt.lower()
        if any(word and word.lower() in lowered for word in self.blocked_words):
            return self._moderation_answer(None, params.kind)

        expired = fault is not None and fault.kind == EXPIRED_URL
        base_seed = self.draw_seed()
        data: list[dict[str, Any]] = []
        for i in range(self.image_count(fault, params.n)):
            picture = self._picture(fault, params, base_seed + i)
            item: dict[str, Any] = {}
            if params.response_format == "url":
                item["url"] = self._store(picture, expired)
            else:
                item["b64_json"] = base64.b64encode(picture).decode()
            if params.kind == DALL_E_3:
                item["revised_prompt"] = f"A detailed, vivid rendering of the following scene: {params.prompt}"
            elif params.kind == OTHER:
                item["revised_prompt"] = params.prompt
            data.append(item)
        answer: dict[str, Any] = {"created": int(time.time()), "data": data}
        if params.kind == GPT_IMAGE:
            quality = "high" if params.quality == "auto" else params.quality
            text_tokens = max(1, len(params.prompt.split()))
            per_image = math.ceil(OUTPUT_TOKENS[quality] * params.width * params.height / (1024 * 1024))
            output_tokens = per_image * len(data)
            answer.update(
                {
                    "background": "transparent" if params.background == "transparent" else "opaque",
                    "output_format": params.output_format,
                    "quality": quality,
                    "size": params.size,
                    "usage": {
                        "input_tokens": text_tokens,
                        "input_tokens_details": {"text_tokens": text_tokens, "image_tokens": 0},
                        "output_tokens": output_tokens,
                        "output_tokens_details": {"image_tokens": output_tokens, "text_tokens": 0},
                        "total_tokens": text_tokens + output_tokens,
                    },
                }
            )
        return web.json_response(answer, headers=self._rate_headers(REQUESTS_PER_MINUTE - 1))

    def _model_object(self, index: int, model: str) -> dict[str, Any]:
        owner = model.split("/", 1)[0] if "/" in model else "system"
        return {"id": model, "object": "model", "created": 1_700_000_000 + 86_400 * index, "owned_by": owner}

    async def _list_models(self, request: web.Request) -> web.StreamResponse:
        self.models_calls.append(await Call.from_request(request))
        refused = self._auth_error(request)
        if refused is not None:
            return refused
        data = [self._model_object(i, model) for i, model in enumerate(self.models)]
        return web.json_response({"object": "list", "data": data})

    async def _get_model(self, request: web.Request) -> web.StreamResponse:
        self.models_calls.append(await Call.from_request(request))
        refused = self._auth_error(request)
        if refused is not None:
            return refused
        model = request.match_info["model"]
        if model not in self.models:
            return self._model_not_found(model)
        return web.json_response(self._model_object(self.models.index(model), model))

    async def _get_file(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.file_gets.append(name)
        stored = self.files.get(name)
        if stored is None:
            text = (
                '<?xml version="1.0" encoding="utf-8"?><Error><Code>BlobNotFound</Code>'
                "<Message>The specified blob does not exist.</Message></Error>"
            )
            return web.Response(status=404, text=text, content_type="application/xml")
        if stored.expired or request.query.get("sig") != stored.signature:
            detail = "Signed expiry time has passed." if stored.expired else "Signature did not match the resource."
            text = (
                '<?xml version="1.0" encoding="utf-8"?><Error><Code>AuthenticationFailed</Code><Message>Server '
                "failed to authenticate the request. Make sure the value of Authorization header is formed "
                f"correctly including the signature.</Message><AuthenticationErrorDetail>{detail}"
                "</AuthenticationErrorDetail></Error>"
            )
            return web.Response(status=403, text=text, content_type="application/xml")
        return web.Response(body=stored.data, content_type=stored.content_type)
