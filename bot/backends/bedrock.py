"""AWS Bedrock's Stability models, sent with httpx: the current ones (SD3.5 Large, Stable Image Core and Ultra:
one picture per call, an aspect ratio, ``{seeds, finish_reasons, images}`` back) and SDXL v1 for the accounts that
still have it (Stability's v1 body). Requests are SigV4-signed with botocore, or carry a Bedrock API key."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from bot.backends import sdxl_v1, stable_image
from bot.backends.base import CheckReport, Finding, GeneratedImage, ProgressCallback
from bot.backends.batch import one_per_call
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
from bot.draw.shape import nearest_ratio
from bot.errors import BackendError, ConfigError
from bot.messages.i18n import Msg
from bot.process import cpu, redact

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.draw.request import DrawRequest

log = logging.getLogger(__name__)

PROVIDER = "bedrock"
DEFAULT_MODEL_ID = "stability.sd3-5-large-v1:0"
SDXL_MODEL = "stability.stable-diffusion-xl-v1"
SD35_LARGE = "stability.sd3-5-large-v1:0"  # end of life at AWS since 2025-05-20
# An inference profile's model id starts with its geography ("us.stability...").
PROFILE_PREFIXES = ("us.", "eu.", "apac.", "global.")
SIGNING_NAME = "bedrock"  # the runtime endpoint is bedrock-runtime, but it signs as "bedrock"
RATE_WAIT_SECONDS = 10.0

# x-amzn-ErrorType -> our outcome (ValidationException is refined by its message, see _aws_error).
ERROR_OUTCOMES: dict[str, str] = {
    "ValidationException": "backend_invalid_request",
    "ServiceQuotaExceededException": "backend_quota_exhausted",
    "AccessDeniedException": "backend_config",  # IAM policy or model access not granted for these credentials
    "ResourceNotFoundException": "backend_config",
    "UnrecognizedClientException": "backend_auth_failed",
    "InvalidSignatureException": "backend_auth_failed",
    "IncompleteSignatureException": "backend_auth_failed",
    "MissingAuthenticationTokenException": "backend_auth_failed",
    "ExpiredTokenException": "backend_auth_failed",
    "ModelTimeoutException": "backend_timeout",
    "ModelErrorException": "backend_unavailable",
    "ThrottlingException": "backend_rate_limited",
    "ModelNotReadyException": "backend_unavailable",
    "InternalServerException": "backend_unavailable",
    "ServiceUnavailableException": "backend_unavailable",
}
# Retried: AWS asks for a retry and nothing was generated. ModelTimeoutException is not: the model ran (and
# may bill) for the whole timeout, and the user would wait for it twice.
RETRY_TYPES = frozenset(
    {"ThrottlingException", "ModelNotReadyException", "InternalServerException", "ServiceUnavailableException"}
)
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


def _botocore() -> Any:
    """The botocore modules this backend needs, or a ConfigError telling the operator to install them."""
    try:
        import botocore.auth
        import botocore.awsrequest
        import botocore.credentials
        import botocore.session
    except ImportError:
        raise ConfigError(
            "config_invalid",
            variable="SDBOT_BACKEND",
            value=PROVIDER,
            expected=Msg("config.expect.bedrock_extra"),
        ) from None
    return botocore


def base_model(model_id: str) -> str:
    """The foundation model behind ``BEDROCK_MODEL_ID``: an ARN's last part, without an inference profile's prefix."""
    name = model_id.rsplit("/", 1)[-1]
    for prefix in PROFILE_PREFIXES:
        if name.startswith(prefix + "stability."):
            return name.removeprefix(prefix)
    return name


def known_model(model_id: str) -> bool:
    base = base_model(model_id)
    return base in stable_image.BEDROCK_MODELS or base.startswith(SDXL_MODEL)


class BedrockBackend(HttpBackend):
    name = PROVIDER

    def __init__(
        self,
        *,
        region: str,
        model_id: str = DEFAULT_MODEL_ID,
        endpoint_url: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        retry: RetryPolicy | None = None,
    ) -> None:
        # A Bedrock API key is sent as a bearer token: no signing, so no botocore.
        self._botocore: Any = None if api_key else _botocore()
        redact.register(access_key_id, secret_access_key, session_token, api_key)
        self._endpoint = (endpoint_url or f"https://bedrock-runtime.{region}.amazonaws.com").rstrip("/")
        self._model = stable_image.BEDROCK_MODELS.get(base_model(model_id))  # None: SDXL v1
        if self._model is not None:
            caps = stable_image.capabilities(self.name, self._model)
        else:
            caps = sdxl_v1.capabilities(self.name, sdxl_v1.SDXL_SIZES)
        super().__init__(self._endpoint, timeout=timeout, connect_timeout=connect_timeout, retry=retry, caps=caps)
        self._api_key = api_key
        self._region = region
        self._model_id = model_id
        # The model id is one path segment: "stability.stable-diffusion-xl-v1:0" or an ARN are percent-encoded.
        self._url = f"{self._endpoint}/model/{quote(model_id, safe='')}/invoke"
        self._static = (access_key_id, secret_access_key, session_token) if access_key_id else None
        self._credentials: Any = None  # botocore Credentials, resolved on first use
        self._credentials_lock = asyncio.Lock()

    @classmethod
    def options(cls, settings: Settings) -> dict[str, Any]:
        if not known_model(settings.bedrock_model_id):
            raise ConfigError(
                "config_invalid",
                variable="BEDROCK_MODEL_ID",
                value=settings.bedrock_model_id,
                expected=Msg("config.expect.choice", {"choices": (*stable_image.BEDROCK_MODELS, SDXL_MODEL)}),
            )
        if settings.aws_bearer_token_bedrock:
            cls.require(settings, "AWS_REGION")
            return {
                "region": settings.aws_region,
                "model_id": settings.bedrock_model_id,
                "endpoint_url": settings.bedrock_endpoint_url,
                "api_key": settings.aws_bearer_token_bedrock,
            }
        _botocore()  # before anything else: without botocore nothing below matters
        keys = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
        cls.require(
            settings, "AWS_REGION", *(keys if settings.aws_access_key_id or settings.aws_secret_access_key else ())
        )
        # Neither key set: botocore's chain (environment, profile, SSO, instance role) decides on first use.
        return {
            "region": settings.aws_region,
            "model_id": settings.bedrock_model_id,
            "endpoint_url": settings.bedrock_endpoint_url,
            "access_key_id": settings.aws_access_key_id,
            "secret_access_key": settings.aws_secret_access_key,
            "session_token": settings.aws_session_token,
        }

    # -- credentials and signing ---------------------------------------------------------------------
    def _resolve_credentials(self) -> Any:
        """Blocking (files, SSO cache, instance metadata): run in a thread."""
        botocore = self._botocore
        if self._static is not None:
            return botocore.credentials.Credentials(*self._static, method="config")
        credentials = botocore.session.Session().get_credentials()
        if credentials is None:
            raise ConfigError(
                "config_missing",
                variable="AWS_ACCESS_KEY_ID",
                reason=self.config_reason(),
            )
        return credentials

    async def _frozen_credentials(self) -> Any:
        """The current key, secret and token. Temporary credentials (roles, SSO) refresh themselves, which
        may do I/O, so they are read in a thread; static ones inline."""
        if self._credentials is None:
            async with self._credentials_lock:
                if self._credentials is None:
                    self._credentials = await asyncio.to_thread(self._resolve_credentials)
        credentials = self._credentials
        if type(credentials) is self._botocore.credentials.Credentials:
            frozen = credentials.get_frozen_credentials()
        else:
            frozen = await asyncio.to_thread(credentials.get_frozen_credentials)
        redact.register(frozen.access_key, frozen.secret_key, frozen.token)
        return frozen

    def _sign(self, frozen: Any, body: bytes) -> dict[str, str]:
        """SigV4 headers for POST ``self._url`` with ``body`` (every header here is signed and sent as is)."""
        botocore = self._botocore
        request = botocore.awsrequest.AWSRequest(
            method="POST",
            url=self._url,
            data=body,
            headers={"Content-Type": "application/json", "Accept": "application/json"},
        )
        botocore.auth.SigV4Auth(frozen, SIGNING_NAME, self._region).add_auth(request)
        return dict(request.headers.items())

    async def _credentials_or_error(self) -> Any:
        try:
            return await self._frozen_credentials()
        except ConfigError:
            raise BackendError("backend_config", provider=PROVIDER, reason="no_credentials") from None

    async def _invoke(self, body: bytes, frozen: Any | None = None) -> Any:
        if self._api_key is not None:
            headers = {"Content-Type": "application/json", "Accept": "application/json"}
            headers["Authorization"] = f"Bearer {self._api_key}"
        else:
            frozen = frozen if frozen is not None else await self._credentials_or_error()
            headers = self._sign(frozen, body)
        response, answer = await send(self._client, "POST", self._url, provider=PROVIDER, content=body, headers=headers)
        if response.status_code != 200:
            raise _aws_error(response)
        try:
            return await parse_json(answer)
        except ValueError:
            # Not retried: the answer was cut or mangled after the model did (and billed) the work.
            raise BackendError("backend_unavailable", provider=PROVIDER, reason="malformed") from None

    # -- generation ----------------------------------------------------------------------------------
    async def generate(
        self, request: DrawRequest, *, user: str, progress: ProgressCallback | None = None
    ) -> list[GeneratedImage]:
        assert request.seed is not None, "the caller draws the seed"

        async def one(seed: int) -> list[GeneratedImage]:
            body = json.dumps(self._body(request, seed)).encode()
            data = await self._retry.run(lambda: self._invoke(body), _retryable)
            if self._model is not None:
                return await cpu.run(_pictures, data, request)  # base64: CPU work
            return await cpu.run(sdxl_v1.artifacts, data, request, PROVIDER)

        return await one_per_call(request.n, request.seed, one, provider=PROVIDER, progress=progress)

    def _body(self, request: DrawRequest, seed: int) -> dict[str, Any]:
        if self._model is None:
            return sdxl_v1.body(request, seed=seed, samples=1)
        body = stable_image.fields(request, self._model, seed=seed)
        if base_model(self._model_id) == SD35_LARGE:
            body["mode"] = "text-to-image"  # the only one of the three that also draws from a picture
        return body

    # -- check ---------------------------------------------------------------------------------------
    async def check(self) -> CheckReport:
        """Resolve the credentials, then invoke the model with a deliberately invalid body (``{}``, no
        ``text_prompts``). Bedrock authenticates the signature and authorizes ``bedrock:InvokeModel`` on the
        model, and checks the model id, before it validates the body, so a ``ValidationException`` about the
        input proves all of that while nothing is generated or billed. (The control-plane
        GetFoundationModel would prove neither the runtime endpoint nor the invoke permission.)"""
        findings: list[tuple[str | Msg, Finding]] = [
            (Msg("check.label.endpoint"), self._endpoint),
            (Msg("check.label.region"), self._region),
            (Msg("check.label.model"), self._model_id),
        ]
        frozen = None
        if self._api_key is None:
            frozen = await self._frozen_credentials()  # ConfigError (no credentials anywhere) -> exit 3
            method = getattr(self._credentials, "method", None) or "botocore"
        else:
            method = "AWS_BEARER_TOKEN_BEDROCK"
        findings.append((Msg("check.label.credentials"), Msg("check.bedrock.credentials", {"source": method})))
        try:
            await self._invoke(b"{}", frozen)
        except BackendError as exc:
            if exc.provider_code == "ValidationException" and exc.code == "backend_invalid_request":
                findings.append((Msg("check.label.access"), Msg("check.bedrock.probe")))
                return CheckReport(self.name, True, findings)
            findings.append((Msg("check.label.problem"), exc))
            return CheckReport(self.name, False, findings)
        # Accepted without a prompt: not what Bedrock's SDXL does, so the endpoint is not the one we expect.
        findings.append((Msg("check.label.problem"), BackendError("backend_config", provider=PROVIDER)))
        return CheckReport(self.name, False, findings)


def _retryable(exc: BackendError) -> bool:
    if exc.provider == PROVIDER and exc.provider_code in RETRY_TYPES:
        return True
    if exc.params.get("status") in RETRY_STATUSES and exc.provider_code is None:
        return True  # a 5xx/429 without an AWS error type: a gateway or load balancer in front
    return exc.params.get("reason") in RETRYABLE_TRANSPORT


def _aws_error(response: httpx.Response) -> BackendError:
    """Bedrock's error: the type is the part of ``x-amzn-ErrorType`` before ``:``; body ``{"message"}`` (kept
    for the operator)."""
    try:
        data = response.json()
    except ValueError:
        data = None
    message = data.get("message") or data.get("Message") if isinstance(data, dict) else None
    return provider_said(_aws_outcome(response), message)


def _aws_outcome(response: httpx.Response) -> BackendError:
    status = response.status_code
    error_type = response.headers.get("x-amzn-ErrorType", "").split(":", 1)[0].strip()
    try:
        data = response.json()
    except ValueError:
        data = None
    message = ""
    if isinstance(data, dict):
        message = str(data.get("message") or data.get("Message") or "")
    log.warning("bedrock answered HTTP %s %s: %s", status, error_type or "-", message[:200])
    outcome = ERROR_OUTCOMES.get(error_type)
    if outcome is None:
        if status in (429, *range(500, 600)):
            outcome = "backend_rate_limited" if status == 429 else "backend_unavailable"
        else:
            outcome = "backend_unavailable"
    code = error_type or None
    if outcome == "backend_rate_limited":
        return rate_limited(PROVIDER, code, status, response.headers, RATE_WAIT_SECONDS)
    if error_type == "ResourceNotFoundException" and ("end of its life" in message or "Legacy" in message):
        # BEDROCK_MODEL_ID names a model AWS retired (SDXL v1 since 2025-05-20), or one kept only for its users.
        return BackendError("backend_config", provider=PROVIDER, provider_code="model_retired", status=status)
    if error_type == "ValidationException" and "model identifier" in message.lower():
        # BEDROCK_MODEL_ID names no model here: the operator's setting, not the user's request.
        return BackendError("backend_config", provider=PROVIDER, provider_code=code, status=status)
    return BackendError(
        outcome,
        provider=PROVIDER,
        provider_code=code,
        status=status,
        user_fault=outcome == "backend_invalid_request",
    )


def _pictures(data: Any, request: DrawRequest) -> list[GeneratedImage]:
    """The picture of ``{"seeds", "finish_reasons", "images"}``. A finish reason is a filter ("Filter reason:
    prompt", "... output image") or "Inference error"; a filtered answer may carry no picture at all."""
    if not isinstance(data, dict):
        raise BackendError("backend_unavailable", provider=PROVIDER, reason="malformed")
    reasons, images, seeds = data.get("finish_reasons"), data.get("images"), data.get("seeds")
    reason = reasons[0] if isinstance(reasons, list) and reasons else None
    picture = images[0] if isinstance(images, list) and images else None
    if isinstance(reason, str) and not reason.startswith("Filter reason"):
        log.warning("bedrock finished with %r", reason[:100])
        raise BackendError("backend_unavailable", provider=PROVIDER, reason="inference")
    filtered = isinstance(reason, str)
    if picture is None and filtered:
        raise BackendError("content_filtered")
    if not isinstance(picture, str | memoryview):
        raise BackendError("backend_bad_image", provider=PROVIDER, reason="missing")
    raw = decode_b64(picture, PROVIDER)
    seed = seeds[0] if isinstance(seeds, list) and seeds else None
    return [
        GeneratedImage(
            raw,
            sniff_format(raw),
            request.width,
            request.height,
            seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
            filtered=filtered,
            ratio=nearest_ratio(request.width, request.height),
        )
    ]
