"""The offline backend: real images of the requested size, drawn locally and marked as placeholders."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Self

from bot.backends import images
from bot.backends.base import Backend, CheckReport, GeneratedImage, ProgressCallback
from bot.draw.capabilities import SEED, Capabilities
from bot.messages.i18n import Msg
from bot.process import cpu

if TYPE_CHECKING:
    from bot.config import Settings
    from bot.draw.request import DrawRequest


class PlaceholderBackend(Backend):
    name = "placeholder"

    def __init__(self) -> None:
        self._caps = dataclasses.replace(SEED, backend=self.name)

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls()

    async def capabilities(self) -> Capabilities:
        return self._caps

    async def generate(
        self, request: DrawRequest, *, user: str, progress: ProgressCallback | None = None
    ) -> list[GeneratedImage]:
        assert request.seed is not None, "the caller draws the seed"
        out = []
        for i in range(request.n):
            seed = (request.seed + i) % 2**32
            label = f"seed {seed}  image {i + 1}/{request.n}  {request.style}"
            data = await cpu.run(images.placeholder_png, request.width, request.height, seed, label)
            out.append(GeneratedImage(data, "PNG", request.width, request.height, seed=seed))
            if progress is not None:
                await progress((i + 1) / request.n)
        return out

    async def check(self) -> CheckReport:
        return CheckReport(self.name, True, [(Msg("check.label.images"), Msg("check.placeholder.images"))])
