"""Services that follow OpenAI's ``POST /v1/images/generations``: OpenAI itself (gpt-image models), and the
providers and proxies that copy it (DeepInfra's FLUX and SDXL, LiteLLM in front of other services). Pictures
come back as ``b64_json`` or as a ``url`` fetched with a size bound. Baidu Qianfan v2 speaks the same shape with
its own errors (:mod:`bot.backends.qianfan_v2`)."""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

import httpx

from bot.backends.base import CheckReport, Finding, GeneratedImage, ProgressCallback
from bot.backends.batch import one_per_call
from bot.backends.download import download
from bot.backends.http import (
    RETRYABLE_TRANSPORT,
    RetryPolicy,
    decode_b64,
    parse_json,
    provider_said,
    rate_limited,
    send,
    sniff_format,
)
from bot.backends.http_backend import DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT, HttpBackend
from bot.draw import params
from bot.draw.capabilities import Capabilities
from bot.draw.shape import nearest_ratio
from bot.errors import BackendError
from bot.messages.i18n import Msg
from bot.process import cpu, redact

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.draw.request import DrawRequest

log = logging.getLogger(__name__)

PROVIDER = "openai"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_MODEL = "gpt-image-1.5"
GENERATE_PATH = "/images/generations"
MODELS_PATH = "/models"
DEFAULT_MAX_DOWNLOAD = 20 * 1024 * 1024
DEFAULT_RATE_WAIT = 20.0
# The sizes a model family takes (OpenAI's reference); another model is sent the size asked for.
GPT_IMAGE_SIZES = ("1024x1024", "1536x1024", "1024x1536")
DALL_E_3_SIZES = ("1024x1024", "1792x1024", "1024x1792")
# Options no service of this shape takes: its requests are a prompt, a count and a size.
UNSUPPORTED = frozenset({"steps", "sampler", "cfg", "style", "seed", "negative"})
RETRY_STATUSES = frozenset({500, 502, 503, 504})


def model_sizes(model: str) -> tuple[str, ...]:
    """What ``model`` draws, by its family: the gpt-image and dall-e-3 sizes, or every size of ours."""
    if model.startswith(("gpt-image", "chatgpt-image")):
        return GPT_IMAGE_SIZES
    if model.startswith("dall-e-3"):
        return DALL_E_3_SIZES
    return params.SIZES


def ratio_label(size: str) -> str:
    """``1536x1024`` -> ``3:2``: the name a size goes by in captions and in the nearest-ratio choice."""
    width, height = (int(side) for side in size.split("x"))
    divisor = math.gcd(width, height)
    return f"{width // divisor}:{height // divisor}"


