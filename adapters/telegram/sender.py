"""Bot API calls with Telegram's lasting failures translated: a group that became a supergroup is followed
to its new id, a chat the bot may no longer write to is :class:`~bot.core.DeliveryGone`, and a status message
that was deleted is simply no longer edited. Flood answers (429) are waited out below this layer, by PTB's
``AIORateLimiter``."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import httpx
from telegram import (
    Bot,
    InlineKeyboardMarkup,
    InputMediaDocument,
    InputMediaPhoto,
    Message,
    MessageEntity,
    ReplyParameters,
)
from telegram.error import BadRequest, ChatMigrated, Forbidden, NetworkError, TelegramError

from adapters.telegram.media import Outgoing
from bot.core import DeliveryGone

log = logging.getLogger(__name__)

T = TypeVar("T")
# (chat id to use, reply parameters or None, forum topic or None) -> the API call
Call = Callable[[int, ReplyParameters | None, int | None], Awaitable[T]]

# BadRequest texts (PTB rewrites their case) that mean the chat will not take messages from the bot again.
_GONE = ("chat not found", "not enough rights", "have no rights", "need administrator rights", "chat_write_forbidden")
_MESSAGE_GONE = ("message to edit not found", "message can't be edited", "message to delete not found")
_MAX_MIGRATIONS = 3


def _says(exc: Exception, phrases: Sequence[str]) -> bool:
    text = str(exc).casefold()
    return any(phrase in text for phrase in phrases)


class DeliveryUnconfirmed(Exception):
    """An upload was sent whole, but Telegram's answer never came (it timed out or the connection dropped
    while waiting): the pictures are most likely in the chat. Never reported as a failed delivery."""


# The httpx failures PTB wraps (as the cause of TimedOut / NetworkError) that happen only once the request
# has been written: what became of it is unknown.
_ANSWER_LOST = (httpx.ReadTimeout, httpx.ReadError, httpx.RemoteProtocolError)


class Sender:
    def __init__(self, bot: Bot, upload_timeout: float = 120.0) -> None:
        """``upload_timeout``: seconds a picture upload may take to be written and answered (the
        ``TELEGRAM_UPLOAD_TIMEOUT`` setting): a large album on a slow link needs far more than PTB's 5 s."""
        self.bot = bot
        self._upload_timeout = upload_timeout
        self._moved: dict[int, int] = {}  # old group id -> supergroup id

    async def _upload_to(self, chat_id: int, reply_to: int | None, thread_id: int | None, call: Call[T]) -> T:
        """:meth:`_to` for uploads: an answer lost after the upload was written is :class:`DeliveryUnconfirmed`."""
        try:
            return await self._to(chat_id, reply_to, thread_id, call)
        except NetworkError as exc:  # TimedOut is one
            if isinstance(exc.__cause__, _ANSWER_LOST):
                raise DeliveryUnconfirmed(f"chat {chat_id}: {type(exc.__cause__).__name__}") from exc
            raise

    def chat(self, chat_id: int) -> int:
        """Where ``chat_id`` lives now (groups move when they become supergroups)."""
        for _ in range(_MAX_MIGRATIONS):
            if chat_id not in self._moved:
                break
            chat_id = self._moved[chat_id]
        return chat_id

    def moved(self, old: int, new: int) -> None:
        if old != new:
            log.info("chat %s migrated to %s", old, new)
            self._moved[old] = new

    async def _to(self, chat_id: int, reply_to: int | None, thread_id: int | None, call: Call[T]) -> T:
        target = self.chat(chat_id)
        for _ in range(_MAX_MIGRATIONS):
            # Message ids and topics of the old group mean nothing in the supergroup.
            same = target == chat_id
            reply = ReplyParameters(reply_to, allow_sending_without_reply=True) if reply_to and same else None
            try:
                return await call(target, reply, thread_id if same else None)
            except ChatMigrated as exc:
                self.moved(target, exc.new_chat_id)
                target = exc.new_chat_id
            except Forbidden as exc:
                raise DeliveryGone(f"chat {target}: forbidden") from exc
            except BadRequest as exc:
                if _says(exc, _GONE):
                    raise DeliveryGone(f"chat {target}: {exc}") from exc
                raise
        raise DeliveryGone(f"chat {chat_id}: migrated too many times")

    async def send_text(
        self,
        chat_id: int,
        text: str,
        *,
        reply_to: int | None = None,
        thread_id: int | None = None,
        markup: InlineKeyboardMarkup | None = None,
        entities: Sequence[MessageEntity] | None = None,
    ) -> Message:
        # No parse_mode: users' prompts are shown as typed and can never break or inject formatting.
        return await self._to(
            chat_id,
            reply_to,
            thread_id,
            lambda chat, reply, thread: self.bot.send_message(
                chat, text, reply_parameters=reply, message_thread_id=thread, reply_markup=markup, entities=entities
            ),
        )

    async def send_photo(
        self,
        chat_id: int,
        file: Outgoing,
        *,
        caption: str,
        reply_to: int | None = None,
        thread_id: int | None = None,
        markup: InlineKeyboardMarkup | None = None,
    ) -> Message:
        send = self.bot.send_document if file.as_document else self.bot.send_photo
        extra: dict[str, Any] = {"disable_content_type_detection": True} if file.as_document else {}
        if file.spoiler and not file.as_document:
            extra["has_spoiler"] = True
        return await self._upload_to(
            chat_id,
            reply_to,
            thread_id,
            lambda chat, reply, thread: send(
                chat,
                file.data,
                filename=file.filename,
                caption=caption,
                reply_parameters=reply,
                message_thread_id=thread,
                reply_markup=markup,
                read_timeout=self._upload_timeout,
                write_timeout=self._upload_timeout,
                **extra,
            ),
        )

    async def send_album(
        self,
        chat_id: int,
        files: Sequence[Outgoing],
        *,
        caption: str,
        reply_to: int | None = None,
        thread_id: int | None = None,
    ) -> tuple[Message, ...]:
        media: list[InputMediaPhoto | InputMediaDocument] = []
        for index, file in enumerate(files):
            text = caption if index == 0 else None  # one caption shows under the whole album
            if file.as_document:
                media.append(InputMediaDocument(file.data, caption=text, filename=file.filename))
            else:
                media.append(
                    InputMediaPhoto(file.data, caption=text, filename=file.filename, has_spoiler=file.spoiler or None)
                )
        return await self._upload_to(
            chat_id,
            reply_to,
            thread_id,
            lambda chat, reply, thread: self.bot.send_media_group(
                chat,
                media,
                reply_parameters=reply,
                message_thread_id=thread,
                read_timeout=self._upload_timeout,
                write_timeout=self._upload_timeout,
            ),
        )

    async def edit_text(self, chat_id: int, message_id: int, text: str) -> bool:
        """Show ``text`` in the message; False when the message is gone (deleted, or its chat moved)."""
        target = self.chat(chat_id)
        if target != chat_id:
            return False
        try:
            await self.bot.edit_message_text(text, target, message_id)
        except ChatMigrated as exc:
            self.moved(target, exc.new_chat_id)
            return False
        except Forbidden:
            return False
        except BadRequest as exc:
            if "not modified" in str(exc).casefold():
                return True
            if _says(exc, _MESSAGE_GONE):
                return False
            raise
        return True

    async def delete(self, chat_id: int, message_id: int) -> None:
        target = self.chat(chat_id)
        if target != chat_id:
            return
        try:
            await self.bot.delete_message(target, message_id)
        except TelegramError as exc:  # already deleted, too old, rights: nothing to do about any of them
            log.debug("could not delete message %s in %s: %s", message_id, target, type(exc).__name__)

    async def action(self, chat_id: int, action: str, *, thread_id: int | None = None) -> None:
        """A chat action ("upload_photo"); failures only cost the indicator."""
        try:
            await self._to(
                chat_id,
                None,
                thread_id,
                lambda chat, _reply, thread: self.bot.send_chat_action(chat, action, message_thread_id=thread),
            )
        except (DeliveryGone, TelegramError) as exc:
            log.debug("chat action in %s failed: %s", chat_id, type(exc).__name__)
