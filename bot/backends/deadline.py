"""A deadline on the whole of each HTTP exchange with an image service, not only on the gap between bytes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx


class DeadlineTransport(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport, seconds: float) -> None:
        self._inner = inner
        self.seconds = seconds

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        deadline = asyncio.get_running_loop().time() + self.seconds
        try:
            async with asyncio.timeout_at(deadline):
                response = await self._inner.handle_async_request(request)
        except TimeoutError:
            raise httpx.ReadTimeout(_late(self.seconds), request=request) from None
        response.stream = _DeadlineStream(response.stream, deadline, self.seconds, request)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


class _DeadlineStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.SyncByteStream | httpx.AsyncByteStream, deadline: float, seconds: float,
                 request: httpx.Request) -> None:  # fmt: skip
        assert isinstance(inner, httpx.AsyncByteStream)
        self._inner = inner
        self._deadline = deadline
        self._seconds = seconds
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        chunks = self._inner.__aiter__()
        while True:
            try:
                async with asyncio.timeout_at(self._deadline):
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise httpx.ReadTimeout(_late(self._seconds), request=self._request) from None
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


def _late(seconds: float) -> str:
    return f"the whole answer took longer than {seconds:g} s"
