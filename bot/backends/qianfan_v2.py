"""Baidu Qianfan v2 (``POST /v2/images/generations``): OpenAI's images shape with a ``bce-v3/`` API key, Baidu's
models (irag-1.0, flux.1-schnell, or a service deployed there), pictures as signed links and errors as
``{"error": {"code", "message", "type"}, "id"}``. New Qianfan applications get only this kind of key; an API Key
and Secret Key pair keeps the seed's v1 API (:mod:`bot.backends.qianfan`)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import httpx

from bot.backends.base import Backend, CheckReport, Finding
from bot.backends.http import rate_limited, send
from bot.backends.openai_images import OpenAIImagesBackend
from bot.backends.qianfan import PROVIDER, QianfanBackend
from bot.draw import params
from bot.errors import BackendError
from bot.messages.i18n import Msg

if TYPE_CHECKING:
    from bot.config import Settings

log = logging.getLogger(__name__)

V2_KEY_PREFIX = "bce-v3/"
DEFAULT_BASE_URL = "https://qianfan.baidubce.com"
GENERATE_PATH = "/v2/images/generations"
# The longest prompt each documented model takes; a deployed service gets the seed's limit.
PROMPT_MAX = {"irag-1.0": 220, "flux.1-schnell": 512}
RATE_WAIT = 60.0  # Qianfan's limits are per minute (rpm/tpm)
# 400 codes that are the request's values, which the user can change.
ARGUMENT_CODES = frozenset(
    {"invalid_argument", "characters_too_long", "tokens_too_long", "invalid_image_generation_prompt"}
)


def qianfan_backend(settings: Settings) -> Backend:
    """v2 for a ``bce-v3/`` API key (every key new applications get), else the seed's v1 with its key pair."""
    if settings.qianfan_api_key and settings.qianfan_api_key.startswith(V2_KEY_PREFIX):
        return QianfanV2Backend.from_settings(settings)
    return QianfanBackend.from_settings(settings)


class QianfanV2Backend(OpenAIImagesBackend):
    name = PROVIDER
    provider = PROVIDER
    rate_wait = RATE_WAIT

    @classmethod
    def options(cls, settings: Settings) -> dict[str, Any]:
        cls.require(settings, "QIANFAN_API_KEY")
        model = settings.qianfan_model
        return {
            "api_key": settings.qianfan_api_key,
            "base_url": settings.qianfan_base_url or DEFAULT_BASE_URL,
            "model": model,
            "sizes": params.SIZES,  # 512x512 to 2048x2048: every size of ours, sent as it is
            "max_download": settings.max_download,
            "prompt_max": PROMPT_MAX.get(model, params.PROMPT_MAX),
        }

    def generate_path(self) -> str:
        return GENERATE_PATH

    def outcome(self, status: int, code: str | None, message: str, headers: httpx.Headers) -> BackendError:
        if status == 429:
            return rate_limited(PROVIDER, code, status, headers, self.rate_wait)
        if code == "invalid_model":
            # QIANFAN_MODEL names no model this key may use (401 when unknown, 400 when empty): the operator's setting.
            return BackendError("backend_config", provider=PROVIDER, provider_code=code, status=status)
        if status in (401, 403):
            return BackendError("backend_auth_failed", provider=PROVIDER, provider_code=code, status=status)
        if status == 400 and code in ARGUMENT_CODES:
            return BackendError(
                "backend_invalid_request", provider=PROVIDER, provider_code=code, status=status, user_fault=True
            )
        if status == 400:  # malformed_json and codes we do not know: our request, not the user's
            return BackendError("backend_invalid_request", provider=PROVIDER, provider_code=code, status=status)
        return BackendError("backend_unavailable", provider=PROVIDER, provider_code=code, status=status)

    async def check(self) -> CheckReport:
        """A request without a prompt: Baidu checks the key and the model before the fields, so an argument error
        back proves both, and nothing is drawn or billed."""
        findings: list[tuple[str | Msg, Finding]] = [
            (Msg("check.label.endpoint"), str(self._client.base_url)),
            (Msg("check.label.model"), self._model),
        ]
        try:
            response, _ = await send(
                self._client, "POST", GENERATE_PATH, provider=PROVIDER, json={"model": self._model}
            )
            if response.status_code == 200:  # drew without a prompt: not the service we expect
                raise BackendError("backend_config", provider=PROVIDER, reason="probe")
            error = self.error(response)
            if error.code != "backend_invalid_request":
                raise error
            findings.append((Msg("check.label.access"), Msg("check.qianfan.access", {"code": error.provider_code})))
        except BackendError as exc:
            findings.append((Msg("check.label.problem"), exc))
            return CheckReport(self.name, False, findings)
        return CheckReport(self.name, True, findings)
