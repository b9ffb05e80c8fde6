"""The shared lifecycle of every fake: an aiohttp application bound to 127.0.0.1 on a free port."""

from __future__ import annotations

from types import TracebackType

from aiohttp import web


class FakeServer:
    """Base class: subclasses fill ``self.app`` with routes in ``__init__`` and call ``super().__init__()`` first.

    Use as ``async with FakeX() as fake: ... fake.url ...``. ``requests`` keeps every request the fake
    answered, in order, as ``(method, path)`` so tests can count calls. A fake that was stopped and is started
    again listens on its old port: to its clients, the same service went away and came back (outage tests).
    """

    def __init__(self) -> None:
        self.app = web.Application(client_max_size=64 * 1024 * 1024)
        self.requests: list[tuple[str, str]] = []
        self._runner: web.AppRunner | None = None
        self.port: int = 0

        @web.middleware
        async def _record(request: web.Request, handler):  # type: ignore[no-untyped-def]
            self.requests.append((request.method, request.path))
            return await handler(request)

        self.app.middlewares.append(_record)

    @property
    def url(self) -> str:
        """Base URL, without a trailing slash."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> FakeServer:
        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)  # 0 the first time: any free port
        await site.start()
        server = site._server  # aiohttp keeps the asyncio server here; it is the only way to learn the port
        assert server is not None and server.sockets
        self.port = server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeServer:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()
