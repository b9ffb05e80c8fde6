"""What the backend tests share: retry policies that do not wait, a clock tests move, image assertions."""

from __future__ import annotations

import asyncio
import functools
import io
import os
import sys
from pathlib import Path

from PIL import Image, ImageDraw

from bot.backends.base import GeneratedImage
from bot.backends.http import RetryPolicy
from bot.draw.picture import fit
from bot.draw.request import Source


class Sleeps:
    """A ``sleep`` for :class:`RetryPolicy` that records each delay the backend chose and does not wait."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        await asyncio.sleep(0)


def fast_retry(retries: int = 2, *, max_wait: float = 30.0, factor: float = 0.01) -> tuple[RetryPolicy, Sleeps]:
    """A policy with production logic but recorded, instant sleeps (no jitter, so delays are exact)."""
    sleeps = Sleeps()
    return RetryPolicy(retries=retries, factor=factor, max_wait=max_wait, jitter=0.0, sleep=sleeps), sleeps


class Clock:
    """A monotonic clock the test moves by hand (token lifetimes without waiting)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def assert_image(image: GeneratedImage, width: int, height: int) -> None:
    """The bytes really decode to a ``width`` x ``height`` image of the declared format."""
    with Image.open(io.BytesIO(image.data)) as img:
        img.load()
        assert img.size == (width, height)
        assert img.format == image.format
    assert (image.width, image.height) == (width, height)


# Variables a developer's shell or CI may hold that would change what a `sdbot` subprocess does.
_AMBIENT = ("SDBOT_", "QIANFAN_", "STABILITY_", "MODELSLAB_", "BEDROCK_", "AWS_", "A1111_", "TELEGRAM_", "DISCORD_")


async def sdbot(*args: str, env: dict[str, str], cwd: Path) -> tuple[int, str, str]:
    """Run ``python -m bot ARGS`` as an operator would, without blocking the loop the fakes serve on.
    ``cwd`` should be a temporary directory, so no ``.env`` file is read."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(_AMBIENT)}
    environment.update(
        AWS_CONFIG_FILE=str(cwd / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(cwd / "no-aws-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
    )
    environment.update(env)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        cwd=cwd,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


# Pictures to draw from --------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def photo(width: int = 1200, height: int = 800) -> bytes:
    """A JPEG with something in it: a diagonal gradient and a red disc off-centre (so crops, flips and mixes show)."""
    img = Image.new("RGB", (width, height))
    img.putdata([((x * 255) // width, (y * 255) // height, 90) for y in range(height) for x in range(width)])
    ImageDraw.Draw(img).ellipse((width // 5, height // 4, width // 5 + height // 3, height // 4 + height // 3), "red")
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=92)
    return out.getvalue()


def source(width: int, height: int, original: bytes | None = None) -> Source:
    """What the core attaches to a request drawing from a picture: ``original`` (a 1200x800 photo) fitted to exactly
    ``width`` x ``height``, as PNG."""
    data = fit(original or photo(), width, height)
    return Source(ref="", width=width, height=height, original="1200x800", data=data)


def pixels(data: bytes) -> tuple[tuple[int, int], bytes]:
    """A picture's size and RGB pixels, to compare meanings rather than encodings."""
    with Image.open(io.BytesIO(data)) as img:
        return img.size, img.convert("RGB").tobytes()
