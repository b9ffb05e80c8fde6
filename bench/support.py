"""What the benchmarks share: the summary row, the machine, realistic images, an instant backend and a sink.

Images: :func:`photo_png` draws a PNG that compresses like a real Stable Diffusion picture (about 1.7 MB at
1024x1024, 7 MB at 2048x2048), not a flat one of a few kilobytes, so copying it costs what copying a real
one costs. :class:`InstantBackend` answers at once with prepared pictures held as base64, the way every
provider sends them, and decodes them as the real backends do (:func:`bot.backends.http.decode_b64`, in a
worker thread), so "the backend call" includes the one unavoidable decode.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import io
import os
import platform
import random
import sqlite3
import statistics
import struct
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from PIL import Image, ImageChops

from bot.backends import images
from bot.backends.base import Backend, CheckReport, GeneratedImage, ProgressCallback
from bot.backends.http import decode_b64, sniff_format
from bot.config import Settings
from bot.core import ChatRef, Core, JobEvent, UserRef
from bot.draw.capabilities import SEED, Capabilities
from bot.draw.request import DrawRequest
from bot.errors import SdbotError
from bot.jobs.generation import Generation
from bot.jobs.job import Job
from bot.process import cpu

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# The summary table ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Figure:
    """One row of ``python -m bench``: the figure, the floor it is compared with, and the goal."""

    benchmark: str
    figure: str
    floor: str
    ratio: str
    goal: str
    met: bool | None  # None: no goal, reported for information

    @property
    def verdict(self) -> str:
        return "-" if self.met is None else ("yes" if self.met else "NO")


@dataclass(frozen=True, slots=True)
class Ratio:
    """One configuration's figure over another's, one ratio per round (see :mod:`bench.rounds` for why)."""

    each: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.each)

    def __str__(self) -> str:
        if len(self.each) == 1:
            return f"{self.median:.2f}"
        return f"{self.median:.2f} ({min(self.each):.2f}-{max(self.each):.2f})"


def print_table(rows: Sequence[Sequence[str]], *, header: Sequence[str]) -> None:
    table = [list(header), *[list(r) for r in rows]]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for index, row in enumerate(table):
        cells = [c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(zip(row, widths, strict=True))]
        print("  ".join(cells).rstrip())
        if index == 0:
            print("  ".join("-" * w for w in widths))


def print_figures(figures: Sequence[Figure]) -> None:
    print_table(
        [[f.benchmark, f.figure, f.floor, f.ratio, f.goal, f.verdict] for f in figures],
        header=["benchmark", "figure", "floor", "ratio", "goal", "met?"],
    )


def machine() -> str:
    """CPU model, cores, Python and SQLite versions: what BENCHMARKS.md records with the figures."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            model = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), model)
    except OSError:
        pass
    return (
        f"{model}, {os.cpu_count()} CPUs; Python {platform.python_version()} ({platform.python_implementation()}); "
        f"SQLite {sqlite3.sqlite_version}"
    )


# Images --------------------------------------------------------------------------------------------------


def photo_png(width: int, height: int, seed: int = 0) -> bytes:
    """A PNG about as large as a real generated picture of that size: the placeholder drawing plus fine noise
    (3 bits a channel), which PNG cannot compress away."""
    base = Image.open(io.BytesIO(images.placeholder_png(width, height, seed, "bench"))).convert("RGB")
    noise = random.Random(seed).randbytes(width * height * 3).translate(bytes(b & 0x07 for b in range(256)))
    picture = ImageChops.add(base, Image.frombytes("RGB", (width, height), noise))
    out = io.BytesIO()
    picture.save(out, "PNG", compress_level=1)
    return out.getvalue()


def encoded_photos(width: int, height: int, count: int = 4) -> list[str]:
    """``count`` distinct pictures as base64 text, the form every provider's JSON answer carries."""
    return [base64.b64encode(photo_png(width, height, seed)).decode("ascii") for seed in range(count)]


def png_header_ok(data: bytes, width: int, height: int) -> bool:
    """The floor's image check: PNG signature and IHDR size, nothing decoded."""
    if data[:8] != PNG_SIGNATURE or data[12:16] != b"IHDR":
        return False
    return struct.unpack(">II", data[16:24]) == (width, height)


# A backend and a sink ------------------------------------------------------------------------------------


