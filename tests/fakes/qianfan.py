"""A fake Baidu Qianfan: the legacy (v1) Stable-Diffusion-XL API and the v2 image API, on 127.0.0.1.

Wire format (reference: shared/reference/backends.md, seed 000 for v1, "Current APIs" §3.1 for v2):

- ``POST|GET /oauth/2.0/token?grant_type=client_credentials&client_id=AK&client_secret=SK``
  -> 200 ``{"access_token", "expires_in", "refresh_token", "scope", "session_key", "session_secret"}``.
  Unknown client id -> 401 ``{"error": "invalid_client", "error_description": "unknown client id"}``;
  wrong secret -> 401 ``... "Client authentication failed"``; other grant types -> 400
  ``{"error": "unsupported_grant_type", ...}``.
- ``POST /rpc/2.0/ai_custom/v1/wenxinworkshop/text2image/sd_xl?access_token=T`` with a JSON body
  (prompt, negative_prompt, size, n, steps, sampler_index, seed, cfg_scale, style, user_id)
  -> 200 ``{"id", "object": "image", "created", "data": [{"object": "image", "b64_image", "index"}],
  "usage": {"prompt_tokens", "total_tokens"}}``; images are real PNGs of ``size`` (index counts from 1,
  as in Baidu's example). Every error is **HTTP 200** with ``{"error_code", "error_msg"}``:
  no token -> 100, unknown token -> 110, expired token -> 111, body not JSON -> 336002, wrong types ->
  336001, values out of range (size not one of the 12, n not 1-4, steps not 10-50, seed, cfg_scale 0-30,
  unknown sampler or style, prompt empty or over 1024 chars) -> 336003 with a message naming the field,
  more than ``rpm_limit`` requests in 60 s -> 336501.
  Every generate answer carries ``X-Ratelimit-Limit-Requests`` / ``X-Ratelimit-Remaining-Requests``
  (and ``-Tokens``); on rate-limit errors (4, 17, 18, 19, 336501, 336502) the remaining count is 0.
  Images use ``seed + i``; without a seed one is drawn (Baidu does not report seeds).

Usage::

    async with FakeQianfan(api_key="ak", secret_key="sk", expires_in=60) as fake:
        fake.url                  # base URL, e.g. http://127.0.0.1:PORT
        fake.push_error(110)      # next generate answers {"error_code": 110, ...}
        fake.expire_tokens()      # every token issued so far now answers 111
        fake.token_requests       # how many token requests arrived
        fake.generate_calls[-1].body["size"]

Constructor: ``FakeQianfan(api_key="test-ak", secret_key="test-sk", expires_in=2592000, rpm_limit=300,
v2_api_key="bce-v3/ALTAK-test/secret", v2_models=(), v2_appid=None, v2_rpm_limit=300, blocked_words=())``.
``api_key``/``secret_key`` are the v1 AK/SK (kept for compatibility); the v2 bearer key is ``v2_api_key``.

Planned faults (FIFO, one per generate request -- v1 or v2 -- that passes its credential check; common ones in
``tests.fakes.image_api``: ``push_delay``, ``push_disconnect``, ``push_malformed_json``,
``push_not_an_image``, ``push_bomb``, ``push_wrong_size``, ``push_truncated``, ``push_corrupt_pixels``,
``push_trickle``, ``push_count``, ``push_response``):

- ``push_error(code, msg=None, headers=None)``: HTTP 200 ``{"error_code": code, "error_msg": msg}``,
  ``msg`` defaulting to Baidu's text for that code (``ERROR_MESSAGES``); rate-limit codes get the
  rate-limit headers with remaining 0 (``headers`` adds or overrides headers).
- ``push_token_response(status, body)`` / ``push_token_delay(seconds)``: the same for the token endpoint,
  in its own FIFO ``token_faults``.

Token state: ``expire_tokens()`` (issued tokens answer 111), ``forget_tokens()`` (they answer 110),
``issued_tokens`` (in order), ``token_calls: list[Call]`` and ``token_requests`` (their count).
Recorded: ``generate_calls: list[Call]`` (body, query with access_token, headers).

v2 (OpenAI-style) image generation
----------------------------------

Sources: QF ``https://cloud.baidu.com/doc/qianfan-api/s/Om9b4yj3w`` (error codes), WXW
``https://cloud.baidu.com/doc/WENXINWORKSHOP/s/zm696hdfq`` (the v2 image page: fields, limits, ``steps`` for
flux), and error bodies recorded from the live service by third parties (401 ``invalid_iam_token`` and 401
``invalid_model``: ``iamclancyliang/pi-go``'s qianfan port, 2026-08-31; 429: ``PaddlePaddle/ERNIE#1031``).

- ``POST /v2/images/generations`` with ``Authorization: Bearer <v2_api_key>`` (``bce-v3/ALTAK-.../...``) and a
  JSON body. Optional ``appid`` header: when ``v2_appid`` is set it must equal it, else 401 ``invalid_appid``.
  ``X-Request-Id`` is echoed on every ``/v2...`` answer (when the client sent one).
  Body fields: ``model`` (required: ``irag-1.0``, ``flux.1-schnell`` or one of ``v2_models``, which follow the
  flux rules), ``prompt`` (required; irag <= 220 characters, flux/custom <= 512), ``n`` 1-4 (default 1),
  ``size`` ``"WxH"`` with each side in 512..2048 (default ``1024x1024``), ``refer_image`` (irag only: an
  http(s) URL of at most 1024 bytes -- not fetched -- or ``data:image/<png|jpg|jpeg|webp|bmp|ico>;base64,...``
  of at most 10 MB whose picture has a short side >= 128 px and an aspect ratio <= 4), ``steps`` (flux/custom
  only, 1-50; ignored for irag, as the doc says it only applies to flux), ``user`` (string).
  **Other fields are ignored** (the doc lists no others and says nothing about extras; OpenAI-compatible
  gateways commonly ignore them).
  -> 200 ``{"id": "as-xxxxxxxxxx", "created", "data": [{"url": "<fake url>/v2files/<uuid>.png?authorization=
  bce-auth-v1%2F..."}]}``. GET on that URL (with its ``authorization`` query unchanged, else 403) serves a real
  PNG of ``size``; every index has its own seed, so its own picture. No ``b64_json`` and no seed (neither is
  documented).
- Errors: ``{"error": {"code", "message", "type"}, "id": "as-..."}``, checked in this order:
  missing/wrong bearer -> 401 ``invalid_iam_token`` (message ``invalid_iam_token``, type
  ``invalid_request_error``, as recorded live); wrong/missing ``appid`` (only when ``v2_appid`` is set) -> 401
  ``invalid_appid``; then a planned fault is popped; more than ``v2_rpm_limit`` requests in 60 s -> 429
  ``{"code": "rpm_rate_limit_exceeded", "message": "Rate limit reached for RPM", "type":
  "rate_limit_exceeded"}`` (the live body; the doc table's columns read type ``rate_limit_exceeded`` and
  ``rpm_rate_limit_exceeded``); body not a JSON object -> 400 ``malformed_json`` "Invalid Argument"; no/empty
  ``model`` -> 400 ``invalid_model`` "model is empty"; unknown model -> **401** ``invalid_model`` "The model
  does not exist or you do not have access to it." (recorded live); missing/empty ``prompt``, wrong types,
  ``n``/``size``/``steps`` out of range, ``refer_image`` on a non-irag model -> 400 ``invalid_argument`` with a
  message naming the field [messages are the fake's own; the doc only says "the specific error message"];
  prompt too long -> 400 ``characters_too_long`` "the max input characters is <N>"; a bad ``refer_image``
  -> 400 ``invalid_image_generation_refer_image`` "refer image is invalid, please check parameter"; a prompt
  containing one of ``blocked_words`` -> 400 ``invalid_image_generation_prompt`` "prompt is invalid, please
  check parameter".
- Probe (for ``sdbot check``, nothing generated): ``POST /v2/images/generations`` with ``{"model": M}`` and no
  prompt. A good key and an allowed model answer 400 ``invalid_argument`` ("prompt is required"); a bad key
  401 ``invalid_iam_token``; a model the key may not use 401 ``invalid_model``. (``{}`` answers 400
  ``invalid_model`` "model is empty": proves the key only.) It is a generate request like any other: it is
  recorded and, once past the credential check, pops a planned fault.
- v2 faults (the generic ones above apply too; picture faults change what the file URLs serve):

  - ``push_v2_error(status, code, message, type="invalid_request_error", headers=None)``: exactly that error.
  - ``push_v2_rate_limit(kind="rpm")``: 429 ``{kind}_rate_limit_exceeded`` (``rpm`` or ``tpm``).
  - ``push_moderation()``: 400 ``invalid_image_generation_prompt``. [uncertain: the doc lists this code for an
    invalid prompt; whether the content check uses it or a moderation-specific code is not documented.]
  - ``push_expired_url(status=403)``: a normal success whose file URLs answer ``status`` (403 ``AccessDenied``
    or 404 ``NoSuchKey``, BOS-style JSON -- the BOS bodies are not verified), as a link that expired would.
  - ``push_huge_download(nbytes, declare_length=True)``: a normal success whose files are ``nbytes`` long (a PNG
    signature and header, then padding), with or without ``Content-Length`` (chunked), to test size bounds.

Recorded: v2 generate requests land in ``generate_calls`` (with the v1 ones) **and** in ``v2_calls``;
``v2_file_gets`` lists the file names fetched; ``v2_files`` maps name -> ``V2File``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import io
import re
import struct
import time
import uuid
import zlib
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from aiohttp import web
from PIL import Image

from tests.fakes.image_api import DELAY, RESPONSE, Call, Fault, ImageApiFake
from tests.fakes.images import PNG_SIGNATURE

TOKEN_PATH = "/oauth/2.0/token"
GENERATE_PATH = "/rpc/2.0/ai_custom/v1/wenxinworkshop/text2image/sd_xl"

ERROR_MESSAGES: dict[int, str] = {
    1: "Unknown error",
    2: "Service temporarily unavailable",
    3: "Unsupported openapi method",
    4: "Open api request limit reached",
    6: "No permission to access data",
    13: "Get service token failed",
    14: "IAM Certification failed",
    15: "app not exists or create failed",
    17: "Open api daily request limit reached",
    18: "Open api qps request limit reached",
    19: "Open api total request limit reached",
    100: "Invalid parameter",
    110: "Access token invalid or no longer valid",
    111: "Access token expired",
    336000: "Internal error",
    336001: "Invalid Argument",
    336002: "Invalid JSON",
    336003: "Invalid argument",
    336100: "try again later",
    336501: "Rate limit reached for RPM",
    336502: "Rate limit reached for TPM",
}
RATE_LIMIT_CODES = frozenset({4, 17, 18, 19, 336501, 336502})

SIZES = (
    "768x768",
    "1024x1024",
    "1536x1536",
    "2048x2048",
    "1024x768",
    "2048x1536",
    "768x1024",
    "1536x2048",
    "1024x576",
    "2048x1152",
    "576x1024",
    "1152x2048",
)
SAMPLERS = (
    "Euler",
    "Euler a",
    "DPM++ 2M",
    "DPM++ 2M Karras",
    "LMS Karras",
    "DPM++ SDE",
    "DPM++ SDE Karras",
    "DPM2 a Karras",
    "Heun",
    "DPM++ 2M SDE",
    "DPM++ 2M SDE Karras",
    "DPM2",
    "DPM2 Karras",
    "DPM2 a",
    "LMS",
)
STYLES = (
    "Base",
    "3D Model",
    "Analog Film",
    "Anime",
    "Cinematic",
    "Comic Book",
    "Craft Clay",
    "Digital Art",
    "Enhance",
    "Fantasy Art",
    "Isometric",
    "Line Art",
    "Lowpoly",
    "Neonpunk",
    "Origami",
    "Photographic",
    "Pixel Art",
    "Texture",
)
MAX_SEED = 4294967295
TPM_LIMIT = 300000

# -- v2 ----------------------------------------------------------------------------------------------------------
V2_GENERATE_PATH = "/v2/images/generations"
V2_FILES_PATH = "/v2files/{name}"
DEFAULT_V2_API_KEY = "bce-v3/ALTAK-test/secret"
V2_MIN_SIDE, V2_MAX_SIDE = 512, 2048
V2_DEFAULT_SIZE = "1024x1024"
REFER_IMAGE_MAX_BYTES = 10 * 1024 * 1024
REFER_IMAGE_URL_MAX_BYTES = 1024
REFER_IMAGE_FORMATS = ("png", "jpg", "jpeg", "webp", "bmp", "ico", "x-icon")
INVALID_REQUEST = "invalid_request_error"
MODEL_EMPTY = "model is empty"
MODEL_NO_ACCESS = "The model does not exist or you do not have access to it."
PROMPT_INVALID = "prompt is invalid, please check parameter"
REFER_IMAGE_INVALID = "refer image is invalid, please check parameter"
V2_RATE_LIMIT_MESSAGES = {"rpm": "Rate limit reached for RPM", "tpm": "Rate limit reached for TPM"}

# Fault kinds of the v2 files (the generic picture faults apply to them too).
EXPIRED_URL = "v2_expired_url"
HUGE_DOWNLOAD = "v2_huge_download"

_DATA_URI = re.compile(r"^data:image/([a-z-]+);base64,(.*)$", re.DOTALL)
_SIZE = re.compile(r"^(\d{1,5})x(\d{1,5})$")


@dataclass(frozen=True)
class V2Model:
    """What the v2 endpoint accepts for one model (WXW zm696hdfq)."""

    prompt_max: int
    refer_image: bool  # irag-1.0 only
    steps: bool  # flux.1-schnell only (1-50); ignored elsewhere


V2_MODELS: dict[str, V2Model] = {
    "irag-1.0": V2Model(prompt_max=220, refer_image=True, steps=False),
    "flux.1-schnell": V2Model(prompt_max=512, refer_image=False, steps=True),
}
CUSTOM_V2_MODEL = V2Model(prompt_max=512, refer_image=False, steps=True)  # a self-deployed service: flux rules


@dataclass
class V2File:
    """A picture the fake serves under ``/v2files/`` for a v2 answer."""

    data: bytes
    authorization: str  # the ``authorization`` query the URL carries; a GET without it answers 403
    width: int
    height: int
    status: int = 200  # 403/404 once the link "expired" (push_expired_url)
    huge: int = 0  # > 0: serve this many bytes instead of ``data`` (push_huge_download)
    declare_length: bool = True


class QianfanV2Error(Exception):
    """A v2 request Baidu would refuse: HTTP ``status`` and the ``error`` object's fields."""

    def __init__(self, status: int, code: str, message: str, type_: str = INVALID_REQUEST) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.type = type_


