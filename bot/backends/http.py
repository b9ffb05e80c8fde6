"""What the HTTP backends share: one client per backend, timeouts, retries with backoff, transport errors."""

from __future__ import annotations

import asyncio
import binascii
import email.utils
import logging
import math
import mmap
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import msgspec

from bot.backends.deadline import DeadlineTransport
from bot.config import redact_url
from bot.errors import BackendError
from bot.process import cpu

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
    """The one ``AsyncClient`` a backend keeps for its life (connection pooling, HTTP keep-alive). Each
    request's whole answer must arrive within ``timeout`` seconds (see :mod:`bot.backends.deadline`)."""
    limits = httpx.Limits(max_connections=32, max_keepalive_connections=16)
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(timeout, connect=connect_timeout),
        headers=headers,
        auth=auth,
        follow_redirects=False,
        transport=DeadlineTransport(httpx.AsyncHTTPTransport(limits=limits), timeout),
    )


@dataclass(frozen=True)
class RetryPolicy:
    """How a backend retries transient failures: the provider's ``retry_after`` when it gave one, else
    ``factor * 2^attempt`` plus up to ``jitter`` seconds (the backoff Qianfan's SDK documents), at most
    ``max_wait``. Tests pass tiny waits and a recording ``sleep``."""

    retries: int = 3
    factor: float = 0.5
    max_wait: float = 30.0
    jitter: float = 0.5
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    async def run(self, call: Callable[[], Awaitable[T]], retryable: Callable[[BackendError], bool]) -> T:
        """``call``, again after each retryable failure, at most ``retries`` more times. A provider that asks
        for a longer wait than ``max_wait`` is not retried early (that would only burn its quota)."""
        for attempt in range(self.retries + 1):
            try:
                return await call()
            except BackendError as exc:
                late = exc.retry_after is not None and exc.retry_after > self.max_wait
                if attempt >= self.retries or late or not retryable(exc):
                    # Callers reschedule by retry_after; the message already holds the same seconds.
                    if exc.code == "backend_rate_limited" and exc.retry_after is None and "seconds" in exc.params:
                        exc.retry_after = float(exc.params["seconds"])
                    raise
                delay = exc.retry_after
                if delay is None:
                    delay = self.factor * 2**attempt + random.uniform(0, self.jitter)
                delay = min(delay, self.max_wait)
                log.info("retrying after %s (%s %s), attempt %d in %.2fs", exc.code, exc.provider,
                         exc.provider_code, attempt + 1, delay)  # fmt: skip
                await self.sleep(delay)
        raise AssertionError("unreachable")


# transport_error's ``reason``s after which the request surely or most likely never started any work, so a
# retry cannot pay twice: no connection was made, or the server dropped it without answering.
RETRYABLE_TRANSPORT = frozenset({"connect", "disconnect"})


def provider_said(error: BackendError, message: object) -> BackendError:
    """``error`` carrying the provider's own words (``provider_message``, at most 300 characters): for the
    operator's tools and logs, never for chat, where the catalog's message is shown instead."""
    if isinstance(message, str) and message.strip():
        error.params["provider_message"] = message.strip()[:300]
    return error


def located(error: BackendError, response: httpx.Response) -> BackendError:
    """``error`` carrying where the answer came from and its HTTP status, for the operator's tools
    (:func:`bot.cli.diagnose.operator_detail`): the address without its query (a key may ride there) or password."""
    error.params.setdefault("url", redact_url(str(response.request.url.copy_with(query=None, fragment=None))))
    error.params.setdefault("status", response.status_code)
    return error


def transport_error(exc: httpx.HTTPError, provider: str) -> BackendError:
    """Map an httpx failure to our outcome without echoing its text (it may contain the URL and a token).

    ``reason`` says what failed: ``connect``, ``disconnect``, ``timeout`` (the answer is late: the provider may
    still be generating, so retrying would pay twice and wait twice) or ``network``."""
    detail = f"{provider}: {type(exc).__name__}"
    if isinstance(exc, httpx.ConnectTimeout | httpx.ConnectError):
        reason = "connect"
    elif isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
        reason = "disconnect"
    elif isinstance(exc, httpx.TimeoutException):
        reason = "timeout"
    else:
        reason = "network"
    url = _address(exc)
    if isinstance(exc, httpx.TimeoutException):
        return BackendError("backend_timeout", provider=None, detail=detail, reason=reason, url=url)
    return BackendError("backend_unavailable", provider=None, detail=detail, reason=reason, url=url)


def _address(exc: httpx.HTTPError) -> str | None:
    """Where the failed request went, without its query string (a token may ride there) or a password."""
    try:
        url = exc.request.url
    except RuntimeError:  # an exception raised without a request
        return None
    return redact_url(str(url.copy_with(query=None, fragment=None)))


async def send(
    client: httpx.AsyncClient, method: str, url: str | httpx.URL, *, provider: str, **kwargs: Any
) -> tuple[httpx.Response, list[bytes]]:
    """One request and its answer: a success's body as the chunks it arrived in (for :func:`parse_json`; joined
    on the loop, a 35 MiB answer would hold it for tens of milliseconds), any other answer read whole as usual
    (``response.json()`` works on it). A transport failure is a :func:`transport_error`."""
    chunks: list[bytes] = []
    try:
        async with client.stream(method, url, **kwargs) as response:
            if response.status_code != 200:
                await response.aread()
            else:
                chunks = [chunk async for chunk in response.aiter_bytes()]
    except httpx.HTTPError as exc:
        log.warning("%s request failed: %s", provider, type(exc).__name__)
        raise transport_error(exc, provider) from None
    return response, chunks


