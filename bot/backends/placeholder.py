"""The offline backend: real images of the requested size, drawn locally and marked as placeholders. It draws from
pictures (the picture mixed with its gradient by ``--strength``) and upscales (the picture resized to twice its
sides), so operators can try those buttons before connecting an image service. Pillow's work runs off the event
loop (``bot.process.cpu``)."""

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

DEFAULT_STRENGTH = 0.6


class PlaceholderBackend(Backend):
    name = "placeholder"

    def __init__(self) -> None:
        self._caps = dataclasses.replace(
            SEED, backend=self.name, image_to_image=True, strength=DEFAULT_STRENGTH, upscale=True
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls()

    async def capabilities(self) -> Capabilities:
        return self._caps

    async def generate(
        self, request: DrawRequest, *, user: str, progress: ProgressCallback | None = None
    ) -> list[GeneratedImage]:
        assert request.seed is not None, "the caller draws the seed"
        source = request.source
        if request.task == "upscale":
            assert source is not None, "an upscale carries its picture"
            label = f"{source.width}x{source.height} -> {request.width}x{request.height}"
            data = await cpu.run(images.placeholder_upscale_png, source.data, request.width, request.height, label)
            if progress is not None:
                await progress(1.0)
            return [GeneratedImage(data, "PNG", request.width, request.height)]
        strength = self._caps.strength if request.strength is None else request.strength
        out = []
        for i in range(request.n):
            seed = (request.seed + i) % 2**32
            label = f"seed {seed}  image {i + 1}/{request.n}  {request.style}"
            if source is None:
                data = await cpu.run(images.placeholder_png, request.width, request.height, seed, label)
            else:
                label += f"  strength {strength:g}"
                data = await cpu.run(
                    images.placeholder_from_png, source.data, request.width, request.height, seed, strength, label
                )
            out.append(GeneratedImage(data, "PNG", request.width, request.height, seed=seed))
            if progress is not None:
                await progress((i + 1) / request.n)
        return out

    async def check(self) -> CheckReport:
        return CheckReport(self.name, True, [(Msg("check.label.images"), Msg("check.placeholder.images"))])
