"""Stability AI REST v2beta (``/v2beta/stable-image/generate/core|ultra|sd3``): Stable Image Core, Ultra and the
SD3.5 models. One picture per call, sent as a multipart form; the picture comes back as raw bytes with its
``finish-reason`` and ``seed`` in headers. The v1 API (SDXL) stays in :mod:`bot.backends.stability`."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from bot.backends import stable_image
from bot.backends.base import Backend, CheckReport, Finding, GeneratedImage, ProgressCallback
from bot.backends.batch import one_per_call
from bot.backends.http import RetryPolicy, send, sniff_format
from bot.backends.http_backend import DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT, HttpBackend
from bot.backends.stability import (
    DEFAULT_BASE_URL,
    PROVIDER,
    StabilityBackend,
    balance_findings,
    retryable,
    status_error,
)
from bot.errors import BackendError, ConfigError
from bot.messages.i18n import Msg
from bot.process import cpu, redact

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.draw.request import DrawRequest

log = logging.getLogger(__name__)

DEFAULT_MODEL = "core"
GENERATE_PATH = "/v2beta/stable-image/generate/{endpoint}"
IMAGE_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP"}


def stability_backend(settings: Settings) -> Backend:
    """The Stability backend the settings choose: v1 when only ``STABILITY_ENGINE`` is set (SDXL, for accounts
    that keep it), else v2beta with ``STABILITY_MODEL`` (Stable Image Core by default)."""
    if settings.stability_engine and not settings.stability_model:
        return StabilityBackend.from_settings(settings)
    if settings.stability_engine:
        raise ConfigError(
            "config_invalid",
            variable="STABILITY_ENGINE",
            value=settings.stability_engine,
            expected=Msg("config.expect.stability_one"),
        )
    return StabilityV2Backend.from_settings(settings)


class StabilityV2Backend(HttpBackend):
    name = PROVIDER

    def __init__(
        self,
        api_key: str,
        *,
        model: str = DEFAULT_MODEL,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        retry: RetryPolicy | None = None,
    ) -> None:
        redact.register(api_key)
        endpoint, self._model = stable_image.V2_MODELS[model]
        # Raw bytes, not JSON: a third smaller than base64, and nothing to decode on our side.
        headers = {"Authorization": f"Bearer {api_key}", "Accept": "image/*"}
        caps = stable_image.capabilities(self.name, self._model)
        super().__init__(
            base_url, timeout=timeout, connect_timeout=connect_timeout, retry=retry, caps=caps, headers=headers
        )
        self._model_name = model
        self._path = GENERATE_PATH.format(endpoint=endpoint)
        self._sd3 = endpoint == "sd3"

    @classmethod
    def options(cls, settings: Settings) -> dict[str, Any]:
        cls.require(settings, "STABILITY_API_KEY")
        return {
            "api_key": settings.stability_api_key,
            "base_url": settings.stability_base_url,
            "model": settings.stability_model or DEFAULT_MODEL,
        }

    async def generate(
        self, request: DrawRequest, *, user: str, progress: ProgressCallback | None = None
    ) -> list[GeneratedImage]:
        assert request.seed is not None, "the caller draws the seed"

        async def one(seed: int) -> list[GeneratedImage]:
            fields = stable_image.fields(request, self._model, seed=seed)
            if self._sd3:
                fields["model"] = self._model_name
            return [await self._retry.run(lambda: self._draw(fields, request), retryable)]

        return await one_per_call(request.n, request.seed, one, provider=PROVIDER, progress=progress)

    async def _draw(self, fields: dict[str, Any], request: DrawRequest) -> GeneratedImage:
        # Every field as a form part without a file name: v2beta takes multipart/form-data only, even for text.
        parts = [(name, (None, str(value).encode())) for name, value in fields.items()]
        response, body = await send(self._client, "POST", self._path, provider=PROVIDER, files=parts)
        if response.status_code != 200:
            raise status_error(response)
        data = await cpu.run(b"".join, body)  # megabytes: one copy holding the GIL, off the loop
        kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind not in IMAGE_TYPES:
            log.warning("stability answered 200 with %s, not a picture", kind or "no content type")
            raise BackendError("backend_bad_image", provider=PROVIDER, reason="not_an_image", found=kind or "none")
        seed = response.headers.get("seed", "")
        finish = response.headers.get("finish-reason", "SUCCESS").strip().upper()
        return GeneratedImage(
            data,
            sniff_format(data),
            request.width,
            request.height,
            seed=int(seed) if seed.isdigit() else None,
            filtered=finish == stable_image.FILTERED,
            ratio=fields["aspect_ratio"],
        )

    async def check(self) -> CheckReport:
        """The balance (free; proves the key). The model was checked against the list of v2beta models when the
        settings were read; nothing is generated."""
        findings: list[tuple[str | Msg, Finding]] = [
            (Msg("check.label.endpoint"), str(self._client.base_url)),
            (Msg("check.label.model"), self._model_name),
        ]
        try:
            await balance_findings(self._client, findings)
        except BackendError as exc:
            findings.append((Msg("check.label.problem"), exc))
            return CheckReport(self.name, False, findings)
        return CheckReport(self.name, True, findings)
