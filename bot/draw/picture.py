"""The picture a /draw draws from: untrusted bytes checked with Pillow before anything else, then fitted (cropped
to the ratio, resized) to what the service draws. :func:`read` and :func:`fit` are CPU work (through
``bot.process.cpu``, as :func:`check` and :func:`attach` do)."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

from PIL import Image, ImageOps

from bot.draw.capabilities import Capabilities
from bot.draw.request import DrawRequest, Source
from bot.draw.shape import nearest_ratio, ratio_value
from bot.errors import DrawError
from bot.process import cpu

FORMATS = ("JPEG", "PNG", "WEBP")  # what every service with image-to-image takes, and what people send
# A 48-megapixel phone photo passes; a decompression bomb (a small file that would decode to gigabytes) does not.
MAX_PIXELS = 50_000_000
MIN_SIDE = 64  # Stability's and Bedrock's smallest side
RATIO_PIXELS = 1024 * 1024  # a picture for a service that draws at a ratio: about one megapixel (Stability's)


@dataclass(frozen=True, slots=True)
class PictureInfo:
    format: str
    width: int
    height: int

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"


def too_large(size: int | None, max_bytes: int) -> DrawError:
    """The refusal for a picture of ``size`` bytes (None: the platform only said it is too big), before it is
    downloaded where the platform tells its size."""
    return DrawError(
        "picture_too_large", option="image", size_mb="?" if size is None else _mb(size), max_mb=_mb(max_bytes)
    )


def read(data: bytes, max_bytes: int) -> PictureInfo:
    """What ``data`` is, or a ``DrawError`` saying what is wrong with it: too many bytes, not a picture, a format
    the services do not take, too many pixels, too small. All from its header: nothing is decoded yet (a
    decompression bomb costs nothing); a picture damaged further in is refused by :func:`fit`, which decodes it."""
    if len(data) > max_bytes:
        raise too_large(len(data), max_bytes)
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt, (width, height) = img.format or "", img.size
            info = PictureInfo(fmt, width, height)
            if fmt not in FORMATS:
                raise DrawError("picture_format", option="image", found=fmt or "?", allowed=", ".join(FORMATS))
            if width * height > MAX_PIXELS:
                raise DrawError("picture_too_many_pixels", option="image", found=info.size, max_mp=MAX_PIXELS // 10**6)
            if min(width, height) < MIN_SIDE:
                raise DrawError("picture_too_small", option="image", found=info.size, min=MIN_SIDE)
    except DrawError:
        raise
    except Exception:  # Pillow raises many types for garbage input
        raise DrawError("picture_not_image", option="image") from None
    return info


async def check(data: bytes, max_bytes: int) -> PictureInfo:
    """:func:`read`, off the event loop."""
    return await cpu.run(read, data, max_bytes)


async def attach(
    request: DrawRequest,
    caps: Capabilities,
    data: bytes,
    *,
    ref: str,
    original: str,
    kept: bool,
    size: str | None = None,
) -> DrawRequest:
    """``request`` drawing from the picture ``data`` (checked), fitted off the event loop to what the service
    draws at (see :func:`target`), or to ``size`` (an upscale: the picture's own)."""
    width, height = target(caps, request.size) if size is None else _sides(size)
    fitted = await cpu.run(fit, data, width, height)
    return request.with_source(Source(ref, width, height, original, kept, fitted))


def target(caps: Capabilities, size: str) -> tuple[int, int]:
    """The size the picture is fitted to for a request of ``size``: that size, or on a service that draws at an
    aspect ratio (and keeps the picture's shape) about a megapixel at the nearest of its ratios."""
    width, height = (int(part) for part in size.split("x"))
    if not caps.aspect_ratios:
        return width, height
    ratio = ratio_value(nearest_ratio(width, height, caps.aspect_ratios))
    return _multiple(math.sqrt(RATIO_PIXELS * ratio)), _multiple(math.sqrt(RATIO_PIXELS / ratio))


def size_for(width: int, height: int, sizes: tuple[str, ...], default: str) -> str:
    """The offered size a picture of ``width`` x ``height`` is drawn at when no ``--size`` was typed: the nearest
    in shape, and of those the nearest in area to ``default``."""

    def key(size: str) -> tuple[float, float]:
        w, h = (int(part) for part in size.split("x"))
        dw, dh = (int(part) for part in default.split("x"))
        return round(abs(math.log(w / h) - math.log(width / height)), 3), abs(math.log(w * h / (dw * dh)))

    return min(sizes, key=key)


def fit(data: bytes, width: int, height: int) -> bytes:
    """``data`` (checked by :func:`read`) turned upright (EXIF), cropped around its centre to ``width``:``height``
    and resized to it, as a PNG without transparency (flattened on white). Decoding it is the proof it is whole:
    a damaged picture is ``picture_not_image``."""
    try:
        return _fit(data, width, height)
    except Exception:  # Pillow raises many types for damaged input
        raise DrawError("picture_not_image", option="image") from None


def _fit(data: bytes, width: int, height: int) -> bytes:
    with Image.open(io.BytesIO(data)) as img:
        img.draft("RGB", (width, height))  # a big JPEG decodes at a fraction of its size: faster, less memory
        upright = ImageOps.exif_transpose(img)
        if upright.mode in ("RGBA", "LA", "P", "PA"):
            rgba = upright.convert("RGBA")
            flat = Image.new("RGB", rgba.size, (255, 255, 255))
            flat.paste(rgba, mask=rgba.getchannel("A"))
        else:
            flat = upright.convert("RGB")
    fitted = ImageOps.fit(flat, (width, height), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    fitted.save(out, "PNG", compress_level=3)
    return out.getvalue()


def _sides(size: str) -> tuple[int, int]:
    width, height = (int(part) for part in size.split("x"))
    return width, height


def _multiple(value: float, step: int = 64) -> int:
    return max(step, round(value / step) * step)


def _mb(size: int) -> str:
    return f"{size / 2**20:.1f}".removesuffix(".0")
