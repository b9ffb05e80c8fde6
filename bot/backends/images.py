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
    """Check that ``data`` is a whole image of an accepted format (and of the ``expected`` size): the size
    is read before any pixel is decoded, so a decompression bomb costs nothing; then every pixel is decoded,
    since a picture that cannot be shown must not be delivered or charged. Raises
    ``BackendError("backend_bad_image")``."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt, (width, height) = img.format or "", img.size
            if fmt not in ACCEPTED_FORMATS:
                raise BackendError("backend_bad_image", reason="format", found=fmt or "unknown")
            if width * height > MAX_PIXELS:
                raise BackendError("backend_bad_image", reason="too_large", found=f"{width}x{height}")
            img.verify()  # walks the chunks and checksums (cheap, and says which kind of damage it is)
        with Image.open(io.BytesIO(data)) as img:
            # verify() passes a JPEG cut short and a PNG whose compressed pixels are damaged under valid
            # checksums: only decoding every pixel proves the picture is whole. The size was checked above,
            # so this costs at most MAX_PIXELS; Pillow decodes without holding the GIL.
            img.load()
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


@dataclass(frozen=True, slots=True)
class FittedImage:
    data: bytes
    format: str
    width: int
    height: int
    reencoded: bool


def fit(
    data: bytes,
    *,
    max_bytes: int,
    max_side_sum: int | None = None,
    max_ratio: float | None = None,
) -> FittedImage:
    """Make an image acceptable to a chat platform: at most ``max_bytes``, width + height at most
    ``max_side_sum`` (scaled down), aspect ratio at most ``max_ratio`` (padded). Images that already fit are
    returned untouched; others are re-encoded as JPEG at the highest quality that fits."""
    with Image.open(io.BytesIO(data)) as img:
        width, height = img.size
        fmt = img.format or "PNG"
        fits = (
            len(data) <= max_bytes
            and (max_side_sum is None or width + height <= max_side_sum)
            and (max_ratio is None or max(width, height) / max(1, min(width, height)) <= max_ratio)
        )
        if fits:
            return FittedImage(data, fmt, width, height, reencoded=False)
        rgb = img.convert("RGB")
    if max_side_sum is not None and width + height > max_side_sum:
        scale = max_side_sum / (width + height)
        rgb = rgb.resize((max(1, int(width * scale)), max(1, int(height * scale))), Image.Resampling.LANCZOS)
    if max_ratio is not None:
        w, h = rgb.size
        if max(w, h) / max(1, min(w, h)) > max_ratio:
            canvas = (w, int(w / max_ratio) + 1) if w > h else (int(h / max_ratio) + 1, h)
            padded = Image.new("RGB", canvas, (0, 0, 0))
            padded.paste(rgb, ((canvas[0] - w) // 2, (canvas[1] - h) // 2))
            rgb = padded
    for quality in (95, 90, 85, 75, 65, 50):
        out = io.BytesIO()
        rgb.save(out, "JPEG", quality=quality, optimize=True)
        if out.tell() <= max_bytes:
            return FittedImage(out.getvalue(), "JPEG", rgb.width, rgb.height, reencoded=True)
    # Still too big at quality 50: halve the pixels until it fits.
    while True:
        rgb = rgb.resize((max(1, rgb.width * 7 // 10), max(1, rgb.height * 7 // 10)), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        rgb.save(out, "JPEG", quality=75, optimize=True)
        if out.tell() <= max_bytes or rgb.width * rgb.height <= 64 * 64:
            return FittedImage(out.getvalue(), "JPEG", rgb.width, rgb.height, reencoded=True)


def resized(data: bytes, width: int, height: int) -> tuple[bytes, bool]:
    """An upscaler's answer (4x, or about 4 megapixels) as exactly ``width`` x ``height`` (twice the picture's
    sides), PNG; whether it had to be resized. CPU work: call it through ``bot.process.cpu``. The size is read
    before any pixel is decoded, so an answer far larger than asked costs nothing; one that is not a picture is
    ``backend_bad_image``."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt, (found_w, found_h) = img.format or "", img.size
            if fmt not in ACCEPTED_FORMATS:
                raise BackendError("backend_bad_image", reason="format", found=fmt or "unknown")
            if found_w * found_h > MAX_PIXELS:
                raise BackendError("backend_bad_image", reason="too_large", found=f"{found_w}x{found_h}")
            if (found_w, found_h) == (width, height) and fmt == "PNG":
                return data, False
            picture = img.convert("RGB").resize((width, height), Image.Resampling.LANCZOS)
    except BackendError:
        raise
    except Exception as exc:  # Pillow raises many types for garbage input
        raise BackendError("backend_bad_image", reason="not_an_image", found=type(exc).__name__) from None
    out = io.BytesIO()
    picture.save(out, "PNG", compress_level=3)
    return out.getvalue(), True


def _placeholder_gradient(width: int, height: int, seed: int) -> Image.Image:
    """The gradient :func:`placeholder_png` draws for ``seed``, without its label."""
    rng = random.Random(seed)
    dark = tuple(rng.randrange(0, 110) for _ in range(3))
    light = tuple(rng.randrange(140, 256) for _ in range(3))
    gradient = Image.linear_gradient("L").rotate(rng.choice((0, 45, 90, 135)), expand=False)
    return ImageOps.colorize(gradient.resize((width, height)), dark, light)  # type: ignore[arg-type]


def _placeholder_label(img: Image.Image, title: str, label: str) -> bytes:
    """``img`` with the placeholder's black band (``title`` and ``label``), as PNG."""
    width = img.width
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=max(16, width // 24))
    small = ImageFont.load_default(size=max(12, width // 48))
    margin = width // 20
    draw.rectangle((0, 0, width, margin * 3), fill=(0, 0, 0))
    draw.text((margin, margin // 2), title, fill=(255, 255, 255), font=font)
    draw.text((margin, int(margin * 1.9)), label, fill=(220, 220, 220), font=small)
    out = io.BytesIO()
    img.save(out, "PNG", compress_level=1)
    return out.getvalue()


def placeholder_from_png(source: bytes, width: int, height: int, seed: int, strength: float, label: str) -> bytes:
    """The placeholder's image-to-image: the picture ``source`` (fitted to ``width`` x ``height``; resized if not)
    mixed with the placeholder gradient of ``seed`` by ``strength`` (0 keeps the picture, 1 is the gradient alone),
    plainly marked as a placeholder."""
    with Image.open(io.BytesIO(source)) as img:
        picture = img.convert("RGB")
    if picture.size != (width, height):
        picture = picture.resize((width, height), Image.Resampling.LANCZOS)
    mixed = Image.blend(picture, _placeholder_gradient(width, height, seed), min(1.0, max(0.0, strength)))
    return _placeholder_label(mixed, "PLACEHOLDER", label)


def placeholder_upscale_png(source: bytes, width: int, height: int, label: str) -> bytes:
    """The placeholder's upscale: the picture ``source`` resized to ``width`` x ``height`` (Lanczos), plainly marked
    as a placeholder's."""
    with Image.open(io.BytesIO(source)) as img:
        picture = img.convert("RGB").resize((width, height), Image.Resampling.LANCZOS)
    return _placeholder_label(picture, "PLACEHOLDER UPSCALE", label)
