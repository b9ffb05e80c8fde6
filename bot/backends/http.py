"""What the HTTP backends share: one client per backend, timeouts, retries with backoff, transport errors."""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx

from bot.errors import BackendError

log = logging.getLogger(__name__)
T = TypeVar("T")


def make_client(
    base_url: str,
    *,
    timeout: float,
    connect_timeout: float,
    headers: dict[str, str] | None = None,
    auth: httpx.Auth | tuple[str, str] | None = None,
) -> httpx.AsyncClient:
    """The one ``AsyncClient`` a backend keeps for its life (connection pooling, HTTP keep-alive)."""
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(timeout, connect=connect_timeout),
        headers=headers,
        auth=auth,
        follow_redirects=False,
        limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
    )


def backoff_delay(attempt: int, *, factor: float = 0.5, jitter: float = 0.5, max_wait: float = 30.0) -> float:
    """``min(factor * 2^attempt + rand(0, jitter), max_wait)``: the backoff Qianfan's SDK documents."""
    return min(factor * 2**attempt + random.uniform(0, jitter), max_wait)


async def with_retries(
    call: Callable[[], Awaitable[T]],
    *,
    retries: int,
    retryable: Callable[[BackendError], bool] = lambda e: e.code in ("backend_unavailable", "backend_rate_limited"),
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    factor: float = 0.5,
    max_wait: float = 30.0,
) -> T:
    """Run ``call``; on a retryable :class:`BackendError` wait (the provider's ``retry_after`` when it gave one,
    else exponential backoff with jitter) and try again, at most ``retries`` more times."""
    attempt = 0
    while True:
        try:
            return await call()
        except BackendError as exc:
            if attempt >= retries or not retryable(exc):
                raise
            delay = exc.retry_after if exc.retry_after is not None else backoff_delay(attempt, factor=factor)
            delay = min(delay, max_wait)
            log.info(
                "retrying after %s (%s %s), attempt %d in %.2fs",
                exc.code,
                exc.provider,
                exc.provider_code,
                attempt + 1,
                delay,
            )
            attempt += 1
            await sleep(delay)


def transport_error(exc: httpx.HTTPError, provider: str) -> BackendError:
    """Map an httpx failure to our outcome without echoing its text (it may contain the URL and a token)."""
    if isinstance(exc, httpx.TimeoutException):
        return BackendError("backend_timeout", provider=None, detail=f"{provider}: {type(exc).__name__}")
    return BackendError("backend_unavailable", provider=None, detail=f"{provider}: {type(exc).__name__}")


def decode_b64(data: str, provider: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise BackendError("backend_bad_image", reason="base64", detail=provider) from None
