"""Pictures people draw from on Telegram: which one a message carries, and downloading it by its file_id (which
Telegram keeps: a job, Again and a restarted bot fetch the same picture again by it)."""

from __future__ import annotations

import logging

from telegram import Bot, Message
from telegram.error import BadRequest, NetworkError, RetryAfter, TelegramError

from bot.chats.refs import PictureRef
from bot.draw.picture import too_large
from bot.errors import DrawError

log = logging.getLogger(__name__)

# getFile refuses files over 20 MB ("Bad Request: file is too big"), whatever the bot's own limit.
DOWNLOAD_LIMIT = 20 * 1024 * 1024


def picture_of(message: Message | None) -> PictureRef | None:
    """The picture ``message`` carries: a photo (its largest size) or an image sent as a file; else None."""
    if message is None:
        return None
    if message.photo:
        largest = message.photo[-1]
        return PictureRef(largest.file_id, durable=True, size=largest.file_size)
    document = message.document
    if document is not None and (document.mime_type or "").startswith("image/"):
        return PictureRef(document.file_id, durable=True, size=document.file_size)
    return None


def file_id(message: Message) -> str | None:
    """The file_id of the picture a message of the bot carries (a photo's largest size, or a file)."""
    if message.photo:
        return message.photo[-1].file_id
    return message.document.file_id if message.document is not None else None


async def download(bot: Bot, file_id: str, max_bytes: int) -> bytes:
    """The file's bytes; its size is checked before it is downloaded. Telegram's refusals become the picture's
    errors (``picture_too_large``, ``picture_gone``, ``picture_unavailable``), never a traceback."""
    try:
        file = await bot.get_file(file_id)
        if file.file_size is not None and file.file_size > max_bytes:
            raise too_large(file.file_size, max_bytes)
        data = bytes(await file.download_as_bytearray())
    except BadRequest as exc:
        if "too big" in exc.message.casefold():
            raise too_large(None, min(max_bytes, DOWNLOAD_LIMIT)) from None
        log.info("picture %s… cannot be had from Telegram: %s", file_id[:8], exc.message)
        raise DrawError("picture_gone", option="image") from None
    except (NetworkError, RetryAfter) as exc:  # TimedOut is a NetworkError
        log.info("picture download failed for now: %s", type(exc).__name__)
        raise DrawError("picture_unavailable", option="image") from None
    except TelegramError as exc:
        log.info("picture download refused: %s", type(exc).__name__)
        raise DrawError("picture_unavailable", option="image") from None
    if len(data) > max_bytes:
        raise too_large(len(data), max_bytes)
    return data
