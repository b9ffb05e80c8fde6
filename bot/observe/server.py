"""``/healthz`` and ``/metrics`` over HTTP (``SDBOT_HTTP_LISTEN``), for a load balancer and Prometheus.

aiohttp's server, which discord.py already installs; each process serves its own (a health check asks about
the process it reaches, and Prometheus scrapes each process and sums).
"""

from __future__ import annotations

import logging

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from bot.core import Core
from bot.errors import ConfigError
from bot.storage import StorageError

log = logging.getLogger(__name__)


class StatusServer:
    def __init__(self, core: Core, host: str, port: int) -> None:
        self._core = core
        self.host, self.port = host, port
        app = web.Application()
        app.router.add_get("/healthz", self._health)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)

    async def start(self) -> None:
        """Listen (``config_invalid`` naming ``SDBOT_HTTP_LISTEN`` when the address cannot be taken)."""
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, self.host, self.port).start()
        except OSError as exc:
            await self._runner.cleanup()
            raise ConfigError(
                "listen_failed", variable="SDBOT_HTTP_LISTEN", address=f"{self.host}:{self.port}", reason=exc.strerror
            ) from None
        log.info("serving /healthz and /metrics on %s:%s", self.host, self.port)

    async def stop(self) -> None:
        await self._runner.cleanup()

    async def _health(self, _request: web.Request) -> web.Response:
        if await self._core.healthy():
            return web.Response(text="ok\n")
        return web.Response(status=503, text="unavailable\n")

    async def _metrics(self, _request: web.Request) -> web.Response:
        try:
            body = await self._core.metrics_text()
        except StorageError as exc:
            log.warning("metrics: the database did not answer (%s)", exc)
            return web.Response(status=503, text="database unavailable\n")
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
