"""Stability AI REST v1 text-to-image (``/v1/generation/{engine}/text-to-image``), all ``n`` images in one call;
drawing from a picture, ``/v1/generation/{engine}/image-to-image`` (a multipart form with the picture as
``init_image``, at the request's size: the core fitted it to exactly that). No upscaling.

The body and the style/sampler mapping live in :mod:`bot.backends.sdxl_v1`, shared with Bedrock.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from bot.backends import sdxl_v1
from bot.backends.base import CheckReport, Finding, GeneratedImage, ProgressCallback
from bot.backends.http import (
    RETRYABLE_TRANSPORT,
    RetryPolicy,
    parse_json,
    provider_said,
    rate_limited,
    send,
)
from bot.backends.http_backend import DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT, HttpBackend
from bot.errors import BackendError
from bot.messages.i18n import Msg
from bot.process import cpu, redact

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.draw.request import DrawRequest

log = logging.getLogger(__name__)

PROVIDER = "stability"
DEFAULT_BASE_URL = "https://api.stability.ai"
DEFAULT_ENGINE = "stable-diffusion-xl-1024-v1-0"
BALANCE_PATH = "/v1/user/balance"
ENGINES_PATH = "/v1/engines/list"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
CONTENT_MODERATION = "content_moderation"  # v2beta's 403 name
RATE_WINDOW_SECONDS = 10.0  # Stability's limit is 150 requests per 10 s


class StabilityBackend(HttpBackend):
    name = PROVIDER

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        engine: str = DEFAULT_ENGINE,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        retry: RetryPolicy | None = None,
    ) -> None:
        redact.register(api_key)
        # JSON, not image/png: only JSON answers can carry more than one sample, and every finishReason.
        headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json"}
        caps = sdxl_v1.capabilities(self.name, sdxl_v1.v1_sizes(engine))
        super().__init__(
            base_url, timeout=timeout, connect_timeout=connect_timeout, retry=retry, caps=caps, headers=headers
        )
        self._engine = engine
        self._path = f"/v1/generation/{quote(engine, safe='')}/text-to-image"
        self._img2img_path = f"/v1/generation/{quote(engine, safe='')}/image-to-image"

    @classmethod
    def options(cls, settings: Settings) -> dict[str, Any]:
        cls.require(settings, "STABILITY_API_KEY")
        return {
            "api_key": settings.stability_api_key,
            "base_url": settings.stability_base_url,
            "engine": settings.stability_engine or DEFAULT_ENGINE,
        }

    async def generate(
        self, request: DrawRequest, *, user: str, progress: ProgressCallback | None = None
    ) -> list[GeneratedImage]:
        assert request.seed is not None, "the caller draws the seed"
        if request.task != "draw":  # the Upscale button is not offered (capabilities: no upscale)
            raise BackendError("backend_config", provider=PROVIDER, provider_code="no_upscale")
        seed = request.seed
        if request.source is None:
            payload = sdxl_v1.body(request, seed=seed, samples=request.n)
            data = await self._retry.run(lambda: self._request("POST", self._path, payload), retryable)
        else:
            form = sdxl_v1.image_to_image_form(request, seed=seed, samples=request.n)
            files = [
                *((name, (None, value.encode())) for name, value in form),
                ("init_image", ("init_image.png", request.source.data, "image/png")),
            ]
            data = await self._retry.run(lambda: self._request("POST", self._img2img_path, files=files), retryable)
        # Decoding megabytes of base64 is CPU work: off the event loop.
        return await cpu.run(sdxl_v1.artifacts, data, request, PROVIDER)

    async def _request(
        self, method: str, path: str, payload: dict[str, Any] | None = None, *, files: list[Any] | None = None
    ) -> Any:
        extra: dict[str, Any] = {"files": files} if files is not None else {"json": payload}
        response, body = await send(self._client, method, path, provider=PROVIDER, **extra)
        if response.status_code != 200:
            raise status_error(response)
        try:
            return await parse_json(body)
        except ValueError:
            # Not retried: the answer was cut or mangled after Stability did (and billed) the work.
            raise BackendError("backend_unavailable", provider=PROVIDER, reason="malformed") from None

    async def check(self) -> CheckReport:
        """The balance (free; proves the key) and the engine list (free; proves STABILITY_ENGINE exists for
        this key). Nothing is generated."""
        findings: list[tuple[str | Msg, Finding]] = [
            (Msg("check.label.endpoint"), str(self._client.base_url)),
        ]
        try:
            await balance_findings(self._client, findings)
            engines = await self._request("GET", ENGINES_PATH)
            ids = [e.get("id") for e in engines if isinstance(e, dict)] if isinstance(engines, list) else []
            if self._engine not in ids:
                missing = Msg("check.stability.engine_missing", {"engine": self._engine, "available": ids})
                findings.append((Msg("check.label.engine"), missing))
                raise BackendError("backend_config", provider=PROVIDER, reason="engine")
            findings.append((Msg("check.label.engine"), Msg("check.stability.engine_ok", {"engine": self._engine})))
        except BackendError as exc:
            findings.append((Msg("check.label.problem"), exc))
            return CheckReport(self.name, False, findings)
        return CheckReport(self.name, True, findings)


async def balance_findings(client: httpx.AsyncClient, findings: list[tuple[str | Msg, Finding]]) -> None:
    """Add the account's credits to ``findings`` (a free call that proves the key, on v1 and v2beta alike);
    none left is an error, raised after they are shown."""
    response, body = await send(client, "GET", BALANCE_PATH, provider=PROVIDER)
    if response.status_code != 200:
        raise status_error(response)
    try:
        balance = await parse_json(body)
    except ValueError:
        balance = None
    credits = balance.get("credits") if isinstance(balance, dict) else None
    if not isinstance(credits, int | float) or isinstance(credits, bool):
        raise BackendError("backend_unavailable", provider=PROVIDER, reason="malformed")
    findings.append((Msg("check.label.balance"), Msg("check.stability.credits", {"credits": f"{credits:g}"})))
    if credits <= 0:
        raise BackendError("backend_quota_exhausted", provider=PROVIDER, reason="no_credits")


def retryable(exc: BackendError) -> bool:
    return exc.params.get("status") in RETRY_STATUSES or exc.params.get("reason") in RETRYABLE_TRANSPORT


def status_error(response: httpx.Response) -> BackendError:
    """Stability's error as our outcome: v1's ``{"id", "name", "message"}`` or v2beta's ``{"id", "name",
    "errors": [...]}``; ``name`` kept as the provider code, the words for the operator."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        data = {}
    errors, message = data.get("errors"), data.get("message")
    if isinstance(errors, list) and errors:
        said: str | None = "; ".join(str(error) for error in errors)
    else:
        said = str(message) if message else None
    name = str(data.get("name") or "")
    log.warning("stability answered HTTP %s %s: %s", response.status_code, name, (said or "")[:200])
    return provider_said(_status_outcome(response, name), said)


