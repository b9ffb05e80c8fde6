"""Baidu Qianfan Stable-Diffusion-XL (the seed document): OAuth client-credentials token plus one JSON call."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx

from bot.backends.base import CheckReport, Finding, GeneratedImage, ProgressCallback
from bot.backends.http import (
    RETRYABLE_TRANSPORT,
    RetryPolicy,
    decode_b64,
    located,
    parse_json,
    provider_said,
    rate_limited,
    retry_after_header,
    send,
    sniff_format,
    transport_error,
    wait_seconds,
)
from bot.backends.http_backend import DEFAULT_CONNECT_TIMEOUT, DEFAULT_TIMEOUT, HttpBackend
from bot.draw.capabilities import Capabilities
from bot.draw.params import SEED_RANGE
from bot.errors import BackendError
from bot.messages.i18n import Msg
from bot.process import cpu, redact

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.draw.request import DrawRequest

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://aip.baidubce.com"
TOKEN_PATH = "/oauth/2.0/token"
GENERATE_PATH = "/rpc/2.0/ai_custom/v1/wenxinworkshop/text2image/sd_xl"
PROVIDER = "qianfan"

# The reference table's codes, by what we do about them.
TOKEN_CODES = frozenset({13, 100, 110, 111})  # refresh the token and try once more
RETRY_CODES = frozenset({1, 2, 4, 15, 18, 336000, 336100, 336501, 336502})  # transient: back off, retry
RATE_LIMIT_CODES = frozenset({4, 18, 336501, 336502})
QUOTA_CODES = frozenset({17, 19})  # daily/total quota or billing: retrying cannot help
CONFIG_CODES = frozenset({3, 6, 336004, 336005, 336101})  # wrong API, no permission, wrong method
AUTH_CODES = frozenset({14})
ARGUMENT_CODES = frozenset({336001, 336003, 336104, 336105})  # the request's values: the user can change them
BOT_BUG_CODES = frozenset({336002})  # we sent invalid JSON: not the user's fault

# How long a spent rate-limit window lasts, for the codes whose window we know (QPS, per-minute requests and
# tokens). Used when the X-Ratelimit-Remaining-* headers say the window is spent and no Retry-After came.
RATE_WINDOW_SECONDS: Mapping[int, float] = {18: 1.0, 336501: 60.0, 336502: 60.0}
DEFAULT_RATE_WAIT = 60.0  # what users are told when nothing better is known


@dataclass(frozen=True, slots=True)
class _Token:
    value: str
    expires_at: float  # on the backend's clock, already shortened by the safety margin
    lifetime: float  # expires_in as Baidu gave it, for `sdbot check`


def token_margin(expires_in: float) -> float:
    """How long before ``expires_in`` a token is replaced: 5 minutes, or a tenth of a short lifetime."""
    return min(300.0, expires_in / 10)


class QianfanBackend(HttpBackend):
    name = PROVIDER

    def __init__(
        self,
        api_key: str,
        secret_key: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        retry: RetryPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        redact.register(api_key, secret_key)
        caps = Capabilities(backend=self.name)  # the seed document's values are this service's own
        super().__init__(base_url, timeout=timeout, connect_timeout=connect_timeout, retry=retry, caps=caps)
        self._api_key = api_key
        self._secret_key = secret_key
        self._clock = clock
        self._token: _Token | None = None
        self._refreshing: asyncio.Task[_Token] | None = None

    @classmethod
    def options(cls, settings: Settings) -> dict[str, Any]:
        cls.require(settings, "QIANFAN_API_KEY", "QIANFAN_SECRET_KEY")
        return {
            "api_key": settings.qianfan_api_key,
            "secret_key": settings.qianfan_secret_key,
            "base_url": settings.qianfan_base_url or DEFAULT_BASE_URL,
        }

    async def aclose(self) -> None:
        if self._refreshing is not None:
            self._refreshing.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._refreshing
        await super().aclose()

    # -- token ---------------------------------------------------------------------------------------
    async def access_token(self) -> str:
        """The cached token, or a new one when there is none or it is about to expire."""
        token = self._token
        if token is not None and self._clock() < token.expires_at:
            return token.value
        return (await self._refresh(stale=token.value if token else None)).value

    async def _refresh(self, *, stale: str | None) -> _Token:
        """A token other than ``stale``: the one another caller already fetched, or one fetch shared by every
        caller that needs it now (a single flight: 50 requests rejected for an expired token cause one
        token request, and if it fails they all see that failure instead of trying 50 times in a row)."""
        token = self._token
        if token is not None and token.value != stale and self._clock() < token.expires_at:
            return token
        if self._refreshing is None:
            self._refreshing = asyncio.create_task(self._fetch_token(), name="qianfan-token")
            self._refreshing.add_done_callback(self._refresh_done)
        # shield: a caller that gives up (its job cancelled) must not cancel the fetch the others wait for.
        return await asyncio.shield(self._refreshing)

    def _refresh_done(self, task: asyncio.Task[_Token]) -> None:
        if self._refreshing is task:
            self._refreshing = None
        if not task.cancelled():
            task.exception()  # retrieved here so a fetch nobody awaits any more does not warn at exit

    async def _fetch_token(self) -> _Token:
        query = {"grant_type": "client_credentials", "client_id": self._api_key, "client_secret": self._secret_key}
        try:
            response = await self._client.post(TOKEN_PATH, params=query)
        except httpx.HTTPError as exc:
            log.warning("qianfan token request failed: %s", type(exc).__name__)
            raise transport_error(exc, PROVIDER) from None
        try:
            data = await parse_json(response.content)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            data = {}
        if response.status_code == 200 and isinstance(data.get("access_token"), str) and data["access_token"]:
            value = data["access_token"]
            # Registered before anything could print it: httpx logs every URL, and this one rides in them.
            redact.register(value, data.get("refresh_token"), data.get("session_secret"), data.get("session_key"))
            expires_in = data.get("expires_in")
            lifetime = float(expires_in) if isinstance(expires_in, int | float) and expires_in > 0 else 3600.0
            token = _Token(value, self._clock() + lifetime - token_margin(lifetime), lifetime)
            self._token = token
            log.info("qianfan access token obtained, valid for %.0f s", lifetime)
            return token
        error = str(data.get("error") or "")
        log.warning(
            "qianfan token request refused: HTTP %s %s %s",
            response.status_code,
            error,
            str(data.get("error_description") or "")[:200],
        )
        said, code = data.get("error_description"), error or response.status_code
        if error == "invalid_client" or response.status_code in (401, 403):
            failure = BackendError("backend_auth_failed", provider=PROVIDER, provider_code=code)
        elif response.status_code >= 500 or response.status_code == 200:
            failure = BackendError("backend_unavailable", provider=PROVIDER, reason="token")
        else:  # unsupported_grant_type and other 4xx: the base URL or the request is not what Baidu expects.
            failure = BackendError("backend_config", provider=PROVIDER, provider_code=code)
        raise located(provider_said(failure, said), response)  # the token URL's query holds both keys: cut

    # -- generation ----------------------------------------------------------------------------------
    async def generate(
        self, request: DrawRequest, *, user: str, progress: ProgressCallback | None = None
    ) -> list[GeneratedImage]:
        assert request.seed is not None, "the caller draws the seed"
        # The seed document's fields only: a pool's --model names our service, not one of Baidu's.
        payload = {k: v for k, v in request.to_dict().items() if v is not None and k != "model"}
        payload["user_id"] = user  # already a stable hash of the platform user, never the raw id
        data = await self._retry.run(lambda: self._call(payload), _retryable)
        # Decoding megabytes of base64 is CPU work: off the event loop.
        return await cpu.run(_images, data, request)

    async def _call(self, payload: dict[str, Any]) -> dict[str, Any]:
        """One attempt: with the cached token, and once more with a fresh one if Baidu refuses the token."""
        token = await self.access_token()
        try:
            return await self._post(token, payload)
        except BackendError as exc:
            if exc.provider_code not in TOKEN_CODES:
                raise
            log.info("qianfan refused the access token (error %s); fetching a new one", exc.provider_code)
        fresh = await self._refresh(stale=token)
        try:
            return await self._post(fresh.value, payload)
        except BackendError as exc:
            if exc.provider_code != 13:
                raise
            # 13 twice in a row: Baidu's own token service is failing, not our credentials.
            raise BackendError("backend_unavailable", provider=PROVIDER, provider_code=13) from None

    async def _post(self, token: str, payload: dict[str, Any]) -> dict[str, Any]:
        query = {"access_token": token}
        response, body = await send(self._client, "POST", GENERATE_PATH, provider=PROVIDER, params=query, json=payload)
        if response.status_code != 200:
            raise _http_error(response)
        try:
            data = await parse_json(body)
        except ValueError:
            # Not retried: the answer was cut or mangled after Baidu did (and billed) the work.
            raise BackendError("backend_unavailable", provider=PROVIDER, reason="malformed") from None
        if not isinstance(data, dict):
            raise BackendError("backend_unavailable", provider=PROVIDER, reason="malformed")
        if "error_code" in data:
            raise _api_error(data, response.headers)
        return data

    # -- check ---------------------------------------------------------------------------------------
    async def check(self) -> CheckReport:
        """Fetch a new token (proves the API key and secret key), then send the generate endpoint a request
        with no prompt: an argument error back proves the token is accepted for Stable-Diffusion-XL and the
        service is enabled for this application, and nothing is generated or billed."""
        findings: list[tuple[str | Msg, Finding]] = [(Msg("check.label.endpoint"), str(self._client.base_url))]
        try:
            token = await self._refresh(stale=self._token.value if self._token else None)
            if token.lifetime >= 86400:
                shown = Msg("check.qianfan.token_days", {"count": round(token.lifetime / 86400)})
            else:
                shown = Msg("check.qianfan.token_minutes", {"count": max(1, round(token.lifetime / 60))})
            findings.append((Msg("check.label.token"), shown))
            try:
                await self._post(token.value, {})
            except BackendError as exc:
                if exc.provider_code not in ARGUMENT_CODES:
                    raise
                findings.append((Msg("check.label.access"), Msg("check.qianfan.access", {"code": exc.provider_code})))
            else:
                findings.append((Msg("check.label.access"), Msg("check.qianfan.access", {"code": "-"})))
        except BackendError as exc:
            findings.append((Msg("check.label.problem"), exc))
            return CheckReport(self.name, False, findings)
        return CheckReport(self.name, True, findings)


def _retryable(exc: BackendError) -> bool:
    if exc.provider == PROVIDER and exc.provider_code in RETRY_CODES:
        return True
    if exc.params.get("status") in (429, 500, 502, 503, 504):
        return True
    return exc.params.get("reason") in RETRYABLE_TRANSPORT


def _rate_hint(code: int, headers: httpx.Headers) -> float | None:
    """Seconds to wait before a retry can succeed, from the answer's headers: ``Retry-After`` if a gateway
    sent one, else the window length when ``X-Ratelimit-Remaining-*`` says the window is spent."""
    hint = retry_after_header(headers)
    if hint is not None:
        return hint
    spent = any(headers.get(f"X-Ratelimit-Remaining-{kind}", "").strip() == "0" for kind in ("Requests", "Tokens"))
    return RATE_WINDOW_SECONDS.get(code) if spent else None


def _api_error(data: Mapping[str, Any], headers: httpx.Headers) -> BackendError:
    """Baidu's ``{"error_code", "error_msg"}`` as our outcome, the code kept for logs and messages, and
    Baidu's own words for the operator (``sdbot check``/``draw``; never shown in chat)."""
    return provider_said(_api_outcome(data, headers), data.get("error_msg"))