class OpenAIImagesBackend(HttpBackend):
    """The Images API. A model whose sizes are not ours draws each ``--size`` at the nearest of its own."""

    name = PROVIDER
    provider = PROVIDER
    rate_wait = DEFAULT_RATE_WAIT  # seconds a rate-limited user is told when the answer says none

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        model: str = DEFAULT_MODEL,
        sizes: tuple[str, ...] = (),
        max_n: int = params.N_RANGE[1],
        max_download: int = DEFAULT_MAX_DOWNLOAD,
        prompt_max: int = params.PROMPT_MAX,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        retry: RetryPolicy | None = None,
    ) -> None:
        redact.register(api_key)
        sizes = sizes or model_sizes(model)
        exact = set(params.SIZES) <= set(sizes)
        # Ratio name -> the size sent; empty when every size of ours is sent as it is.
        self._by_ratio = {} if exact else {ratio_label(size): size for size in sizes}
        caps = Capabilities(
            backend=self.name,
            sizes=params.SIZES,
            samplers=(),
            styles=(params.DEFAULT_STYLE,),
            max_n=max_n,
            prompt_max=prompt_max,
            negative_prompt=False,
            seed=False,
            aspect_ratios=tuple(self._by_ratio),
            unsupported=UNSUPPORTED,
        )
        headers = {"Authorization": f"Bearer {api_key}"}
        super().__init__(
            base_url, timeout=timeout, connect_timeout=connect_timeout, retry=retry, caps=caps, headers=headers
        )
        self._model = model
        self._max_download = max_download
        self._timeout = timeout
        # dall-e-3 draws one picture per request; dall-e models answer with links unless asked for base64.
        self._one_per_call = model.startswith("dall-e-3")
        self._dall_e = model.startswith("dall-e")

    @classmethod
    def options(cls, settings: Settings) -> dict[str, Any]:
        cls.require(settings, "OPENAI_API_KEY")
        return {
            "api_key": settings.openai_api_key,
            "base_url": settings.openai_base_url,
            "model": settings.openai_model,
            "sizes": settings.openai_sizes or (),
            "max_download": settings.max_download,
        }

    def ratio(self, request: DrawRequest) -> str | None:
        """The ratio of the model's own size ``request`` is drawn at, when the model lacks our sizes."""
        return nearest_ratio(request.width, request.height, tuple(self._by_ratio)) if self._by_ratio else None

    def body(self, request: DrawRequest, *, n: int, user: str) -> dict[str, Any]:
        """The JSON of one request for ``n`` pictures."""
        ratio = self.ratio(request)
        size = request.size if ratio is None else self._by_ratio[ratio]
        body: dict[str, Any] = {"model": self._model, "prompt": request.prompt, "n": n, "size": size, "user": user}
        if self._dall_e:
            body["response_format"] = "b64_json"  # gpt-image models always answer so, and refuse the field
        return body

    async def generate(
        self, request: DrawRequest, *, user: str, progress: ProgressCallback | None = None
    ) -> list[GeneratedImage]:
        assert request.seed is not None, "the caller draws the seed"
        if self._one_per_call:

            async def one(_seed: int) -> list[GeneratedImage]:
                return await self._pictures(self.body(request, n=1, user=user), request)

            return await one_per_call(request.n, request.seed, one, provider=self.provider, progress=progress)
        return await self._pictures(self.body(request, n=request.n, user=user), request)

    async def _pictures(self, body: dict[str, Any], request: DrawRequest) -> list[GeneratedImage]:
        data = await self._retry.run(lambda: self._post(body), self.retryable)
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list) or not items:
            raise BackendError("backend_unavailable", provider=self.provider, reason="no_images")
        out = []
        ratio = self.ratio(request)
        for item in items:
            raw = await self._picture(item)
            out.append(GeneratedImage(raw, sniff_format(raw), request.width, request.height, ratio=ratio))
        return out

    async def _picture(self, item: Any) -> bytes:
        """One ``data`` item's picture: decoded off the loop, or downloaded with the size bound."""
        if isinstance(item, dict) and isinstance(item.get("b64_json"), str | memoryview):
            return await cpu.run(decode_b64, item["b64_json"], self.provider)
        if isinstance(item, dict) and isinstance(item.get("url"), str):
            chunks = await self._retry.run(lambda: self._download(item["url"]), self.retryable)
            return await cpu.run(b"".join, chunks)
        raise BackendError("backend_bad_image", provider=self.provider, reason="missing")

    async def _download(self, url: str) -> list[bytes]:
        return await download(
            self._client,
            url,
            provider=self.provider,
            max_bytes=self._max_download,
            budget=self._timeout,
            missing="url_expired",
            gone=(403, 404),  # signed links (S3, BOS) answer 403 once expired
        )

    async def _post(self, body: dict[str, Any]) -> Any:
        response, answer = await send(self._client, "POST", self.generate_path(), provider=self.provider, json=body)
        if response.status_code != 200:
            raise self.error(response)
        try:
            return await parse_json(answer)
        except ValueError:
            # Not retried: the answer was cut or mangled after the service did (and billed) the work.
            raise BackendError("backend_unavailable", provider=self.provider, reason="malformed") from None

    def generate_path(self) -> str:
        return GENERATE_PATH

    def retryable(self, exc: BackendError) -> bool:
        if exc.params.get("status") in RETRY_STATUSES or exc.provider_code in ("http_502", "http_503", "http_504"):
            return True
        # 429s are not retried here: the wait is the scheduler's, and "insufficient_quota" never passes.
        return exc.params.get("reason") in RETRYABLE_TRANSPORT

    def error(self, response: httpx.Response) -> BackendError:
        """``{"error": {"message", "type", "param", "code"}}`` (a string in some proxies) as our outcome."""
        status = response.status_code
        error = _error_object(response)
        code = str(error.get("code") or error.get("type") or "") or None
        message = error.get("message")
        log.warning("%s answered HTTP %s %s: %s", self.provider, status, code or "-", str(message or "")[:200])
        return provider_said(self.outcome(status, code, str(message or ""), response.headers), message)

    def outcome(self, status: int, code: str | None, message: str, headers: httpx.Headers) -> BackendError:
        provider = self.provider
        if status == 429 and code != "insufficient_quota":
            return rate_limited(provider, code, status, headers, self.rate_wait)
        if code == "insufficient_quota" or status == 402:
            return BackendError("backend_quota_exhausted", provider=provider, provider_code=code, status=status)
        if code in ("moderation_blocked", "content_policy_violation"):
            return BackendError("content_filtered", provider=provider, provider_code=code, status=status)
        if status == 401:
            return BackendError("backend_auth_failed", provider=provider, provider_code=code, status=status)
        if status in (403, 404):
            # 403: the organisation may not use the model; 404: OPENAI_MODEL or OPENAI_BASE_URL names nothing.
            return BackendError("backend_config", provider=provider, provider_code=code, status=status)
        if status == 400:
            return BackendError(
                "backend_invalid_request", provider=provider, provider_code=code, status=status, user_fault=True
            )
        return BackendError("backend_unavailable", provider=provider, provider_code=code, status=status)

    async def check(self) -> CheckReport:
        """The model list (free; proves the key and the address), and whether OPENAI_MODEL is on it. Some
        services list only chat models, so a model missing from the list is reported, not failed."""
        findings: list[tuple[str | Msg, Finding]] = [
            (Msg("check.label.endpoint"), str(self._client.base_url)),
            (Msg("check.label.model"), self._model),
        ]
        try:
            response, body = await send(self._client, "GET", MODELS_PATH, provider=self.provider)
            if response.status_code != 200:
                raise self.error(response)
            try:
                listing = await parse_json(body)
            except ValueError:
                listing = None
            items = listing.get("data") if isinstance(listing, dict) else None
            if not isinstance(items, list):
                raise BackendError("backend_unavailable", provider=self.provider, reason="malformed")
            ids = {item.get("id") for item in items if isinstance(item, dict)}
            listed = "check.openai.model_listed" if self._model in ids else "check.openai.model_unlisted"
            findings.append((Msg("check.label.access"), Msg(listed, {"model": self._model, "count": len(ids)})))
        except BackendError as exc:
            findings.append((Msg("check.label.problem"), exc))
            return CheckReport(self.name, False, findings)
        return CheckReport(self.name, True, findings)


def _error_object(response: httpx.Response) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        return {}
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        return error
    if isinstance(error, str):  # some proxies: {"error": "text"}
        return {"message": error}
    return {}
