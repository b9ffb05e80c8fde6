"""Helpers for the Telegram adapter tests: the adapter around a real Core, started and stopped in the order
``sdbot run`` uses, against the fake Bot API; and an instant backend that returns prepared images."""

from __future__ import annotations

import dataclasses
import io
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from PIL import Image

from adapters.telegram import TelegramAdapter
from bot.backends import images
from bot.backends.base import Backend, CheckReport, GeneratedImage, ProgressCallback
from bot.config import Settings
from bot.core import Core
from bot.draw.capabilities import SEED, Capabilities
from bot.draw.request import DrawRequest
from tests.fakes.telegram import FakeTelegram
from tests.pipeline_support import make_settings

USER = 4242
ZH_USER = 4343
GROUP = -100555


def tg_settings(tmp_path: Path, tg: FakeTelegram, **overrides: Any) -> Settings:
    return make_settings(tmp_path / "sdbot.db", telegram_bot_token=tg.token, telegram_api_url=tg.url, **overrides)


@asynccontextmanager
async def fake_telegram() -> AsyncIterator[FakeTelegram]:
    fake = FakeTelegram()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


@dataclass
class Running:
    core: Core
    adapter: TelegramAdapter


@asynccontextmanager
async def running(settings: Settings, backend: Backend, **options: Any) -> AsyncIterator[Running]:
    """The adapter and core as ``sdbot run`` drives them (prepare, core.start, start ... stop, close), with
    a short status interval and poll timeout so tests stay quick."""
    core = await Core.open(settings, backend)
    defaults: dict[str, Any] = {"status_interval": 0.2, "poll_timeout": 1, "shutdown_grace": 1.0}
    adapter = TelegramAdapter(core, settings, **{**defaults, **options})
    prepared = False
    try:
        await adapter.prepare()
        prepared = True
        await core.start()
        await adapter.start()
        yield Running(core, adapter)
    finally:
        if prepared:
            await adapter.stop()
        await core.close()


def png(width: int, height: int, color: str = "teal") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, "PNG")
    return out.getvalue()


def noise_png(width: int, height: int) -> bytes:
    """Incompressible: a 2048x2048 one is about 12 MB, more than Telegram takes as a photo."""
    out = io.BytesIO()
    Image.frombytes("RGB", (width, height), os.urandom(width * height * 3)).save(out, "PNG", compress_level=0)
    return out.getvalue()


class PreparedBackend(Backend):
    """Answers at once with prepared images (one per size, drawn on first use), like a very fast service."""

    name = "prepared"

    def __init__(self, prepared: dict[str, bytes] | None = None, *, pictures: bool = False) -> None:
        """``pictures``: it draws from pictures and upscales them too (each request is kept with its picture)."""
        self.prepared = dict(prepared or {})
        self.requests: list[DrawRequest] = []
        self.pictures = pictures

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls()

    async def capabilities(self) -> Capabilities:
        return dataclasses.replace(SEED, backend=self.name, image_to_image=self.pictures, upscale=self.pictures)

    def image(self, size: str) -> bytes:
        if size not in self.prepared:
            width, height = (int(side) for side in size.split("x"))
            self.prepared[size] = images.placeholder_png(width, height, 1, "prepared")
        return self.prepared[size]

    async def generate(
        self, request: DrawRequest, *, user: str, progress: ProgressCallback | None = None
    ) -> list[GeneratedImage]:
        assert request.seed is not None
        self.requests.append(request)
        data = self.image(request.size)
        return [
            GeneratedImage(data, "PNG", request.width, request.height, seed=request.seed + i) for i in range(request.n)
        ]

    async def check(self) -> CheckReport:
        return CheckReport(self.name, True)


def size_of(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as img:
        return img.size