def _api_outcome(data: Mapping[str, Any], headers: httpx.Headers) -> BackendError:
    raw = data.get("error_code")
    code = raw if isinstance(raw, int) and not isinstance(raw, bool) else -1
    log.warning("qianfan error %s: %s", raw, str(data.get("error_msg") or "")[:200])
    if code in RATE_LIMIT_CODES:
        hint = _rate_hint(code, headers)
        return BackendError(
            "backend_rate_limited",
            provider=PROVIDER,
            provider_code=code,
            retry_after=hint,
            seconds=wait_seconds(hint, RATE_WINDOW_SECONDS.get(code, DEFAULT_RATE_WAIT)),
        )
    if code in QUOTA_CODES:
        return BackendError("backend_quota_exhausted", provider=PROVIDER, provider_code=code)
    if code in TOKEN_CODES or code in AUTH_CODES:
        return BackendError("backend_auth_failed", provider=PROVIDER, provider_code=code)
    if code in CONFIG_CODES:
        return BackendError("backend_config", provider=PROVIDER, provider_code=code)
    if code in ARGUMENT_CODES:
        return BackendError("backend_invalid_request", provider=PROVIDER, provider_code=code, user_fault=True)
    if code in BOT_BUG_CODES:
        return BackendError("backend_invalid_request", provider=PROVIDER, provider_code=code)
    # 1, 2, 15, 336000, 336100 and codes the table does not know.
    return BackendError("backend_unavailable", provider=PROVIDER, provider_code=raw if code != -1 else None)