def _bad_argument(message: str) -> QianfanV2Error:
    return QianfanV2Error(400, "invalid_argument", message)


def _v2_int(body: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad_argument(f"{name} must be an integer")
    if not low <= value <= high:
        raise _bad_argument(f"{name} must be in range [{low}, {high}]")
    return value


def _check_refer_image(value: Any) -> None:
    """A URL (not fetched: no network) or a data URI whose picture meets the documented limits."""
    if not isinstance(value, str) or not value:
        raise QianfanV2Error(400, "invalid_image_generation_refer_image", REFER_IMAGE_INVALID)
    if value.startswith(("http://", "https://")):
        if len(value.encode()) > REFER_IMAGE_URL_MAX_BYTES:
            raise QianfanV2Error(400, "invalid_image_generation_refer_image", REFER_IMAGE_INVALID)
        return
    match = _DATA_URI.match(value)
    if match is None or match.group(1) not in REFER_IMAGE_FORMATS:
        raise QianfanV2Error(400, "invalid_image_generation_refer_image", REFER_IMAGE_INVALID)
    try:
        raw = base64.b64decode(match.group(2), validate=True)
    except (binascii.Error, ValueError):
        raise QianfanV2Error(400, "invalid_image_generation_refer_image", REFER_IMAGE_INVALID) from None
    if not raw or len(raw) > REFER_IMAGE_MAX_BYTES:
        raise QianfanV2Error(400, "invalid_image_generation_refer_image", REFER_IMAGE_INVALID)
    try:
        with Image.open(io.BytesIO(raw)) as picture:
            width, height = picture.size
    except Exception:  # anything Pillow cannot open is "not a valid picture"
        raise QianfanV2Error(400, "invalid_image_generation_refer_image", REFER_IMAGE_INVALID) from None
    if min(width, height) < 128 or max(width, height) > 4 * min(width, height):
        raise QianfanV2Error(400, "invalid_image_generation_refer_image", REFER_IMAGE_INVALID)


def check_v2_body(body: Any, extra_models: Iterable[str] = (), blocked_words: Iterable[str] = ()) -> dict[str, Any]:
    """Validate a v2 generate body as described in the module docstring; return the effective parameters."""
    if not isinstance(body, dict):
        raise QianfanV2Error(400, "malformed_json", "Invalid Argument")
    model_name = body.get("model")
    if model_name is None or model_name == "":
        raise QianfanV2Error(400, "invalid_model", MODEL_EMPTY)
    if not isinstance(model_name, str):
        raise _bad_argument("model must be a string")
    model = V2_MODELS.get(model_name) or (CUSTOM_V2_MODEL if model_name in set(extra_models) else None)
    if model is None:
        raise QianfanV2Error(401, "invalid_model", MODEL_NO_ACCESS)
    prompt = body.get("prompt")
    if prompt is None or prompt == "":
        raise _bad_argument("prompt is required")
    if not isinstance(prompt, str):
        raise _bad_argument("prompt must be a string")
    if len(prompt) > model.prompt_max:
        raise QianfanV2Error(400, "characters_too_long", f"the max input characters is {model.prompt_max}")
    n = _v2_int(body, "n", 1, 1, 4)
    size = body.get("size")
    if size is None or size == "":
        size = V2_DEFAULT_SIZE
    if not isinstance(size, str):
        raise _bad_argument("size must be a string")
    size_match = _SIZE.match(size)
    if size_match is None:
        raise _bad_argument(f"size is invalid: {size}")
    width, height = int(size_match.group(1)), int(size_match.group(2))
    if not (V2_MIN_SIDE <= width <= V2_MAX_SIDE and V2_MIN_SIDE <= height <= V2_MAX_SIDE):
        raise _bad_argument(f"size must be between {V2_MIN_SIDE}x{V2_MIN_SIDE} and {V2_MAX_SIDE}x{V2_MAX_SIDE}")
    if body.get("refer_image") is not None:
        if not model.refer_image:
            raise _bad_argument(f"refer_image is not supported by model {model_name}")
        _check_refer_image(body["refer_image"])
    if model.steps:
        _v2_int(body, "steps", 4, 1, 50)
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise _bad_argument("user must be a string")
    lowered = prompt.lower()
    if any(word and word.lower() in lowered for word in blocked_words):
        raise QianfanV2Error(400, "invalid_image_generation_prompt", PROMPT_INVALID)
    return {"model": model_name, "prompt": prompt, "n": n, "width": width, "height": height}


def _png_header(width: int, height: int) -> bytes:
    """A PNG signature and IHDR chunk declaring ``width`` x ``height`` (the start of a huge download)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    crc = zlib.crc32(b"IHDR" + header)
    return PNG_SIGNATURE + struct.pack(">I", len(header)) + b"IHDR" + header + struct.pack(">I", crc)


class QianfanArgumentError(Exception):
    """A request body Baidu would refuse: ``code`` (336001 or 336003) and ``msg``."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


def _check_body(body: Any) -> dict[str, Any]:
    """Validate a generate body like Baidu does; return the effective parameters (defaults filled)."""
    if not isinstance(body, dict):
        raise QianfanArgumentError(336001, "Invalid Argument")
    kinds: dict[str, tuple[type, ...]] = {
        "prompt": (str,),
        "negative_prompt": (str,),
        "size": (str,),
        "sampler_index": (str,),
        "style": (str,),
        "user_id": (str,),
        "n": (int,),
        "steps": (int,),
        "seed": (int,),
        "cfg_scale": (int, float),
    }
    for name, allowed in kinds.items():
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, allowed):
            raise QianfanArgumentError(336001, "Invalid Argument")
    params: dict[str, Any] = {
        "prompt": body.get("prompt"),
        "negative_prompt": body.get("negative_prompt") or "",
        "size": body.get("size") or "1024x1024",
        "n": body.get("n", 1),
        "steps": body.get("steps", 20),
        "sampler_index": body.get("sampler_index") or "Euler a",
        "seed": body.get("seed"),
        "cfg_scale": body.get("cfg_scale", 5),
        "style": body.get("style") or "Base",
    }
    if not params["prompt"]:
        raise QianfanArgumentError(336003, "prompt is required and cannot be empty")
    for name in ("prompt", "negative_prompt"):
        if len(params[name]) > 1024:
            raise QianfanArgumentError(336003, f"{name} length cannot exceed 1024 characters")
    if params["size"] not in SIZES:
        raise QianfanArgumentError(336003, f"size must be one of {', '.join(SIZES)}")
    if not 1 <= params["n"] <= 4:
        raise QianfanArgumentError(336003, "n must be in range [1, 4]")
    if not 10 <= params["steps"] <= 50:
        raise QianfanArgumentError(336003, "steps must be in range [10, 50]")
    if params["seed"] is not None and not 0 <= params["seed"] <= MAX_SEED:
        raise QianfanArgumentError(336003, f"seed must be in range [0, {MAX_SEED}]")
    if not 0 <= params["cfg_scale"] <= 30:
        raise QianfanArgumentError(336003, "cfg_scale must be in range [0, 30]")
    if params["sampler_index"] not in SAMPLERS:
        raise QianfanArgumentError(336003, f"sampler_index is invalid: {params['sampler_index']}")
    if params["style"] not in STYLES:
        raise QianfanArgumentError(336003, f"style is invalid: {params['style']}")
    return params


