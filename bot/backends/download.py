"""Pictures a service answers with as links (ModelsLab, Qianfan v2, OpenAI-compatible services' ``url`` answers):
fetched with a bound on their size and one time budget for the whole body."""

from __future__ import annotations

import asyncio

import httpx

from bot.backends.http import transport_error
from bot.errors import BackendError

CHUNK = 64 * 1024


async def download(
    client: httpx.AsyncClient,
    url: object,
    *,
    provider: str,
    max_bytes: int,
    budget: float,
    missing: str,
    gone: tuple[int, ...] = (404,),
) -> list[bytes]:
    """GET ``url`` (absolute http(s) only), streaming, refusing anything past ``max_bytes``; the answer's chunks.

    A status in ``gone`` is ``backend_unavailable`` with the provider code ``missing`` (a link not uploaded yet;
    a signed link past its time answers 403); another status, ``http_<status>``."""
    try:
        target = httpx.URL(str(url)) if isinstance(url, str) else None
    except (httpx.InvalidURL, TypeError):
        target = None
    if target is None:
        raise BackendError("backend_bad_image", provider=provider, reason="url", found="invalid")
    if target.scheme not in ("http", "https") or not target.host:
        raise BackendError("backend_bad_image", provider=provider, reason="url", found=target.scheme or "relative")
    try:
        # One budget for the whole body: the client's read timeout alone restarts with every chunk.
        async with asyncio.timeout(budget):
            return await _stream(client, target, provider=provider, max_bytes=max_bytes, missing=missing, gone=gone)
    except TimeoutError:
        raise BackendError("backend_timeout", provider=provider, reason="download") from None
    except httpx.HTTPError as exc:
        raise transport_error(exc, provider) from None


async def _stream(
    client: httpx.AsyncClient, target: httpx.URL, *, provider: str, max_bytes: int, missing: str, gone: tuple[int, ...]
) -> list[bytes]:
    # Output files live on CDNs that may redirect; httpx itself refuses non-http(s) redirect targets. The client's
    # key is not sent: a signed link needs none (S3-style storage refuses a request with two), and a CDN is not
    # the service.
    request = client.build_request("GET", target, headers={"Accept": "image/*"})
    request.headers.pop("Authorization", None)
    response = await client.send(request, stream=True, follow_redirects=True)
    try:
        if response.status_code in gone:
            raise BackendError("backend_unavailable", provider=provider, provider_code=missing)
        if response.status_code != 200:
            raise BackendError("backend_unavailable", provider=provider, provider_code=f"http_{response.status_code}")
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise BackendError("backend_bad_image", provider=provider, reason="too_large", found=declared)
        chunks: list[bytes] = []
        total = 0
        async for chunk in response.aiter_bytes(CHUNK):
            total += len(chunk)
            if total > max_bytes:
                raise BackendError("backend_bad_image", provider=provider, reason="too_large", found=f">{total}")
            chunks.append(chunk)
        return chunks
    finally:
        await response.aclose()
