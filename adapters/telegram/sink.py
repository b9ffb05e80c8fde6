"""The core's :class:`~bot.core.Sink` for Telegram: status replies, photos and albums, failure notices."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Message
from telegram.error import BadRequest

from adapters.closing import ShutdownGate, park
from adapters.telegram import media, pictures
from adapters.telegram.media import Outgoing
from adapters.telegram.sender import DeliveryUnconfirmed, Sender
from adapters.telegram.status import STATUS_KEY, StatusBoard
from adapters.telegram.text import photo_caption
from bot.commands import describe_event, describe_failure
from bot.core import DeliveryGone, JobEvent
from bot.draw.shape import Drawn
from bot.errors import SdbotError
from bot.jobs.generation import Generation
from bot.jobs.job import Job
from bot.messages.i18n import Lang, t
from bot.messages.presentation import shortfall

log = logging.getLogger(__name__)

# Telegram refused an upload as a photo although it looked like one: send the same files as documents.
_PHOTO_REFUSED = ("photo_invalid", "image_process_failed", "file is too big", "photo_save_file_invalid")
_ACTION_EVERY = 4.5  # seconds; a chat action shows for about five

UpdateRoute = Callable[[int, dict[str, Any]], Awaitable[object]]  # Core.update_route


SPOILER_KEY = "spoiler"  # the route says the chat shows flagged pictures under a spoiler (set at admission)
PICTURES_KEY = "pictures"  # the route's file_ids of the pictures delivered, which Upscale and Variations use


def buttons(job_id: int, lang: Lang, drawn: Drawn | None = None, count: int = 1) -> InlineKeyboardMarkup:
    """Again and Edit; then Upscale and Variations where the service can (one pair per picture of an album:
    "U1 U2 …", "V1 V2 …"). callback_data is at most 64 bytes: "vary:" and two numbers are far below it."""
    rows = [
        [
            InlineKeyboardButton(t(lang, "button.again"), callback_data=f"again:{job_id}"),
            InlineKeyboardButton(t(lang, "button.edit"), callback_data=f"edit:{job_id}"),
        ]
    ]
    for action, offered in (("up", drawn is not None and drawn.upscale), ("vary", drawn is not None and drawn.vary)):
        if offered:
            label = f"button.{action}" if count == 1 else f"button.{action}.n"
            rows.append(
                [
                    InlineKeyboardButton(t(lang, label, n=i + 1), callback_data=f"{action}:{job_id}:{i}")
                    for i in range(count)
                ]
            )
    return InlineKeyboardMarkup(rows)


def route_of(job: Job) -> tuple[int, int | None, int | None]:
    route: dict[str, Any] = job.route
    return int(route["chat_id"]), route.get("reply_to"), route.get("thread_id")


class TelegramSink:
    def __init__(
        self,
        sender: Sender,
        board: StatusBoard,
        *,
        send_originals: bool,
        document_limit: int = media.DOCUMENT_MAX_BYTES,
        update_route: UpdateRoute | None = None,
    ) -> None:
        self._sender = sender
        self._board = board
        self._update_route = update_route
        self._send_originals = send_originals
        self._document_limit = document_limit
        self._gate = ShutdownGate()
        self.marks_sending = False  # True with the adapter's MarkingRateLimiter (bot.jobs.sending)

    # Sink -------------------------------------------------------------------------------------------

    async def on_progress(self, job: Job, event: JobEvent) -> None:
        if self._gate.closing:
            return
        _, reply_to, thread_id = route_of(job)
        created = await self._board.show(job, describe_event(event, job.lang), reply_to=reply_to, thread_id=thread_id)
        if created is not None and self._update_route is not None:
            try:  # so that a restarted bot edits this message rather than sending another
                await self._update_route(job.id, {**job.route, STATUS_KEY: created})
            except Exception as exc:  # only a restart would miss it: not worth failing the job
                log.warning("job %s: could not remember its status message: %s", job.id, type(exc).__name__)

    async def deliver(self, job: Job, generation: Generation) -> None:
        if self._gate.closing:
            await park(job)
        self._board.adopt(job)  # a recovered job that never reported progress here still has a status message
        try:
            count = await self._gate.send(job, lambda: self._deliver(job, generation))
        except DeliveryGone:
            self._board.finish(job.id, None)
            raise
        except DeliveryUnconfirmed as exc:
            # Telegram had the whole upload; only its answer was lost. The pictures are most likely in the
            # chat, so the job counts as delivered (and charged, like any delivery): telling the user it
            # failed, and refunding, would be false for nearly every such case.
            log.warning("job %s: Telegram did not confirm the pictures (%s); counted as delivered", job.id, exc)
            self._board.finish(job.id, t(job.lang, "job.unconfirmed"))
            return
        note = shortfall(generation, job.lang)
        done = t(job.lang, "job.done", count=count)
        self._board.finish(job.id, f"{done}\n{note}" if note else done)

    async def fetch_picture(self, ref: str, max_bytes: int) -> bytes:
        return await pictures.download(self._sender.bot, ref, max_bytes)

    async def on_failed(self, job: Job, error: SdbotError, refunded: bool) -> None:
        # Like a delivery: the core records the failure only once this returns, so during shutdown the job
        # waits for the next start rather than being refunded without a word to the user.
        if self._gate.closing:
            await park(job)
        self._board.adopt(job)
        self._board.finish(job.id, None)  # the notice below replaces the status
        chat_id, reply_to, thread_id = route_of(job)
        text = describe_failure(error, refunded, job.lang)
        await self._gate.send(
            job, lambda: self._sender.send_text(chat_id, text, reply_to=reply_to, thread_id=thread_id)
        )

    # Life cycle -------------------------------------------------------------------------------------

    async def close(self, grace: float) -> None:
        """Stop sending: deliveries under way get ``grace`` seconds to finish, later ones wait to be
        cancelled by the core's shutdown, which leaves their jobs for the next start."""
        await self._gate.close(grace)
        try:
            await asyncio.wait_for(self._board.close(), grace)
        except TimeoutError:
            log.warning("status messages were not all brought up to date before shutdown")

    # Delivery ---------------------------------------------------------------------------------------

    async def _deliver(self, job: Job, generation: Generation) -> int:
        chat_id, reply_to, thread_id = route_of(job)
        # Pictures the service's filter flagged: withheld, or under Telegram's spoiler cover where the chat chose it
        # (/settings flagged spoiler; a file cannot have a cover, so not when pictures go as files).
        covered = bool(job.route.get(SPOILER_KEY)) and not self._send_originals
        shown = [image for image in generation.images if covered or not image.filtered]
        caption = photo_caption(generation.request, job.lang, generation.drawn)
        async with self._uploading(chat_id, thread_id):
            files = await media.prepare(
                shown, name=f"sdbot-{job.id}", originals=self._send_originals, document_limit=self._document_limit
            )
            files = [dataclasses.replace(f, spoiler=image.filtered) for f, image in zip(files, shown, strict=True)]
            ended = generation.request.task == "upscale"  # an upscaled picture offers nothing more
            markup = None if ended else buttons(job.id, job.lang, generation.drawn, len(files))
            try:
                sent = await self._send(job, files, caption, chat_id, reply_to, thread_id, markup)
            except BadRequest as exc:
                if all(f.as_document for f in files) or not any(p in str(exc).casefold() for p in _PHOTO_REFUSED):
                    raise
                log.warning("job %s: Telegram refused the photos (%s); sending them as files", job.id, exc)
                files = [Outgoing(f.data, f.filename, as_document=True, reencoded=f.reencoded) for f in files]
                sent = await self._send(job, files, caption, chat_id, reply_to, thread_id, markup)
        if any(f.reencoded for f in files):
            log.info("job %s: re-encoded to fit Telegram's photo limits", job.id)
        await self._remember_pictures(job, sent)
        return len(files)

    async def _remember_pictures(self, job: Job, sent: Sequence[Message]) -> None:
        """The file_ids of the pictures sent, kept in the job's route: Upscale and Variations draw from them."""
        ids = [pictures.file_id(message) for message in sent]
        if self._update_route is None or not all(ids):
            return
        try:
            await self._update_route(job.id, {**job.route, PICTURES_KEY: ids})
        except Exception as exc:  # delivered; only Upscale and Variations would miss them
            log.warning("job %s: could not remember its pictures: %s", job.id, type(exc).__name__)

    async def _send(
        self,
        job: Job,
        files: list[Outgoing],
        caption: str,
        chat_id: int,
        reply_to: int | None,
        thread_id: int | None,
        markup: InlineKeyboardMarkup | None,
    ) -> Sequence[Message]:
        if len(files) == 1:
            photo = await self._sender.send_photo(
                chat_id, files[0], caption=caption, reply_to=reply_to, thread_id=thread_id, markup=markup
            )
            return [photo]
        album = await self._sender.send_album(chat_id, files, caption=caption, reply_to=reply_to, thread_id=thread_id)
        if markup is None:
            return album
        # An album cannot carry buttons: they come in a message of their own, answering the album.
        try:
            await self._sender.send_text(
                album[0].chat_id,
                t(job.lang, "job.actions"),
                reply_to=album[0].message_id,
                thread_id=thread_id,
                markup=markup,
            )
        except Exception as exc:  # the pictures arrived; a missing button row must not fail the job
            log.warning("job %s: delivered, but the buttons could not be sent: %s", job.id, type(exc).__name__)
        return album

    @contextlib.asynccontextmanager
    async def _uploading(self, chat_id: int, thread_id: int | None) -> AsyncIterator[None]:
        """Show "sending a photo…" in the chat for as long as the upload takes."""

        async def keep_showing() -> None:
            while True:
                await asyncio.sleep(_ACTION_EVERY)
                await self._sender.action(chat_id, "upload_photo", thread_id=thread_id)

        # The first one is awaited: sent concurrently, it could land after the photo and linger for 5 s.
        await self._sender.action(chat_id, "upload_photo", thread_id=thread_id)
        task = asyncio.create_task(keep_showing())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
