"""Images as Telegram accepts them: a photo within sendPhoto's limits, or (``TELEGRAM_SEND_ORIGINALS=1``) the
original file as a document when it would not be a valid photo."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from bot.backends import images
from bot.backends.base import GeneratedImage

PHOTO_MAX_BYTES = 10 * 1024 * 1024
PHOTO_MAX_SIDE_SUM = 10_000
PHOTO_MAX_RATIO = 20.0
DOCUMENT_MAX_BYTES = 50 * 1024 * 1024  # the public Bot API's upload limit
LOCAL_DOCUMENT_MAX_BYTES = 2000 * 1024 * 1024  # a self-hosted Bot API server's

_EXTENSIONS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp"}


@dataclass(frozen=True, slots=True)
class Outgoing:
    data: bytes
    filename: str
    as_document: bool
    reencoded: bool = False
    spoiler: bool = False  # a photo under Telegram's spoiler cover (a picture the service's filter flagged)


def photo_ok(image: GeneratedImage) -> bool:
    width, height = image.width, image.height
    return (
        len(image.data) <= PHOTO_MAX_BYTES
        and width + height <= PHOTO_MAX_SIDE_SUM
        and max(width, height) / max(1, min(width, height)) <= PHOTO_MAX_RATIO
    )


def _reencode(image: GeneratedImage, name: str) -> Outgoing:
    fitted = images.fit(
        image.data, max_bytes=PHOTO_MAX_BYTES, max_side_sum=PHOTO_MAX_SIDE_SUM, max_ratio=PHOTO_MAX_RATIO
    )
    return Outgoing(fitted.data, f"{name}.{_EXTENSIONS.get(fitted.format, 'jpg')}", False, fitted.reencoded)


async def prepare(
    pictures: list[GeneratedImage], *, name: str, originals: bool, document_limit: int = DOCUMENT_MAX_BYTES
) -> list[Outgoing]:
    """What to upload for ``pictures``. Telegram cannot mix photos and documents in one album, so once one
    picture goes as a document (originals mode) they all do."""
    names = [f"{name}-{i}" if len(pictures) > 1 else name for i in range(1, len(pictures) + 1)]
    as_documents = originals and any(not photo_ok(p) and len(p.data) <= document_limit for p in pictures)
    out: list[Outgoing] = []
    for picture, base in zip(pictures, names, strict=True):
        ext = _EXTENSIONS.get(picture.format, "png")
        if as_documents and len(picture.data) <= document_limit:
            out.append(Outgoing(picture.data, f"{base}.{ext}", as_document=True))
        elif as_documents:  # too big even for a document: the best photo it can be, sent as a file
            fitted = await asyncio.to_thread(_reencode, picture, base)
            out.append(Outgoing(fitted.data, fitted.filename, as_document=True, reencoded=True))
        elif photo_ok(picture):
            out.append(Outgoing(picture.data, f"{base}.{ext}", as_document=False))
        else:
            out.append(await asyncio.to_thread(_reencode, picture, base))  # Pillow work off the event loop
    return out