# base64 decoding is one C call holding the GIL: a whole picture at once stalls the event loop, even from a
# worker thread. So it goes in slices, offering the GIL about every millisecond (BENCHMARKS.md: "Sliced base64").
B64_SLICE = 64 * 1024
B64_YIELD_EVERY = 0.001  # seconds of decoding between two offers of the GIL


def decode_b64(data: Text, provider: str, start: int = 0) -> bytes:
    """Strict base64 (the alphabet only, no whitespace, correct padding) of ``data[start:]``, in slices; call it
    through :func:`bot.process.cpu.run` for anything large."""
    pad = "=" if isinstance(data, str) else b"="
    try:
        if len(data) - start <= B64_SLICE:
            return binascii.a2b_base64(data[start:] if start else data, strict_mode=True)
        parts = []
        offered = time.perf_counter()
        for at in range(start, len(data), B64_SLICE):
            piece = data[at : at + B64_SLICE]
            if at + B64_SLICE < len(data) and piece[-1:] == pad:
                raise binascii.Error("padding before the end")  # each slice alone would accept it
            parts.append(binascii.a2b_base64(piece, strict_mode=True))
            if time.perf_counter() - offered >= B64_YIELD_EVERY:
                time.sleep(0)  # releases the GIL long enough for a waiting thread to take it
                offered = time.perf_counter()
        return b"".join(parts)
    except (binascii.Error, ValueError, TypeError):
        raise BackendError("backend_bad_image", reason="base64", detail=provider) from None


def retry_after_header(headers: Mapping[str, str]) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date), or None when absent or unusable."""
    raw = headers.get("Retry-After")
    if not raw:
        return None
    raw = raw.strip()
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    if math.isnan(seconds) or math.isinf(seconds):
        return None
    return max(0.0, seconds)


def wait_seconds(retry_after: float | None, default: float) -> int:
    """The whole seconds a rate-limited user is told to wait (the ``seconds`` parameter of the message)."""
    return max(1, math.ceil(retry_after if retry_after is not None else default))


def rate_limited(
    provider: str, code: str | int | None, status: int, headers: Mapping[str, str], default: float
) -> BackendError:
    """``backend_rate_limited`` for an HTTP answer: the wait its ``Retry-After`` asks for, else ``default``
    seconds for the user's message (the retry policy then backs off on its own)."""
    hint = retry_after_header(headers)
    return BackendError(
        "backend_rate_limited",
        provider=provider,
        provider_code=code,
        retry_after=hint,
        status=status,
        seconds=wait_seconds(hint, default),
    )


Text = str | memoryview  # a JSON string as parse_json gives it: a long one stays a view of the answer

# Longer strings in a large answer (base64 pictures) stay views of its buffer (BENCHMARKS.md: "Big answers").
_BIG_TEXT = 64 * 1024
_INLINE_JSON_BYTES = 256 * 1024
_LEVEL = dict[str, msgspec.Raw] | list[msgspec.Raw] | str | int | float | bool | None
_ESCAPE = re.compile(rb"\\")


async def parse_json(content: bytes | list[bytes]) -> Any:
    """The JSON answer ``content`` (whole or in chunks); a large one is parsed in a worker thread, its long
    strings left as memoryviews (:data:`Text`) for :func:`decode_b64`. Raises ``ValueError``."""
    chunks = [content] if isinstance(content, bytes) else content
    try:
        if sum(map(len, chunks)) <= _INLINE_JSON_BYTES:
            return msgspec.json.decode(b"".join(chunks))
        return await cpu.run(_parse_large, chunks)
    except RecursionError:  # nested too deep to be an answer
        raise ValueError("JSON nested too deep") from None


def _parse_large(chunks: list[bytes]) -> Any:
    # Copied chunk by chunk into memory mapped on first touch: one join, or a growing buffer moved by realloc,
    # would hold the GIL for the whole copy at once.
    buffer = mmap.mmap(-1, sum(map(len, chunks)))
    at = 0
    for chunk in chunks:
        buffer[at : at + len(chunk)] = chunk
        at += len(chunk)
    return _lazy(buffer)


def _lazy(raw: Any) -> Any:
    """One level of JSON at a time, so that no single call holds the GIL for a whole 35 MiB answer, and no
    long string is copied (escapes, which base64 never needs, are read the slow way)."""
    view = memoryview(raw)
    if len(view) <= _BIG_TEXT:
        return msgspec.json.decode(view)
    if view[:1] == b'"':
        return view[1:-1] if _ESCAPE.search(view) is None else msgspec.json.decode(view)
    level = msgspec.json.decode(view, type=_LEVEL)
    if isinstance(level, dict):
        return {key: _lazy(value) for key, value in level.items()}
    if isinstance(level, list):
        return [_lazy(value) for value in level]
    return level


def sniff_format(data: bytes) -> str:
    """Pillow's name for the image format ``data`` starts with; PNG when unknown (the caller's check with
    Pillow rejects what is not an image anyway)."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return "PNG"