def _status_outcome(response: httpx.Response, name: str) -> BackendError:
    status = response.status_code
    code: str | int = name or status
    if status == 403 and name == CONTENT_MODERATION:
        # v2beta's moderation refused the prompt before drawing (and did not bill): the filter outcome.
        return BackendError("content_filtered", provider=PROVIDER, provider_code=code)
    if status == 429:
        return rate_limited(PROVIDER, code, status, response.headers, RATE_WINDOW_SECONDS)
    if status in (400, 413, 422):
        # 422: English only, or a public figure's likeness (v2beta); 413: a picture too large for the service.
        # The request's values (dimensions, samples, prompt length...): validation should have caught them.
        return BackendError("backend_invalid_request", provider=PROVIDER, provider_code=code, user_fault=True)
    if status == 401:
        return BackendError("backend_auth_failed", provider=PROVIDER, provider_code=code, status=status)
    if status == 402:
        return BackendError("backend_quota_exhausted", provider=PROVIDER, provider_code=code, status=status)
    if status in (403, 404):
        # 403: the key may not use this engine or organization; 404: STABILITY_ENGINE names no engine.
        return BackendError("backend_config", provider=PROVIDER, provider_code=code, status=status)
    return BackendError("backend_unavailable", provider=PROVIDER, provider_code=code, status=status)