class BenchBackend(Backend):
    """What every benchmark backend shares: the default capabilities, built once as real backends cache theirs,
    and a check that always passes. Subclasses answer ``generate``."""

    name = "instant"

    def __init__(self) -> None:
        self.caps = dataclasses.replace(SEED, backend=self.name)

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        raise NotImplementedError("benchmark only")

    async def capabilities(self) -> Capabilities:
        return self.caps

    async def check(self) -> CheckReport:
        return CheckReport(self.name, True)


class InstantBackend(BenchBackend):
    """Answers at once: request ``i`` gets the prepared pictures ``i, i+1, ...`` (base64), decoded in one worker
    thread call like a real backend decodes a provider's answer. ``hold`` (optional) is awaited with the decoded
    pictures in hand before returning, so a benchmark can keep many generations in flight at once."""

    def __init__(self, encoded: Sequence[str], hold: Any = None) -> None:
        super().__init__()
        self.encoded = list(encoded)
        self.hold = hold
        self._next = 0

    async def generate(
        self, request: DrawRequest, *, user: str, progress: ProgressCallback | None = None
    ) -> list[GeneratedImage]:
        assert request.seed is not None
        first, self._next = self._next, self._next + 1
        answer = [self.encoded[(first + i) % len(self.encoded)] for i in range(request.n)]
        datas = await cpu.run(_decode_all, answer, self.name)
        if self.hold is not None:
            await self.hold()
        return [
            GeneratedImage(data, sniff_format(data), request.width, request.height, seed=request.seed + i)
            for i, data in enumerate(datas)
        ]


def _decode_all(answer: list[str], provider: str) -> list[bytes]:
    return [decode_b64(text, provider) for text in answer]


class MemorySink:
    """Delivery to memory: counts the pictures and their bytes, then lets them go. ``done`` is set once
    ``expected`` jobs were delivered; ``hold`` (optional) is awaited inside each delivery first."""

    def __init__(self, expected: int, hold: Any = None) -> None:
        self.expected = expected
        self.hold = hold
        self.delivered = 0
        self.images = 0
        self.bytes = 0
        self.failed: list[str] = []
        self.done = asyncio.Event()

    async def on_progress(self, job: Job, event: JobEvent) -> None:
        return None

    async def deliver(self, job: Job, generation: Generation) -> None:
        if self.hold is not None:
            await self.hold()
        self.images += len(generation.images)
        self.bytes += sum(len(image.data) for image in generation.images)
        self._count()

    async def on_failed(self, job: Job, error: SdbotError, refunded: bool) -> None:
        self.failed.append(error.code)
        self._count()

    def _count(self) -> None:
        self.delivered += 1
        if self.delivered >= self.expected:
            self.done.set()


def bench_settings(db: Path, **overrides: Any) -> Settings:
    """Shipped defaults with the limits off (a benchmark measures work, not refusals) and ``overrides``."""
    limits = {"rate_per_minute": 0, "daily_images": 0, "chat_daily_images": 0, "max_pending": 100_000}
    return dataclasses.replace(Settings.from_env({}, env_file=None), db=db, **(limits | overrides))


async def draw_all(backend: Backend, jobs: int, concurrency: int, size: int, upload: float = 0.0) -> float:
    """``jobs`` ``/draw`` commands of ``size``x``size`` at once, from ten users, through a real core on ``backend``
    with ``concurrency`` slots and a sink whose every delivery takes ``upload`` seconds: the seconds from the first
    submission to the last job recorded done. Raises when a job is lost."""
    users = 10
    with tempfile.TemporaryDirectory(prefix="sdbot-bench-") as tmp:
        core = await Core.open(bench_settings(Path(tmp) / "bench.db", backend_concurrency=concurrency), backend)
        try:
            sink = MemorySink(jobs, hold=(lambda: asyncio.sleep(upload)) if upload else None)
            core.register_sink("telegram", sink)
            await core.start()
            people = [UserRef("telegram", str(100 + u)) for u in range(users)]
            chats = [ChatRef("telegram", str(100 + u), False) for u in range(users)]
            begin = time.perf_counter()
            await asyncio.gather(
                *(core.submit(people[j % users], chats[j % users], f"/draw a lighthouse --size {size}x{size}", {})
                  for j in range(jobs))
            )  # fmt: skip
            await sink.done.wait()
            await core.wait_idle()
            seconds = time.perf_counter() - begin
            if sink.failed or sink.images != jobs:
                raise AssertionError(f"lost jobs: {sink.images} of {jobs} delivered, failed {sink.failed}")
            return seconds
        finally:
            await core.close()
