"""AWS Bedrock's Stability models, sent with httpx: the current ones (SD3.5 Large, Stable Image Core and Ultra:
one picture per call, an aspect ratio, ``{seeds, finish_reasons, images}`` back) and SDXL v1 for the accounts that
still have it (Stability's v1 body). Requests are SigV4-signed with botocore, or carry a Bedrock API key.

Drawing from a picture: SD3.5 Large (``mode: image-to-image``, ``image`` in base64, ``strength``, no
``aspect_ratio``) and SDXL v1 (``init_image``, ``init_image_mode``, ``image_strength``); Core takes text only and
Ultra's image-to-image is not documented on Bedrock. The Upscale button: ``BEDROCK_UPSCALE_MODEL_ID``, one of
Stability's Image Services upscalers (fast, conservative), invoked the same way, its answer resized to exactly twice
the picture's sides."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import logging
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from bot.backends import images, sdxl_v1, stable_image
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
SD35_LARGE = "stability.sd3-5-large-v1:0"
# Stability Image Services upscalers (BEDROCK_UPSCALE_MODEL_ID) -> which of Stability's upscalers it is.
UPSCALE_MODELS: dict[str, str] = {
    "stability.stable-fast-upscale-v1:0": stable_image.FAST,
    "stability.stable-conservative-upscale-v1:0": stable_image.CONSERVATIVE,
}
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
        upscale_model_id: str | None = None,
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
        self._upscale_model_id = upscale_model_id or None
        self._upscaler = UPSCALE_MODELS.get(base_model(upscale_model_id)) if upscale_model_id else None
        upscale = self._upscaler is not None
        if self._model is not None:
            caps = stable_image.capabilities(self.name, self._model, upscale=upscale)
        else:
            caps = dataclasses.replace(sdxl_v1.capabilities(self.name, sdxl_v1.SDXL_SIZES), upscale=upscale)
        super().__init__(self._endpoint, timeout=timeout, connect_timeout=connect_timeout, retry=retry, caps=caps)
        self._api_key = api_key
        self._region = region
        self._model_id = model_id
        # The model id is one path segment: "stability.stable-diffusion-xl-v1:0" or an ARN are percent-encoded.
        self._url = self._invoke_url(model_id)
        self._upscale_url = self._invoke_url(upscale_model_id) if upscale_model_id else None
        self._static = (access_key_id, secret_access_key, session_token) if access_key_id else None
        self._credentials: Any = None  # botocore Credentials, resolved on first use
        self._credentials_lock = asyncio.Lock()

    def _invoke_url(self, model_id: str) -> str:
        return f"{self._endpoint}/model/{quote(model_id, safe='')}/invoke"

    @classmethod
    def options(cls, settings: Settings) -> dict[str, Any]:
        if not known_model(settings.bedrock_model_id):
            raise ConfigError(
                "config_invalid",
                variable="BEDROCK_MODEL_ID",
                value=settings.bedrock_model_id,
                expected=Msg("config.expect.choice", {"choices": (*stable_image.BEDROCK_MODELS, SDXL_MODEL)}),
            )
        upscale_model_id = settings.bedrock_upscale_model_id or None
        if upscale_model_id is not None and base_model(upscale_model_id) not in UPSCALE_MODELS:
            raise ConfigError(
                "config_invalid",
                variable="BEDROCK_UPSCALE_MODEL_ID",
                value=upscale_model_id,
                expected=Msg("config.expect.choice", {"choices": tuple(UPSCALE_MODELS)}),
            )
        if settings.aws_bearer_token_bedrock:
            cls.require(settings, "AWS_REGION")
            return {
                "region": settings.aws_region,
                "model_id": settings.bedrock_model_id,
                "upscale_model_id": upscale_model_id,
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
            "upscale_model_id": upscale_model_id,
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

    def _sign(self, frozen: Any, body: bytes, url: str) -> dict[str, str]:
        """SigV4 headers for POST ``url`` with ``body`` (every header here is signed and sent as is)."""
        botocore = self._botocore
        request = botocore.awsrequest.AWSRequest(
            method="POST",
            url=url,
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

    async def _invoke(self, body: bytes, frozen: Any | None = None, *, url: str | None = None) -> Any:
        url = url or self._url
        if self._api_key is not None:
            headers = {"Content-Type": "application/json", "Accept": "application/json"}
            headers["Authorization"] = f"Bearer {self._api_key}"
        else:
            frozen = frozen if frozen is not None else await self._credentials_or_error()
            headers = self._sign(frozen, body, url)
        response, answer = await send(self._client, "POST", url, provider=PROVIDER, content=body, headers=headers)
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
        if request.task == "upscale":
            return [await self._upscale(request, request.seed)]
        if request.source is not None and not (await self.capabilities()).image_to_image:
            raise BackendError("backend_config", provider=PROVIDER, provider_code="no_image_to_image")
        # The picture in base64, once for every call: megabytes of CPU work, off the loop.
        image = None if request.source is None else await cpu.run(_b64, request.source.data)

        async def one(seed: int) -> list[GeneratedImage]:
            body = await cpu.run(_json, self._body(request, seed, image))
            data = await self._retry.run(lambda: self._invoke(body), _retryable)
            if self._model is not None:
                return await cpu.run(_pictures, data, request)  # base64: CPU work
            return await cpu.run(sdxl_v1.artifacts, data, request, PROVIDER)

        return await one_per_call(request.n, request.seed, one, provider=PROVIDER, progress=progress)

    def _body(self, request: DrawRequest, seed: int, image: str | None = None) -> dict[str, Any]:
        if self._model is None:
            if image is not None:
                return sdxl_v1.image_to_image_body(request, seed=seed, samples=1, init_image=image)
            return sdxl_v1.body(request, seed=seed, samples=1)
        body = stable_image.fields(request, self._model, seed=seed)
        if base_model(self._model_id) == SD35_LARGE:
            # The only one of the three that documents a mode (and drawing from a picture) on Bedrock.
            body["mode"] = "text-to-image" if image is None else "image-to-image"
        if image is not None:
            body["image"] = image
        return body

    async def _upscale(self, request: DrawRequest, seed: int) -> GeneratedImage:
        """``request.source`` through ``BEDROCK_UPSCALE_MODEL_ID``, then resized (off the loop) to exactly
        ``request.size``. A picture outside the upscaler's documented limits is refused before anything is sent."""
        source, upscaler, url = request.source, self._upscaler, self._upscale_url
        if source is None or upscaler is None or url is None:  # the Upscale button is offered only with both
            raise BackendError("backend_config", provider=PROVIDER, provider_code="no_upscale")
        refusal = stable_image.upscale_refusal(
            upscaler, source.width, source.height, provider=PROVIDER, setting="BEDROCK_UPSCALE_MODEL_ID"
        )
        if refusal is not None:
            log.warning("bedrock: a %s picture is outside the %s upscaler's limits", source.size, upscaler)
            raise refusal
        fields = stable_image.upscale_fields(request, upscaler, seed=seed)
        fields["image"] = await cpu.run(_b64, source.data)
        body = await cpu.run(_json, fields)
        try:
            data = await self._retry.run(lambda: self._invoke(body, url=url), _retryable)
        except BackendError as exc:
            if exc.provider_code == "AccessDeniedException":
                # Not subscribed to Stability's Image Services (or no bedrock:InvokeModel on the upscaler).
                raise _upscale_denied(exc) from None
            raise
        (picture,) = await cpu.run(_pictures, data, request)
        resized, _ = await cpu.run(images.resized, picture.data, request.width, request.height)
        seed_used = picture.seed if upscaler == stable_image.CONSERVATIVE else None  # fast takes no seed
        return dataclasses.replace(picture, data=resized, format="PNG", seed=seed_used, ratio=None)

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
        if self._upscale_url is None:
            findings.append((Msg("check.label.upscale"), Msg("check.bedrock.upscale_off")))
        problem = await self._probe(self._url, frozen)
        if problem is not None:
            findings.append((Msg("check.label.problem"), problem))
            return CheckReport(self.name, False, findings)
        findings.append((Msg("check.label.access"), Msg("check.bedrock.probe")))
        if self._upscale_url is not None:
            # The same probe proves the subscription to Stability's Image Services and the upscaler's id.
            problem = await self._probe(self._upscale_url, frozen)
            if problem is not None:
                if problem.provider_code == "AccessDeniedException":
                    problem = _upscale_denied(problem)
                findings.append((Msg("check.label.problem"), problem))
                return CheckReport(self.name, False, findings)
            shown = {"model": self._upscale_model_id}
            findings.append((Msg("check.label.upscale"), Msg("check.bedrock.upscale_on", shown)))
        return CheckReport(self.name, True, findings)

    async def _probe(self, url: str, frozen: Any | None) -> BackendError | None:
        """Invoke the model at ``url`` with ``{}``: a ValidationException about the input proves the signature,
        the permission and the model id while nothing is generated; anything else is the problem."""
        try:
            await self._invoke(b"{}", frozen, url=url)
        except BackendError as exc:
            if exc.provider_code == "ValidationException" and exc.code == "backend_invalid_request":
                return None
            return exc
        # Accepted without a prompt or a picture: not what Bedrock's models do, so the endpoint is not AWS's.
        return BackendError("backend_config", provider=PROVIDER)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


def _upscale_denied(exc: BackendError) -> BackendError:
    """An AccessDeniedException from the upscaler: the operator's BEDROCK_UPSCALE_MODEL_ID (or its subscription),
    not BEDROCK_MODEL_ID, which the generic message names."""
    error = BackendError(
        "backend_config", provider=PROVIDER, provider_code="upscale_access_denied", status=exc.params.get("status")
    )
    if "provider_message" in exc.params:
        error.params["provider_message"] = exc.params["provider_message"]
    return error


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
    if error_type == "ValidationException" and "on-demand throughput" in message.lower():
        # A bare model id where the region serves the model only through an inference profile ("us.stability...").
        return BackendError("backend_config", provider=PROVIDER, provider_code="inference_profile", status=status)
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
            ratio=stable_image.ratio(request),
        )
    ]
