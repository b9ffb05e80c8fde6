"""Several real ``sdbot run`` processes on one PostgreSQL database, behind a round-robin reverse proxy.

The proxy does what nginx's ``proxy_next_upstream error`` does in front of the webhooks: each request goes to
the next process in turn, and to the one after it when that one cannot be reached (killed). What a process
accepted and then died on is the bot's business: held in the inbox, taken over by the others.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import aiohttp
import asyncpg
from aiohttp import web

from tests.test_telegram_run import free_port

SECRET = "shared_Webhook-secret1"
ROOT = Path(__file__).resolve().parent.parent


class RoundRobinProxy:
    def __init__(self) -> None:
        self.upstreams: list[str] = []
        self.forwarded: list[tuple[int, int]] = []  # (upstream index, status)
        self._turn = itertools.count()
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/tg-hook"

    async def start(self) -> None:
        self._session = aiohttp.ClientSession()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    async def _forward(self, request: web.Request) -> web.Response:
        assert self._session is not None
        body = await request.read()
        first = next(self._turn)
        for attempt in range(len(self.upstreams)):
            index = (first + attempt) % len(self.upstreams)
            try:
                async with self._session.request(
                    request.method,
                    self.upstreams[index] + request.path_qs,
                    data=body,
                    headers={k: v for k, v in request.headers.items() if k.lower() != "host"},
                    timeout=aiohttp.ClientTimeout(total=10),
                ) as answer:
                    payload = await answer.read()
                    self.forwarded.append((index, answer.status))
                    return web.Response(status=answer.status, body=payload)
            except (aiohttp.ClientConnectionError, TimeoutError):
                continue  # that process is gone: the next one
        return web.Response(status=502)


@dataclass
class Cluster:
    dsn: str
    proxy: RoundRobinProxy
    processes: list[asyncio.subprocess.Process] = field(default_factory=list)
    status: list[str] = field(default_factory=list)  # each process's /healthz and /metrics (SDBOT_HTTP_LISTEN)

    async def workers(self) -> dict[int, int]:
        """pid -> jobs it is generating now, not delivering (from ``jobs.worker``: host:pid:nonce)."""
        conn = await asyncpg.connect(self.dsn)
        try:
            rows = await conn.fetch(
                "SELECT worker FROM jobs WHERE status = 'running' AND worker IS NOT NULL AND delivering_at IS NULL"
            )
        finally:
            await conn.close()
        held: dict[int, int] = {}
        for row in rows:
            pid = int(row["worker"].split(":")[1])
            held[pid] = held.get(pid, 0) + 1
        return held

    def process(self, pid: int) -> asyncio.subprocess.Process:
        return next(p for p in self.processes if p.pid == pid)

    async def fetch(self, sql: str) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.dsn)
        try:
            return list(await conn.fetch(sql))
        finally:
            await conn.close()


@asynccontextmanager
async def cluster(count: int, env: dict[str, str], tmp_path: Path) -> AsyncIterator[Cluster]:
    """``count`` processes in webhook mode behind one proxy, each on its own port; stopped (SIGTERM, or
    SIGKILL if stopped already or stuck) at the end. Yields once every one has registered its webhook."""
    proxy = RoundRobinProxy()
    await proxy.start()
    group = Cluster(env["SDBOT_DB"], proxy)
    try:
        for n in range(count):
            port, status = free_port(), free_port()
            proxy.upstreams.append(f"http://127.0.0.1:{port}")
            group.status.append(f"http://127.0.0.1:{status}")
            own = {
                **env,
                "TELEGRAM_WEBHOOK_URL": proxy.url,
                "TELEGRAM_WEBHOOK_LISTEN": "127.0.0.1",
                "TELEGRAM_WEBHOOK_PORT": str(port),
                "TELEGRAM_WEBHOOK_SECRET": SECRET,
                "SDBOT_HTTP_LISTEN": f"127.0.0.1:{status}",
            }
            group.processes.append(await start_process(own, tmp_path / f"p{n}"))
        for port_url in proxy.upstreams:
            await _wait_listening(port_url)
        yield group
    finally:
        for process in group.processes:
            if process.returncode is None:
                os.kill(process.pid, signal.SIGCONT)
                process.send_signal(signal.SIGTERM)
        for process in group.processes:
            try:
                await asyncio.wait_for(process.communicate(), 30)
            except TimeoutError:
                process.kill()
                await process.communicate()
        await proxy.stop()


async def start_process(env: dict[str, str], folder: Path, *command: str) -> asyncio.subprocess.Process:
    """``python -m bot run`` (or ``python -m <command>``) as tests/test_telegram_run.py's start_sdbot, its
    output in ``folder/log`` (a pipe nobody reads would fill up and stop a process that logs every update)."""
    ambient = ("SDBOT_", "TELEGRAM_", "DISCORD_", "QIANFAN_", "STABILITY_", "MODELSLAB_", "BEDROCK_", "A1111_")
    environment = {k: v for k, v in os.environ.items() if not k.startswith(ambient)}
    environment["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    with _log_file(folder) as log:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", *(command or ("bot", "run")), cwd=folder, env={**environment, **env}, stdout=log,
            stderr=log,
        )  # fmt: skip


def _log_file(folder: Path) -> BinaryIO:
    folder.mkdir(exist_ok=True)
    return (folder / "log").open("wb")


def logs(tmp_path: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted(tmp_path.glob("p*/log")))


async def _wait_listening(url: str) -> None:
    async with aiohttp.ClientSession() as session, asyncio.timeout(60):
        while True:
            try:
                async with session.get(url + "/") as _:
                    return
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.1)
