"""Image checks and drawing with Pillow. Everything here is CPU work: call it through ``asyncio.to_thread``."""

from __future__ import annotations

import io
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont, ImageOps

from bot.errors import BackendError

ACCEPTED_FORMATS = frozenset({"PNG", "JPEG", "WEBP"})
# The largest image any backend may return: 2048x2048 is the biggest size we ask for; leave room for
# providers that round up, refuse anything that would decompress to hundreds of megabytes.
MAX_PIXELS = 4096 * 4096


@dataclass(frozen=True, slots=True)
class ImageInfo:
    format: str
    width: int
    height: int


def inspect(data: bytes, expected: tuple[int, int] | None = None) -> ImageInfo:
    """Check that ``data`` is a whole image of an accepted format (and of the ``expected`` size) without
    decoding its pixels, so a decompression bomb costs nothing. Raises ``BackendError("backend_bad_image")``."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt, (width, height) = img.format or "", img.size
            if fmt not in ACCEPTED_FORMATS:
                raise BackendError("backend_bad_image", reason="format", found=fmt or "unknown")
            if width * height > MAX_PIXELS:
                raise BackendError("backend_bad_image", reason="too_large", found=f"{width}x{height}")
            img.verify()  # walks the chunks and checksums; catches truncated and corrupt files
    except BackendError:
        raise
    except Exception as exc:  # Pillow raises many types for garbage input
        raise BackendError("backend_bad_image", reason="not_an_image", found=type(exc).__name__) from None
    if expected is not None and (width, height) != expected:
        raise BackendError("backend_bad_image", reason="wrong_size", found=f"{width}x{height}")
    return ImageInfo(fmt, width, height)


def placeholder_png(width: int, height: int, seed: int, label: str) -> bytes:
    """A real PNG of the requested size, the same for the same seed, plainly marked as a placeholder."""
    rng = random.Random(seed)
    dark = tuple(rng.randrange(0, 110) for _ in range(3))
    light = tuple(rng.randrange(140, 256) for _ in range(3))
    gradient = Image.linear_gradient("L").rotate(rng.choice((0, 45, 90, 135)), expand=False)
    img = ImageOps.colorize(gradient.resize((width, height)), dark, light)  # type: ignore[arg-type]
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=max(16, width // 24))
    small = ImageFont.load_default(size=max(12, width // 48))
    margin = width // 20
    draw.rectangle((0, 0, width, margin * 3), fill=(0, 0, 0))
    draw.text((margin, margin // 2), "PLACEHOLDER", fill=(255, 255, 255), font=font)
    draw.text((margin, int(margin * 1.9)), label, fill=(220, 220, 220), font=small)
    out = io.BytesIO()
    img.save(out, "PNG", compress_level=1)
    return out.getvalue()
