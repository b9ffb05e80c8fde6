"""One generation through a backend: the seed drawn, the images checked. Shared by the CLI and the jobs."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import random
from dataclasses import dataclass

from bot.backends import images
from bot.backends.base import Backend, GeneratedImage, ProgressCallback
from bot.draw.capabilities import Capabilities
from bot.draw.params import SEED_RANGE
from bot.draw.request import DrawRequest
from bot.draw.shape import Drawn, matches_ratio
from bot.errors import BackendError
from bot.process import cpu

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Generation:
    request: DrawRequest  # with the seed actually used
    images: list[GeneratedImage]
    drawn: Drawn = dataclasses.field(default_factory=Drawn)  # what the caption says beyond the request

    @property
    def filtered(self) -> int:
        return sum(1 for image in self.images if image.filtered)

    @property
    def missing(self) -> int:
        """Pictures asked for that the service did not return (it returned fewer than ``--n``): never charged."""
        return max(0, self.request.n - len(self.images))


_seeds = random.Random()  # seeds need to differ, not to be secret


def draw_seed() -> int:
    return _seeds.randrange(SEED_RANGE[1] + 1)


def user_key(platform: str, user_id: str | int) -> str:
    """A stable opaque identifier for a platform user, safe to send to providers (never the raw id)."""
    return hashlib.sha256(f"sdbot:{platform}:{user_id}".encode()).hexdigest()[:32]


async def generate(
    backend: Backend, request: DrawRequest, *, user: str, progress: ProgressCallback | None = None
) -> Generation:
    """Run ``request`` on ``backend``; a request without a seed gets one now, so it can be reported.

    Every image is checked (real image, expected size, no decompression bomb) before it goes anywhere (a service
    that draws at an aspect ratio: the ratio, and the size it chose is reported in :attr:`Generation.drawn`); a
    result where the provider filtered every image is the ``content_filtered`` outcome. Pictures beyond the
    ``n`` asked for are dropped; fewer than asked are delivered, and :attr:`Generation.missing` says how many
    lack (the core refunds them).
    """
    if request.seed is None:
        request = request.with_seed(draw_seed())
    result = await backend.generate(request, user=user, progress=progress)
    if not result:
        raise BackendError("backend_bad_image", provider=None, reason="empty")
    if len(result) > request.n:  # never more than was asked (and charged); Telegram's albums stop at 10 too
        log.warning("%s returned %s pictures for n=%s; keeping the first %s", backend.name, len(result), request.n,
                    request.n)  # fmt: skip
        result = result[: request.n]
    # Pillow, off the loop: one call for every picture
    # A service that draws from a picture at a ratio keeps the picture's shape: that is a ratio it may draw at too.
    shape = None if request.source is None else f"{request.source.width}:{request.source.height}"
    result = await cpu.run(_inspect_all, result, (request.width, request.height), shape)
    if all(image.filtered for image in result):
        raise BackendError("content_filtered")
    caps = await backend.capabilities_of(result[0].service)
    drawn = _drawn(request, result, caps)
    if request.task == "draw":  # an upscaled picture is an end: it offers neither
        offer = await backend.capabilities()  # a pool: any of its services
        drawn = dataclasses.replace(drawn, upscale=offer.upscale, vary=offer.image_to_image)
    return Generation(request, result, drawn)


def _inspect_all(
    result: list[GeneratedImage], expected: tuple[int, int], shape: str | None = None
) -> list[GeneratedImage]:
    """The pictures, each checked, with the size it really has (a service that draws at a ratio chooses it: then
    the ratio is checked instead of the size, or the ``shape`` of the picture it drew from)."""
    out = []
    for image in result:
        info = images.inspect(image.data, None if image.ratio else expected)
        ratios = [r for r in (image.ratio, shape) if r is not None]
        if image.ratio is not None and not any(matches_ratio(info.width, info.height, r) for r in ratios):
            raise BackendError("backend_bad_image", reason="wrong_size", found=f"{info.width}x{info.height}")
        out.append(dataclasses.replace(image, width=info.width, height=info.height))
    return out


def _drawn(request: DrawRequest, result: list[GeneratedImage], caps: Capabilities) -> Drawn:
    first = result[0]
    size = f"{first.width}x{first.height}"
    changed = first.ratio is not None and size != request.size
    return Drawn(
        size=size if changed else None,
        ratio=first.ratio if changed else None,
        unused=caps.unsupported,
        service=first.service,
    )
