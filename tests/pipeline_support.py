"""Helpers for the job pipeline tests: a controllable backend, a recording sink, settings and a Core.

:class:`GatedBackend` draws real placeholder PNGs (so :func:`bot.jobs.generation.generate` checks pass) but can
hold each generation until the test releases it, fail chosen prompts, and tells the test when generations
start, so tests synchronise on conditions instead of sleeping.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Self

from bot.backends import images
from bot.backends.base import Backend, CheckReport, GeneratedImage, ProgressCallback
from bot.config import Settings
from bot.core import Core, DeliveryGone, JobEvent
from bot.draw.capabilities import SEED, Capabilities
from bot.draw.request import DrawRequest
from bot.errors import SdbotError
from bot.jobs.generation import Generation
from bot.jobs.job import Job
from bot.storage.sqlite import SQLiteStorage

# Waits are for conditions, never for time; this bound only turns a broken promise into a failure, not a hang.
WAIT_LIMIT = 20.0


# Set by the ``engine`` fixture (tests/conftest.py) while a test runs on PostgreSQL: every database the test
# opens through make_settings is then that one PostgreSQL database instead of a file.
DATABASE_URL: str | None = None


def make_settings(db: Path, **overrides: Any) -> Settings:
    """Defaults as shipped (not the caller's environment), with ``db`` and ``overrides``."""
    return dataclasses.replace(Settings.from_env({}, env_file=None), db=DATABASE_URL or db, **overrides)


class GatedBackend(Backend):
    name = "gated"

    def __init__(self, *, hold: bool = False, filtered: int = 0, pictures: bool = False) -> None:
        self.hold = hold
        self.pictures = pictures  # it draws from pictures, and upscales them
        self.filtered = filtered  # blank this many images of each result, as a provider's filter does
        self.failures: dict[str, BaseException] = {}  # prompt -> what generating it raises
        self.free: set[str] = set()  # prompts generated at once even while holding
        self.started: list[DrawRequest] = []
        self._changed = asyncio.Condition()
        self._gates: list[asyncio.Event] = []
        self._release_all = False

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls()

    async def capabilities(self) -> Capabilities:
        return dataclasses.replace(SEED, backend=self.name, image_to_image=self.pictures, upscale=self.pictures)

    async def generate(
        self, request: DrawRequest, *, user: str, progress: ProgressCallback | None = None
    ) -> list[GeneratedImage]:
        assert request.seed is not None
        gate = asyncio.Event()
        async with self._changed:
            self.started.append(request)
            self._gates.append(gate)
            if self._release_all or not self.hold or request.prompt in self.free:
                gate.set()
            self._changed.notify_all()
        await gate.wait()
        if request.prompt in self.failures:
            raise self.failures[request.prompt]
        out = []
        for i in range(request.n):
            data = await asyncio.to_thread(_png, request.width, request.height, request.seed + i)
            out.append(GeneratedImage(data, "PNG", request.width, request.height, request.seed + i, i < self.filtered))
            if progress is not None:
                await progress((i + 1) / request.n)
        return out

    async def wait_started(self, count: int) -> None:
        async with asyncio.timeout(WAIT_LIMIT), self._changed:
            await self._changed.wait_for(lambda: len(self.started) >= count)

    def release(self, index: int | None = None) -> None:
        """Let generation ``index`` (in start order) finish, or every one, now and later, when None."""
        if index is None:
            self._release_all = True
            for gate in self._gates:
                gate.set()
        else:
            self._gates[index].set()

    async def check(self) -> CheckReport:
        return CheckReport(self.name, True)


_PNG_CACHE: dict[tuple[int, int, int], bytes] = {}


def _png(width: int, height: int, seed: int) -> bytes:
    key = (width, height, seed % 7)  # a few distinct images are plenty; drawing is the slow part
    if key not in _PNG_CACHE:
        _PNG_CACHE[key] = images.placeholder_png(width, height, seed, "test")
    return _PNG_CACHE[key]


class RecordingSink:
    """Records every call in order. Routes with ``"gone": true`` raise DeliveryGone, ``"broken": true``
    raise RuntimeError on delivery; ``hold_delivery`` makes deliveries wait for :meth:`release_delivery`."""

    def __init__(self, log_path: Path | None = None) -> None:
        self.calls: list[tuple[str, int, Any]] = []  # (kind, job id, event | seed | (code, refunded))
        self.jobs: dict[int, Job] = {}
        self.generations: dict[int, Generation] = {}
        self.log_path = log_path
        self.hold_delivery = False
        self._deliveries_may_finish = asyncio.Event()
        self._changed = asyncio.Condition()

    async def on_progress(self, job: Job, event: JobEvent) -> None:
        await self._record("progress", job, event)

    async def deliver(self, job: Job, generation: Generation) -> None:
        if job.route.get("gone"):
            raise DeliveryGone("chat deleted")
        if job.route.get("broken"):
            raise RuntimeError("platform API exploded")
        await self._record("deliver_started", job, generation.request.seed)
        if self.hold_delivery:
            await self._deliveries_may_finish.wait()
        self.generations[job.id] = generation
        await self._record("delivered", job, generation.request.seed)

    async def on_failed(self, job: Job, error: SdbotError, refunded: bool) -> None:
        await self._record("failed", job, (error.code, refunded))

    def release_delivery(self) -> None:
        self._deliveries_may_finish.set()

    async def _record(self, kind: str, job: Job, detail: Any) -> None:
        async with self._changed:
            self.calls.append((kind, job.id, detail))
            self.jobs[job.id] = job
            if self.log_path is not None and kind != "progress":
                line = {"kind": kind, "job": job.id, "detail": detail, "user": job.user, "images": job.images}
                with self.log_path.open("a") as fh:  # tiny appends; this sink exists only in tests
                    fh.write(json.dumps(line) + "\n")
            self._changed.notify_all()

    def of(self, kind: str) -> list[tuple[int, Any]]:
        return [(job_id, detail) for k, job_id, detail in self.calls if k == kind]

    def events(self, job_id: int) -> list[JobEvent]:
        return [detail for k, j, detail in self.calls if k == "progress" and j == job_id]

    async def wait_for(self, kind: str, count: int) -> None:
        await self.wait_until(lambda: len(self.of(kind)) >= count)

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(WAIT_LIMIT), self._changed:
            await self._changed.wait_for(predicate)


@asynccontextmanager
async def open_core(
    db: Path, backend: Backend | None = None, *, platforms: tuple[str, ...] = ("telegram", "discord"), **settings: Any
) -> AsyncIterator[tuple[Core, RecordingSink]]:
    """A started Core on ``db`` with one RecordingSink for ``platforms``; closed afterwards."""
    core = await Core.open(make_settings(db, **settings), backend or GatedBackend())
    sink = RecordingSink()
    for platform in platforms:
        core.register_sink(platform, sink)
    await core.start()
    try:
        yield core, sink
    finally:
        await core.close()


async def usage_matches_jobs(store: SQLiteStorage) -> list[tuple[Any, ...]]:
    """Rows where a usage counter differs from the sum of its jobs' charged images (should be none)."""
    rows = await store.fetchall(
        """
        WITH expected AS (
            SELECT 'user' AS scope, user_key AS key, quota_day AS day, sum(charged) AS images FROM jobs
            GROUP BY user_key, quota_day
            UNION ALL
            SELECT 'chat', chat_key, quota_day, sum(charged) FROM jobs WHERE group_chat GROUP BY chat_key, quota_day
        )
        SELECT e.scope, e.key, e.day, e.images, coalesce(u.images, 0) AS counted
        FROM expected AS e LEFT JOIN usage AS u ON (u.scope, u.key, u.day) = (e.scope, e.key, e.day)
        WHERE e.images <> coalesce(u.images, 0)
        """
    )
    return [tuple(r) for r in rows]


# Real processes (tests/pipeline_worker.py) ----------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent


class Worker:
    """``python -m tests.pipeline_worker`` with its own settings; read its stdout line by line with a bound."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("SDBOT_", "TELEGRAM_", "DISCORD_"))}
        # A file, so a chatty child never blocks on a pipe; closed in close().
        self.stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.pipeline_worker", *args],
            cwd=ROOT,
            env={**clean, **env},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
        )
        self._reader = ThreadPoolExecutor(max_workers=1)

    def readline(self) -> str:
        assert self.proc.stdout is not None
        line = self._reader.submit(self.proc.stdout.readline).result(timeout=WAIT_LIMIT * 3)
        if not line:
            raise AssertionError(f"worker exited ({self.proc.wait()}): {self.error_output()}")
        return line.rstrip("\n")

    def read_until(self, marker: str) -> list[str]:
        lines = []
        while (line := self.readline()) != marker:
            lines.append(line)
        return lines

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def error_output(self) -> str:
        self.stderr.seek(0)
        return self.stderr.read()[-3000:]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()
        self.stderr.close()
        self._reader.shutdown(wait=False)
