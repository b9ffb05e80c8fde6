"""A fake Baidu Qianfan (wenxinworkshop) Stable-Diffusion-XL API, on 127.0.0.1.

Wire format (reference: shared/reference/backends.md, seed 000):

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

Constructor: ``FakeQianfan(api_key="test-ak", secret_key="test-sk", expires_in=2592000, rpm_limit=300)``.

Planned faults (FIFO, one per generate request carrying a valid token; common ones in
``tests.fakes.image_api``: ``push_delay``, ``push_disconnect``, ``push_malformed_json``,
``push_not_an_image``, ``push_bomb``, ``push_wrong_size``, ``push_response``):

- ``push_error(code, msg=None, headers=None)``: HTTP 200 ``{"error_code": code, "error_msg": msg}``,
  ``msg`` defaulting to Baidu's text for that code (``ERROR_MESSAGES``); rate-limit codes get the
  rate-limit headers with remaining 0 (``headers`` adds or overrides headers).
- ``push_token_response(status, body)`` / ``push_token_delay(seconds)``: the same for the token endpoint,
  in its own FIFO ``token_faults``.

Token state: ``expire_tokens()`` (issued tokens answer 111), ``forget_tokens()`` (they answer 110),
``issued_tokens`` (in order), ``token_calls: list[Call]`` and ``token_requests`` (their count).
Recorded: ``generate_calls: list[Call]`` (body, query with access_token, headers).
"""

from __future__ import annotations

import base64
import re
import time
from collections import deque
from typing import Any

from aiohttp import web

from tests.fakes.image_api import DELAY, RESPONSE, Call, Fault, ImageApiFake

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
    ) -> None:
        super().__init__()
        self.api_key = api_key
        self.secret_key = secret_key
        self.expires_in = expires_in
        self.rpm_limit = rpm_limit
        self.token_calls: list[Call] = []
        self.token_faults: deque[Fault] = deque()
        self.issued_tokens: list[str] = []
        self._token_expiry: dict[str, float] = {}  # token -> time.time() after which it answers 111
        self._recent: deque[float] = deque()  # monotonic times of generate requests, for the RPM window
        self.app.router.add_route("*", TOKEN_PATH, self._token)
        self.app.router.add_post(GENERATE_PATH, self._generate)

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