def estimate_tokens(*texts: str) -> int:
    """Baidu's documented estimate: number of Chinese characters + number of words * 1.3."""
    total = 0.0
    for text in texts:
        total += len(re.findall(r"[\u4e00-\u9fff]", text))
        total += 1.3 * len(re.findall(r"[A-Za-z0-9]+", text))
    return round(total)


class FakeQianfan(ImageApiFake):
    """Baidu Qianfan SDXL: OAuth token endpoint plus the sd_xl generate endpoint (see module doc)."""

    def __init__(
        self,
        *,
        api_key: str = "test-ak",
        secret_key: str = "test-sk",
        expires_in: int = 2592000,
        rpm_limit: int = 300,
        v2_api_key: str = DEFAULT_V2_API_KEY,
        v2_models: Iterable[str] = (),
        v2_appid: str | None = None,
        v2_rpm_limit: int = 300,
        blocked_words: Iterable[str] = (),
    ) -> None:
        super().__init__()
        self.api_key = api_key
        self.secret_key = secret_key
        self.expires_in = expires_in
        self.rpm_limit = rpm_limit
        self.v2_api_key = v2_api_key
        self.v2_models = tuple(v2_models)
        self.v2_appid = v2_appid
        self.v2_rpm_limit = v2_rpm_limit
        self.blocked_words = tuple(blocked_words)
        self.v2_calls: list[Call] = []
        self.v2_files: dict[str, V2File] = {}
        self.v2_file_gets: list[str] = []
        self._recent_v2: deque[float] = deque()  # monotonic times of v2 generate requests
        self.token_calls: list[Call] = []
        self.token_faults: deque[Fault] = deque()
        self.issued_tokens: list[str] = []
        self._token_expiry: dict[str, float] = {}  # token -> time.time() after which it answers 111
        self._recent: deque[float] = deque()  # monotonic times of generate requests, for the RPM window
        self.app.router.add_route("*", TOKEN_PATH, self._token)
        self.app.router.add_post(GENERATE_PATH, self._generate)
        self.app.router.add_post(V2_GENERATE_PATH, self._generate_v2)
        self.app.router.add_get(V2_FILES_PATH, self._get_v2_file)
        self.app.on_response_prepare.append(self._echo_request_id)

    # -- test controls -----------------------------------------------------------------------------
    @property
    def token_requests(self) -> int:
        return len(self.token_calls)

    def expire_tokens(self) -> None:
        """Every token issued so far becomes expired: generate answers 111."""
        for token in self._token_expiry:
            self._token_expiry[token] = 0.0

    def forget_tokens(self) -> None:
        """Every token issued so far becomes unknown: generate answers 110."""
        self._token_expiry.clear()

    def push_error(self, code: int, msg: str | None = None, headers: dict[str, str] | None = None) -> Fault:
        body = {"error_code": code, "error_msg": msg if msg is not None else ERROR_MESSAGES.get(code, "error")}
        merged = self._rate_headers(remaining=0) if code in RATE_LIMIT_CODES else self._rate_headers()
        merged.update(headers or {})
        return self.push(Fault(RESPONSE, body=body, headers=merged))

    def push_v2_error(
        self,
        status: int,
        code: str,
        message: str,
        type: str = INVALID_REQUEST,  # the wire field's name
        headers: dict[str, str] | None = None,
    ) -> Fault:
        """The next generate answers ``status`` ``{"error": {"code", "message", "type"}, "id"}``."""
        return self.push_response(status, self._v2_error_body(code, message, type), headers)

    def push_v2_rate_limit(self, kind: str = "rpm") -> Fault:
        """429 as the live service answers when the ``rpm`` (or ``tpm``) quota is spent."""
        code, message = f"{kind}_rate_limit_exceeded", V2_RATE_LIMIT_MESSAGES[kind]
        return self.push_v2_error(429, code, message, "rate_limit_exceeded")

    def push_moderation(self) -> Fault:
        """400 ``invalid_image_generation_prompt`` (see the module docstring for the uncertainty)."""
        return self.push_v2_error(400, "invalid_image_generation_prompt", PROMPT_INVALID)

    def push_expired_url(self, status: int = 403) -> Fault:
        """A normal success whose file URLs answer ``status`` (403 or 404), like links that expired."""
        if status not in (403, 404):
            raise ValueError("an expired BOS link answers 403 or 404")
        return self.push(Fault(EXPIRED_URL, options={"status": status}))

    def push_huge_download(self, nbytes: int, declare_length: bool = True) -> Fault:
        """A normal success whose files are ``nbytes`` long, with (or without) a ``Content-Length``."""
        return self.push(Fault(HUGE_DOWNLOAD, options={"nbytes": nbytes, "declare_length": declare_length}))

    def push_token_response(self, status: int, body: Any) -> Fault:
        fault = Fault(RESPONSE, status=status, body=body)
        self.token_faults.append(fault)
        return fault

    def push_token_delay(self, seconds: float) -> Fault:
        fault = Fault(DELAY, seconds=seconds)
        self.token_faults.append(fault)
        return fault

    # -- handlers ----------------------------------------------------------------------------------
    async def _token(self, request: web.Request) -> web.StreamResponse:
        self.token_calls.append(await Call.from_request(request))
        fault = self.token_faults.popleft() if self.token_faults else None
        planned = await self.answer_generic_fault(request, fault)
        if planned is not None:
            return planned
        query = request.query
        if query.get("grant_type") != "client_credentials":
            return web.json_response(
                {
                    "error": "unsupported_grant_type",
                    "error_description": "The authorization grant type is not supported",
                },
                status=400,
            )
        if query.get("client_id") != self.api_key:
            return web.json_response({"error": "invalid_client", "error_description": "unknown client id"}, status=401)
        if query.get("client_secret") != self.secret_key:
            return web.json_response(
                {"error": "invalid_client", "error_description": "Client authentication failed"}, status=401
            )
        now = time.time()
        token = f"24.{self.rng.getrandbits(128):032x}.{self.expires_in}.{int(now)}.282335-{self.rng.randrange(10**8)}"
        self.issued_tokens.append(token)
        self._token_expiry[token] = now + self.expires_in
        return web.json_response(
            {
                "refresh_token": f"25.{self.rng.getrandbits(128):032x}.315360000.{int(now)}.282335-0",
                "expires_in": self.expires_in,
                "session_key": f"9mzdDZ{self.rng.getrandbits(64):016x}",
                "access_token": token,
                "scope": "public brain_all_scope wenxinworkshop_mgr ai_custom_retail_image_stitch wise_adapt",
                "session_secret": f"{self.rng.getrandbits(128):032x}",
            }
        )

    def _rate_headers(self, remaining: int | None = None) -> dict[str, str]:
        if remaining is None:
            remaining = max(0, self.rpm_limit - len(self._recent))
        return {
            "X-Ratelimit-Limit-Requests": str(self.rpm_limit),
            "X-Ratelimit-Remaining-Requests": str(remaining),
            "X-Ratelimit-Limit-Tokens": str(TPM_LIMIT),
            "X-Ratelimit-Remaining-Tokens": str(TPM_LIMIT if remaining else 0),
        }

    def _error(self, code: int, msg: str | None = None) -> web.Response:
        remaining = 0 if code in RATE_LIMIT_CODES else None
        body = {"error_code": code, "error_msg": msg or ERROR_MESSAGES[code]}
        return web.json_response(body, headers=self._rate_headers(remaining))

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        call = await self.record_generate(request)
        token = request.query.get("access_token")
        if not token:
            return self._error(100)
        expiry = self._token_expiry.get(token)
        if expiry is None:
            return self._error(110)
        if time.time() >= expiry:
            return self._error(111)
        fault = self.take_fault()
        planned = await self.answer_generic_fault(request, fault)
        if planned is not None:
            return planned

        now = time.monotonic()
        while self._recent and now - self._recent[0] > 60:
            self._recent.popleft()
        if len(self._recent) >= self.rpm_limit:
            return self._error(336501)
        self._recent.append(now)

        if call.body is None:
            return self._error(336002)
        try:
            params = _check_body(call.body)
        except QianfanArgumentError as exc:
            return self._error(exc.code, exc.msg)

        width, height = (int(part) for part in params["size"].split("x"))
        seed = params["seed"] if params["seed"] is not None else self.draw_seed()
        data = [
            {
                "object": "image",
                "b64_image": base64.b64encode(self.image(fault, width, height, seed + i)).decode(),
                "index": i + 1,
            }
            for i in range(self.image_count(fault, params["n"]))
        ]
        tokens = estimate_tokens(params["prompt"], params["negative_prompt"])
        answer = {
            "id": f"as-{self.rng.getrandbits(48):012x}"[:13],
            "object": "image",
            "created": int(time.time()),
            "data": data,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
        return web.json_response(answer, headers=self._rate_headers())

    # -- v2 ----------------------------------------------------------------------------------------------------
    def _v2_id(self) -> str:
        alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
        return "as-" + "".join(self.rng.choice(alphabet) for _ in range(10))

    def _v2_error_body(self, code: str, message: str, type_: str = INVALID_REQUEST) -> dict[str, Any]:
        return {"error": {"code": code, "message": message, "type": type_}, "id": self._v2_id()}

    def _v2_error(self, status: int, code: str, message: str, type_: str = INVALID_REQUEST) -> web.Response:
        return web.json_response(self._v2_error_body(code, message, type_), status=status)

    async def _echo_request_id(self, request: web.Request, response: web.StreamResponse) -> None:
        """Baidu echoes ``X-Request-Id`` (QF 3m9b5lqft); only the v2 routes, so v1 answers stay as they were."""
        request_id = request.headers.get("X-Request-Id")
        if request_id and request.path.startswith(("/v2/", "/v2files/")):
            response.headers["X-Request-Id"] = request_id

    def _v2_auth_error(self, request: web.Request) -> web.Response | None:
        scheme, _, key = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or key.strip() != self.v2_api_key:
            return self._v2_error(401, "invalid_iam_token", "invalid_iam_token")
        if self.v2_appid is not None and request.headers.get("appid") != self.v2_appid:
            return self._v2_error(401, "invalid_appid", "invalid appid")
        return None

    def _v2_rate_limited(self) -> bool:
        now = time.monotonic()
        while self._recent_v2 and now - self._recent_v2[0] > 60:
            self._recent_v2.popleft()
        if len(self._recent_v2) >= self.v2_rpm_limit:
            return True
        self._recent_v2.append(now)
        return False

    async def _generate_v2(self, request: web.Request) -> web.StreamResponse:
        call = await self.record_generate(request)
        self.v2_calls.append(call)
        refused = self._v2_auth_error(request)
        if refused is not None:
            return refused
        fault = self.take_fault()
        planned = await self.answer_generic_fault(request, fault)
        if planned is not None:
            return planned
        if self._v2_rate_limited():
            return self._v2_error(429, "rpm_rate_limit_exceeded", V2_RATE_LIMIT_MESSAGES["rpm"], "rate_limit_exceeded")
        try:
            params = check_v2_body(call.body, self.v2_models, self.blocked_words)
        except QianfanV2Error as exc:
            return self._v2_error(exc.status, exc.code, exc.message, exc.type)

        width, height = params["width"], params["height"]
        base_seed = self.draw_seed()
        data = []
        for i in range(self.image_count(fault, params["n"])):
            name = f"{uuid.UUID(int=self.rng.getrandbits(128))}.png"
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            access_key, signature = f"{self.rng.getrandbits(128):032x}", f"{self.rng.getrandbits(256):064x}"
            authorization = f"bce-auth-v1/{access_key}/{stamp}/86400/host/{signature}"
            stored = V2File(self.image(fault, width, height, base_seed + i), authorization, width, height)
            if fault is not None and fault.kind == EXPIRED_URL:
                stored.status = int(fault.options["status"])
            elif fault is not None and fault.kind == HUGE_DOWNLOAD:
                stored.huge = int(fault.options["nbytes"])
                stored.declare_length = bool(fault.options["declare_length"])
            self.v2_files[name] = stored
            data.append({"url": f"{self.url}/v2files/{name}?authorization={quote(authorization, safe='')}"})
        return web.json_response({"id": self._v2_id(), "created": int(time.time()), "data": data})

    async def _get_v2_file(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.v2_file_gets.append(name)
        stored = self.v2_files.get(name)
        request_id = f"{uuid.UUID(int=self.rng.getrandbits(128))}"
        if stored is None or stored.status == 404:
            body = {"code": "NoSuchKey", "message": "The specified key does not exist.", "requestId": request_id}
            return web.json_response(body, status=404)
        if request.query.get("authorization") != stored.authorization or stored.status == 403:
            body = {"code": "AccessDenied", "message": "Access denied.", "requestId": request_id}
            return web.json_response(body, status=403)
        if not stored.huge:
            return web.Response(body=stored.data, content_type="image/png")
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        if stored.declare_length:
            response.content_length = stored.huge
        await response.prepare(request)
        head = _png_header(stored.width, stored.height)[: stored.huge]
        left = stored.huge - len(head)
        with contextlib.suppress(ConnectionError):
            await response.write(head)
            chunk = b"\x00" * 65536
            while left > 0 and not self._closing.is_set():
                piece = chunk[: min(left, len(chunk))]
                await response.write(piece)
                left -= len(piece)
            await response.write_eof()
        return response
