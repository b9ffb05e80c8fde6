"""Stability AI REST v2beta (``/v2beta/stable-image/generate/core|ultra|sd3``): Stable Image Core, Ultra and the
SD3.5 models. One picture per call, sent as a multipart form; the picture comes back as raw bytes with its
``finish-reason`` and ``seed`` in headers. The v1 API (SDXL) stays in :mod:`bot.backends.stability`.

Drawing from a picture: the picture as the ``image`` file part with ``strength`` and no ``aspect_ratio`` (sd3:
``mode=image-to-image``; Ultra: ``image`` and ``strength`` together; Core cannot). The Upscale button:
``/v2beta/stable-image/upscale/fast`` (4x, pictures up to 1536 px a side and 1 megapixel) or ``conservative``
(about 4 megapixels, with the prompt), as ``STABILITY_UPSCALE`` says, then resized to exactly twice the sides."""

from __future__ import annotations

import dataclasses
import logging
from typing import TYPE_CHECKING, Any

from bot.backends import images, stable_image
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
UPSCALE_PATH = "/v2beta/stable-image/upscale/{kind}"
DEFAULT_UPSCALE = stable_image.FAST  # STABILITY_UPSCALE: fast, conservative or off
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
        upscale: str = DEFAULT_UPSCALE,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        retry: RetryPolicy | None = None,
    ) -> None:
        redact.register(api_key)
        endpoint, self._model = stable_image.V2_MODELS[model]
        # Raw bytes, not JSON: a third smaller than base64, and nothing to decode on our side.
        headers = {"Authorization": f"Bearer {api_key}", "Accept": "image/*"}
        self._upscaler = upscale if upscale in (stable_image.FAST, stable_image.CONSERVATIVE) else None
        # Core's pictures (1.5 megapixels) are all larger than the fast upscaler takes (1): no button that fails.
        self._upscale_core_off = self._upscaler == stable_image.FAST and endpoint == "core"
        offered = self._upscaler is not None and not self._upscale_core_off
        caps = stable_image.capabilities(self.name, self._model, upscale=offered)
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
            "upscale": settings.stability_upscale,
        }

    async def generate(
        self, request: DrawRequest, *, user: str, progress: ProgressCallback | None = None
    ) -> list[GeneratedImage]:
        assert request.seed is not None, "the caller draws the seed"
        if request.task == "upscale":
            return [await self._upscale(request, request.seed)]
        source = request.source
        if source is not None and not self._model.image_to_image:  # validation refuses a picture first
            raise BackendError("backend_config", provider=PROVIDER, provider_code="no_image_to_image")
        ratio = stable_image.ratio(request)

        async def one(seed: int) -> list[GeneratedImage]:
            fields = stable_image.fields(request, self._model, seed=seed)
            if self._sd3:
                fields["model"] = self._model_name
                if source is not None:
                    fields["mode"] = "image-to-image"
            image = None if source is None else source.data
            return [await self._retry.run(lambda: self._draw(self._path, fields, request, ratio, image), retryable)]

        return await one_per_call(request.n, request.seed, one, provider=PROVIDER, progress=progress)

    async def _upscale(self, request: DrawRequest, seed: int) -> GeneratedImage:
        """``request.source`` through the chosen upscaler, then resized (off the loop) to exactly
        ``request.size``, twice its sides. A picture outside the upscaler's documented limits is refused before
        anything is sent (nothing is billed), with a message saying which limits and which setting chooses."""
        source = request.source
        if source is None or self._upscaler is None:  # the Upscale button is offered only with both
            raise BackendError("backend_config", provider=PROVIDER, provider_code="no_upscale")
        refusal = stable_image.upscale_refusal(
            self._upscaler, source.width, source.height, provider=PROVIDER, setting="STABILITY_UPSCALE"
        )
        if refusal is not None:
            log.warning("stability: a %s picture is outside the %s upscaler's limits", source.size, self._upscaler)
            raise refusal
        fields = stable_image.upscale_fields(request, self._upscaler, seed=seed)
        path = UPSCALE_PATH.format(kind=self._upscaler)
        image = await self._retry.run(lambda: self._draw(path, fields, request, None, source.data), retryable)
        data, _ = await cpu.run(images.resized, image.data, request.width, request.height)
        seed_used = image.seed if self._upscaler == stable_image.CONSERVATIVE else None  # fast takes no seed
        return dataclasses.replace(image, data=data, format="PNG", seed=seed_used)

    async def _draw(
        self, path: str, fields: dict[str, Any], request: DrawRequest, ratio: str | None, image: bytes | None
    ) -> GeneratedImage:
        # Every field as a form part without a file name: v2beta takes multipart/form-data only, even for text;
        # the picture drawn from (or upscaled) as a file part.
        parts: list[tuple[str, tuple[str | None, bytes] | tuple[str, bytes, str]]] = [
            (name, (None, str(value).encode())) for name, value in fields.items()
        ]
        if image is not None:
            parts.append(("image", ("image.png", image, "image/png")))
        response, body = await send(self._client, "POST", path, provider=PROVIDER, files=parts)
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
            ratio=ratio,
        )

    async def check(self) -> CheckReport:
        """The balance (free; proves the key). The model was checked against the list of v2beta models when the
        settings were read; nothing is generated."""
        findings: list[tuple[str | Msg, Finding]] = [
            (Msg("check.label.endpoint"), str(self._client.base_url)),
            (Msg("check.label.model"), self._model_name),
            (Msg("check.label.upscale"), self._upscale_finding()),
        ]
        try:
            await balance_findings(self._client, findings)
        except BackendError as exc:
            findings.append((Msg("check.label.problem"), exc))
            return CheckReport(self.name, False, findings)
        return CheckReport(self.name, True, findings)

    def _upscale_finding(self) -> Msg:
        if self._upscaler is None:
            return Msg("check.stability.upscale_off")
        if self._upscale_core_off:
            return Msg("check.stability.upscale_core")
        return Msg("check.stability.upscale_on", {"upscaler": self._upscaler})
