"""The pictures requests draw from (or upscale), for the core: fetched through their platform's sink and checked
before anything else, fitted to what the service draws at; and, when a job runs, its picture again: the bytes
kept beside the job, or fetched again by the platform's reference and fitted as at admission."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, Protocol

from bot.chats.refs import PictureRef
from bot.draw import picture as pictures
from bot.draw.capabilities import Capabilities
from bot.draw.request import DrawRequest
from bot.errors import DrawError
from bot.jobs.job import Job
from bot.process import cpu
from bot.storage.port import JobRecords


class PictureSource(Protocol):
    """What a platform's sink does for pictures (see ``Sink.fetch_picture`` in :mod:`bot.core`)."""

    async def fetch_picture(self, ref: str, max_bytes: int) -> bytes: ...


class Sources:
    """``sinks`` by platform (the core's own mapping, filled as adapters register), ``jobs`` for kept pictures."""

    def __init__(self, sinks: Mapping[str, PictureSource], jobs: JobRecords, max_bytes: int) -> None:
        self._sinks = sinks
        self._jobs = jobs
        self.max_bytes = max_bytes

    async def fetch(
        self, platform: str, picture: PictureRef, caps: Capabilities, *, purpose: Literal["draw", "upscale"] = "draw"
    ) -> tuple[bytes, pictures.PictureInfo]:
        """A picture to draw from (or to upscale), downloaded and its header checked; refused at once when the
        service cannot draw from pictures, or when the platform said it is too big."""
        if purpose == "draw" and not caps.image_to_image:
            raise DrawError("picture_unsupported", option="image", backend=caps.backend)
        if picture.size is not None and picture.size > self.max_bytes:  # refused without downloading it
            raise pictures.too_large(picture.size, self.max_bytes)
        data = await self._sinks[platform].fetch_picture(picture.ref, self.max_bytes)
        return data, await pictures.check(data, self.max_bytes)

    @staticmethod
    async def attach(
        request: DrawRequest,
        caps: Capabilities,
        picture: PictureRef,
        data: bytes,
        original: str,
        *,
        size: str | None = None,
    ) -> DrawRequest:
        """``request`` drawing from the picture, fitted (to ``size``: an upscale's, the picture's own); its bytes kept
        beside the job unless the platform keeps it."""
        kept = not picture.durable
        return await pictures.attach(request, caps, data, ref=picture.ref, original=original, kept=kept, size=size)

    async def load(self, job: Job) -> DrawRequest:
        """The job's request with the bytes of the picture it draws from (``picture_gone`` when they cannot be had)."""
        request = job.seeded_request
        source = request.source
        if source is None:
            return request
        if source.kept:
            data = await self._jobs.picture(job.id)
            if data is None:
                raise DrawError("picture_gone", option="image")
            return request.with_source(source.with_data(data))
        sink = self._sinks.get(job.platform)
        if sink is None:
            raise DrawError("picture_gone", option="image")
        fetched = await sink.fetch_picture(source.ref, self.max_bytes)
        await pictures.check(fetched, self.max_bytes)
        return request.with_source(source.with_data(await cpu.run(pictures.fit, fetched, source.width, source.height)))
