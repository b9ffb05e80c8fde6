"""Image bodies for the image-API fakes: real PNGs of a given size, a non-image body and a PNG bomb.

- ``png_bytes(width, height, seed)``: a real RGB PNG (Pillow), a horizontal two-colour gradient whose
  colours derive from ``seed``; the same arguments always give the same bytes. Cached, so repeated sizes
  cost nothing (a 2048x2048 image takes about 0.1 s the first time).
- ``blank_png(width, height)``: all black, what ModelsLab sends in place of an NSFW image.
- ``blurred_png(width, height)``: flat mid grey, standing in for a content-filtered (blurred) artifact.
- ``NOT_AN_IMAGE``: an HTML error page, for answers that promise an image and deliver something else.
- ``bomb_png(width=30000, height=30000)``: a complete, valid 1-bit PNG of a few hundred kilobytes that
  declares (and really decompresses to) 30000x30000 pixels; Pillow refuses it with DecompressionBombError.
- ``truncated_jpeg(width, height, seed)``: a real JPEG cut short (its end-of-image marker and the last part of
  its scan are gone): Pillow opens and ``verify()``s it, only decoding fails.
- ``corrupt_deflate_png(width, height, seed)``: a PNG whose IDAT data cannot be inflated but whose chunk checksums
  are recomputed, so every chunk is "valid" and only inflating the pixels fails.
- ``png_size(data)``: width and height read from the IHDR chunk, without decoding anything.
- ``seed_colours(seed)``: the two colours ``png_bytes`` uses, so tests can check which seed made an image.
"""

from __future__ import annotations

import functools
import io
import struct
import zlib

from PIL import Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

NOT_AN_IMAGE = (
    b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n"
    b"<body><center><h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>\n"
)

_BOMB_ROWS_PER_BLOCK = 1000


def seed_colours(seed: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """The left and right colours of the gradient ``png_bytes`` draws for ``seed`` (any int)."""
    mixed = (seed * 2654435761 + 0x9E3779B9) & 0xFFFFFFFFFFFF
    left = (mixed & 0xFF, (mixed >> 8) & 0xFF, (mixed >> 16) & 0xFF)
    right = ((mixed >> 24) & 0xFF, (mixed >> 32) & 0xFF, (mixed >> 40) & 0xFF)
    return left, right


def _encode(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=1)
    return out.getvalue()


@functools.lru_cache(maxsize=64)
def png_bytes(width: int, height: int, seed: int = 0) -> bytes:
    """A real ``width`` x ``height`` RGB PNG: a left-to-right gradient between the two seed colours."""
    if width <= 0 or height <= 0:
        raise ValueError(f"bad size {width}x{height}")
    left, right = seed_colours(seed)
    mask = Image.linear_gradient("L").rotate(90).resize((width, 1))  # 0 at the left, 255 at the right
    row = Image.composite(Image.new("RGB", (width, 1), right), Image.new("RGB", (width, 1), left), mask)
    return _encode(row.resize((width, height), Image.Resampling.NEAREST))


@functools.lru_cache(maxsize=16)
def blank_png(width: int, height: int) -> bytes:
    """An all-black RGB PNG of the given size (ModelsLab's replacement for an NSFW image)."""
    return _encode(Image.new("RGB", (width, height), (0, 0, 0)))


@functools.lru_cache(maxsize=16)
def blurred_png(width: int, height: int) -> bytes:
    """A flat grey RGB PNG of the given size (a stand-in for a content-filtered, blurred artifact)."""
    return _encode(Image.new("RGB", (width, height), (128, 128, 128)))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@functools.lru_cache(maxsize=4)
def bomb_png(width: int = 30000, height: int = 30000) -> bytes:
    """A valid 1-bit greyscale PNG of ``width`` x ``height`` black pixels, compressed to a few hundred KB.

    The zlib stream is built from one compressed block of rows, repeated: each block is deflated on its
    own and ends with a full flush, so copies can be concatenated; the Adler-32 of all-zero data is
    computed directly. Building it takes a few milliseconds instead of deflating ~112 MB.
    """
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte 0, then the packed pixels, all zero
    rows_in_block = min(_BOMB_ROWS_PER_BLOCK, height)
    full_blocks, rest = divmod(height, rows_in_block)

    def deflate(rows: int, final: bool) -> bytes:
        compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
        body = compressor.compress(row * rows)
        return body + compressor.flush(zlib.Z_FINISH if final else zlib.Z_FULL_FLUSH)

    block = deflate(rows_in_block, final=False)
    parts = [b"\x78\xda", block * (full_blocks - (0 if rest else 1))]
    parts.append(deflate(rest if rest else rows_in_block, final=True))
    total = len(row) * height
    parts.append(struct.pack(">I", ((total % 65521) << 16) | 1))  # Adler-32 of `total` zero bytes
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # bit depth 1, greyscale
    return PNG_SIGNATURE + _chunk(b"IHDR", header) + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b"")


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height declared by a PNG's IHDR chunk; ValueError when ``data`` is not a PNG."""
    if len(data) < 24 or not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        raise ValueError("not a PNG")
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def truncated_jpeg(width: int, height: int, seed: int = 0) -> bytes:
    """A JPEG missing the last third of its bytes (see the module docstring)."""
    left, right = seed_colours(seed)
    image = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    image.paste(left, (0, 0, width // 2, height))
    image.paste(right, (width // 2, height // 3, width, height))
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90)
    data = out.getvalue()
    return data[: len(data) * 2 // 3]


def corrupt_deflate_png(width: int, height: int, seed: int = 0) -> bytes:
    """``png_bytes`` whose compressed pixel data cannot be inflated (a wrong zlib header), CRCs recomputed.
    (Damage in the middle of the data is not always detectable: it may inflate to other pixels.)"""
    data = png_bytes(width, height, seed)
    chunks, pos = [], len(PNG_SIGNATURE)
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        if kind == b"IDAT" and not chunks[1:]:  # the first IDAT: its zlib header's check bits made wrong
            body = body[:1] + bytes([body[1] ^ 0x01]) + body[2:]
        chunks.append(_chunk(kind, body))
        pos += 12 + length
    return PNG_SIGNATURE + b"".join(chunks)
