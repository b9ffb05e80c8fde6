"""Pictures people draw from on Discord, and downloading them.

Two kinds of reference: an ``image`` option's attachment (``url:<link>``), whose signed link runs out within a day,
so the job keeps the picture's bytes; and a message's attachment picked with "Draw from this image"
(``msg:<channel>:<message>:<attachment>``), which lasts as long as the message: each download asks for the
message again, for a fresh link."""

from __future__ import annotations

import logging

import aiohttp
import discord

from bot.chats.refs import PictureRef
from bot.draw.picture import too_large
from bot.errors import DrawError

log = logging.getLogger(__name__)


def is_image(attachment: discord.Attachment) -> bool:
    return (attachment.content_type or "").startswith("image/")


def attachment_ref(attachment: discord.Attachment) -> PictureRef:
    """The ``image`` option of /draw. Its link expires: the job keeps the bytes."""
    return PictureRef(f"url:{attachment.url}", durable=False, size=attachment.size)


def message_ref(message: discord.Message) -> PictureRef | None:
    """The first picture attached to ``message``, or None."""
    for attachment in message.attachments:
        if is_image(attachment):
            ref = f"msg:{message.channel.id}:{message.id}:{attachment.id}"
            return PictureRef(ref, durable=True, size=attachment.size)
    return None


def is_message_in(ref: str, channel_id: int | None) -> bool:
    """Whether ``ref`` names an attachment of a message in channel ``channel_id`` (a form's id can be forged)."""
    kind, _, rest = ref.partition(":")
    parts = rest.split(":")
    return kind == "msg" and len(parts) == 3 and all(p.isdigit() for p in parts) and parts[0] == str(channel_id)


async def download(client: discord.Client, ref: str, max_bytes: int) -> bytes:
    """The picture ``ref`` names: ``picture_gone`` when Discord no longer has it (the message deleted, the link
    expired), ``picture_unavailable`` when it cannot be had now, ``picture_too_large`` past ``max_bytes``."""
    kind, _, rest = ref.partition(":")
    try:
        if kind == "msg":
            url = await _fresh_link(client, rest, max_bytes)
        elif kind == "url":
            url = rest
        else:
            raise DrawError("picture_gone", option="image")
        data = await client.http.get_from_cdn(url)
    except (discord.NotFound, discord.Forbidden) as exc:
        log.info("picture no longer on Discord (%s)", exc.status)
        raise DrawError("picture_gone", option="image") from None
    except (discord.HTTPException, aiohttp.ClientError, TimeoutError) as exc:
        log.info("picture download failed for now: %s", type(exc).__name__)
        raise DrawError("picture_unavailable", option="image") from None
    if len(data) > max_bytes:
        raise too_large(len(data), max_bytes)
    return data


async def _fresh_link(client: discord.Client, rest: str, max_bytes: int) -> str:
    channel_id, message_id, attachment_id = rest.split(":")
    try:
        message = await client.http.get_message(int(channel_id), int(message_id))
    except discord.Forbidden:  # reading a message by id takes Read Message History
        raise DrawError("picture_no_access", option="image") from None
    for attachment in message.get("attachments", []):
        if attachment.get("id") == attachment_id:
            size = int(attachment.get("size") or 0)
            if size > max_bytes:
                raise too_large(size, max_bytes)
            return str(attachment["url"])
    raise DrawError("picture_gone", option="image")