def _http_error(response: httpx.Response) -> BackendError:
    """A non-200 status: Baidu itself answers 200, so this is a gateway or proxy in front of it."""
    status = response.status_code
    log.warning("qianfan answered HTTP %s", status)
    if status == 429:
        return rate_limited(PROVIDER, None, status, response.headers, DEFAULT_RATE_WAIT)
    if status in (401, 403):
        return BackendError("backend_auth_failed", provider=PROVIDER, provider_code=status)
    return BackendError("backend_unavailable", provider=PROVIDER, status=status)


def _images(data: Mapping[str, Any], request: DrawRequest) -> list[GeneratedImage]:
    items = data.get("data")
    if not isinstance(items, list) or not items:
        raise BackendError("backend_unavailable", provider=PROVIDER, reason="no_images")
    assert request.seed is not None  # bot.jobs.generation gives every request its seed before it is sent
    items = sorted((item for item in items if isinstance(item, dict)), key=lambda item: _int(item.get("index"), 0))
    out = []
    for i, item in enumerate(items):
        b64 = item.get("b64_image")
        if not isinstance(b64, str | memoryview):
            raise BackendError("backend_bad_image", provider=PROVIDER, reason="missing")
        raw = decode_b64(b64, PROVIDER)
        # Baidu reports no seeds; its SDXL follows the A1111 batch rule (image i uses seed + i), so that is
        # the seed that reproduces image i on its own.
        seed = (request.seed + i) % (SEED_RANGE[1] + 1)
        out.append(GeneratedImage(raw, sniff_format(raw), request.width, request.height, seed=seed))
    return out


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default
