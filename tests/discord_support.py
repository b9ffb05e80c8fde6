"""Running the real Discord adapter (and discord.py underneath) against :class:`tests.fakes.discord.FakeDiscord`.

``async with fake_discord() as dc`` starts the fake and points discord.py at it; ``async with
running_bot(dc, db, ...) as bot`` runs a core with the adapter around it as ``sdbot run`` does (prepare,
core start, adapter start; stop and close at the end). A test that restarts the bot opens ``running_bot``
twice on the same fake and database.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from PIL import Image

from adapters.discord import DiscordAdapter
from bot.backends.base import Backend, GeneratedImage, ProgressCallback
from bot.core import Core
from bot.draw.request import DrawRequest
from bot.jobs.job import Job
from bot.storage import open_storage
from tests.fakes.discord import FakeDiscord, FakeInteraction, FakeMessage
from tests.pipeline_support import GatedBackend, make_settings

TOKEN = "discord-test-token-0123456789"


@dataclasses.dataclass
class Bot:
    dc: FakeDiscord
    core: Core
    adapter: DiscordAdapter
    backend: Backend

    async def jobs(self) -> list[Job]:
        rows = await self.core.storage.fetchall("SELECT id FROM jobs ORDER BY id")
        return [job for row in rows if (job := await self.core.get_job(row["id"])) is not None]

    async def delivered(self, rec: FakeInteraction, images: int = 1) -> FakeMessage:
        """Wait until ``rec``'s answer carries ``images`` attachments; return it."""
        return await self.dc.wait_for(
            lambda: rec.original if rec.original and len(rec.original.attachments) >= images else None
        )

    async def replied(self, rec: FakeInteraction) -> FakeMessage:
        """Wait for an immediate (type 4) answer to ``rec``."""
        return await self.dc.wait_for(lambda: rec.original if rec.response_type == 4 else None)


class QuietBackend(GatedBackend):
    """Reports no progress, so that once a job shows "Drawing…" the next edit of its answer is the images."""

    async def generate(
        self, request: DrawRequest, *, user: str, progress: ProgressCallback | None = None
    ) -> list[GeneratedImage]:
        return await super().generate(request, user=user, progress=None)


async def stored_jobs(db: Path) -> list[Job]:
    """The jobs in ``db`` (or the test's PostgreSQL database, see ``engine``) as a stopped bot left them."""
    from tests import pipeline_support

    store = await open_storage(pipeline_support.DATABASE_URL or db)
    try:
        rows = await store.fetchall("SELECT id FROM jobs ORDER BY id")
        return [job for row in rows if (job := await store.jobs.get(row["id"])) is not None]
    finally:
        await store.close()


@asynccontextmanager
async def fake_discord(**kwargs: Any) -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(TOKEN, **kwargs) as dc:
        with dc.patch_discord():
            yield dc  # type: ignore[misc]


@asynccontextmanager
async def running_bot(
    dc: FakeDiscord,
    db: Path,
    backend: Backend | None = None,
    *,
    adapter_options: dict[str, Any] | None = None,
    **settings: Any,
) -> AsyncIterator[Bot]:
    settings.setdefault("discord_bot_token", TOKEN)
    config = make_settings(db, **settings)
    backend = backend or GatedBackend()
    core = await Core.open(config, backend)
    adapter = DiscordAdapter(core, config, guild_ready_timeout=0.05, **(adapter_options or {}))
    try:
        await adapter.prepare()
        await core.start()
        await adapter.start()
        yield Bot(dc, core, adapter, backend)
    finally:
        await adapter.stop()
        await core.close()


def image_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as img:
        return img.size
