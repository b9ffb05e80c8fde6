"""How Discord shows a job: edits of the deferred answer while it waits, then the images, or the failure."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, cast

import aiohttp
import discord

from adapters.closing import ShutdownGate
from adapters.discord import files, pictures
from adapters.discord.files import Upload
from adapters.discord.route import Route
from adapters.discord.views import result_view
from adapters.lanes import Lanes
from bot.commands import describe_event, describe_failure
from bot.core import DeliveryGone, JobEvent
from bot.draw.request import DrawRequest
from bot.draw.shape import Drawn
from bot.errors import SdbotError
from bot.jobs.generation import Generation
from bot.jobs.job import Job
from bot.messages.i18n import Lang, t
from bot.messages.presentation import caption, shortfall

log = logging.getLogger(__name__)

CONTENT_MAX = 2000
# discord.py only knows "@original" through a live Interaction; after a restart we hold just the token. The
# webhook message route is the same (PATCH /webhooks/{app}/{token}/messages/@original), so the id is passed
# as text: discord.py formats it into the path untouched.
ORIGINAL = cast(int, "@original")
# How long a job's first message may wait for the interaction to be acknowledged (the handler defers right
# after admission; Discord allows 3 s).
ACK_WAIT = 5.0
# Discord's answers meaning the token can no longer be used: invalid webhook token, unknown webhook (never
# acknowledged), unknown message (the user dismissed or deleted the answer).
_TOKEN_GONE = {50027, 10015, 10008}
# Seconds between two progress edits of one job's answer; a change of state (queued -> running) goes at once.
PROGRESS_INTERVAL = 2.0
# aiohttp's failures once a request is on its way and its answer is awaited: the connection closed without an
# answer, or the answer took too long. Discord may have carried the request out; what became of it is unknown.
# (A refused connection, or a reset while the request was still being written, is a failure known as such.)
_ANSWER_LOST = (aiohttp.ServerDisconnectedError, TimeoutError)
_NEVER_SENT = (aiohttp.ConnectionTimeoutError,)  # a TimeoutError too, but no connection was ever made


def token_gone(exc: discord.HTTPException) -> bool:
    return exc.code in _TOKEN_GONE or exc.status == 401


def escape(text: str) -> str:
    return discord.utils.escape_markdown(text)


def summary(request: DrawRequest, lang: Lang, *, limit: int = CONTENT_MAX, drawn: Drawn | None = None) -> str:
    """The compact caption (prompt and the parameters that reproduce it) as message text: Markdown in the
    prompt is shown literally, and the whole fits ``limit`` after escaping."""
    budget = limit
    while True:
        text = escape(caption(request, lang, limit=budget, drawn=drawn))
        if len(text) <= limit or budget <= 100:
            return text[:limit]
        budget -= max(len(text) - limit, 50)


class DiscordSink:
    def __init__(
        self,
        client: discord.Client,
        *,
        clock: Callable[[], float] = time.time,
        progress_interval: float = PROGRESS_INTERVAL,
        nsfw_channels: str = "withhold",
    ) -> None:
        """``nsfw_channels``: what age-restricted channels do with pictures the service's filter flagged
        (``SDBOT_NSFW_CHANNELS``: withhold, spoiler, show); other channels never show them."""
        self._client = client
        self._clock = clock
        self._nsfw_channels = nsfw_channels
        self._acks: dict[int, asyncio.Event] = {}
        self._latest: dict[int, tuple[Job, JobEvent]] = {}  # job -> its latest progress, until shown
        self._shown: dict[int, JobEvent] = {}  # job -> the progress its answer shows
        self._lanes = Lanes[int](self._due, self._show_progress, progress_interval)
        self._gate = ShutdownGate()

    async def fetch_picture(self, ref: str, max_bytes: int) -> bytes:
        return await pictures.download(self._client, ref, max_bytes)

    # The handler admits the job before it answers the interaction (errors must be ephemeral, and a deferred
    # answer decides that for good), so the job may reach the sink first.

    def expect(self, interaction_id: int) -> None:
        self._acks[interaction_id] = asyncio.Event()

    def acknowledged(self, interaction_id: int) -> None:
        event = self._acks.pop(interaction_id, None)
        if event is not None:
            event.set()

    async def _acknowledgement(self, route: Route) -> None:
        event = self._acks.get(route.interaction_id)
        if event is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(ACK_WAIT):  # not wait_for: no task of its own per wait
                    await event.wait()

    def _hook(self, route: Route) -> discord.Webhook:
        return discord.Webhook.partial(route.application_id, route.token, client=self._client)

    def _alive(self, route: Route) -> bool:
        return route.token_alive(self._clock())

    # Sink protocol ----------------------------------------------------------------------------------

    async def on_progress(self, job: Job, event: JobEvent) -> None:
        """A change of state (the first news, queued -> running) is shown at once; a move in the queue when the
        job's pace allows."""
        if self._gate.closing:
            return
        self._latest[job.id] = (job, event)
        shown = self._shown.get(job.id)
        if shown is None or shown.state != event.state:
            await self._lanes.settle(job.id)  # nothing older may overtake it
            await self._lanes.spend(job.id)
            await self._show_progress(job.id)
        else:
            self._lanes.mark(job.id, job.id)

    def _due(self, job_id: int) -> bool:
        latest = self._latest.get(job_id)
        return latest is not None and latest[1] != self._shown.get(job_id)

    async def _show_progress(self, job_id: int) -> None:
        latest = self._latest.pop(job_id, None)
        if latest is None or latest[1] == self._shown.get(job_id):
            return
        job, event = latest
        self._shown[job_id] = event
        route = Route.from_json(job.route)
        await self._acknowledgement(route)
        if not self._alive(route):
            return
        try:
            await self._hook(route).edit_message(
                ORIGINAL, content=describe_event(event, job.lang), allowed_mentions=_NONE
            )
        except discord.HTTPException as exc:
            if not token_gone(exc):
                raise
            log.debug("job %s: token gone, progress not shown", job.id)

    async def _settle(self, job_id: int) -> None:
        """Nothing about the job's progress is shown after this: its result comes next."""
        self._latest.pop(job_id, None)
        await self._lanes.settle(job_id)
        self._shown.pop(job_id, None)

    async def deliver(self, job: Job, generation: Generation) -> None:
        await self._gate.send(job, lambda: self._deliver(job, generation))

    async def on_failed(self, job: Job, error: SdbotError, refunded: bool) -> None:
        await self._gate.send(job, lambda: self._tell_failure(job, error, refunded))

    # Life cycle -------------------------------------------------------------------------------------

    async def close(self, grace: float) -> None:
        """Stop sending (the adapter is stopping): results under way get ``grace`` seconds to finish while the
        connection is still open; later ones wait to be cancelled by the core's shutdown, which leaves their
        jobs unfinished for the next start (a result sent through a closed session would fail the job)."""
        await self._lanes.close()
        await self._gate.close(grace)

    # Results ----------------------------------------------------------------------------------------

    async def _deliver(self, job: Job, generation: Generation) -> None:
        await self._settle(job.id)
        route = Route.from_json(job.route)
        limit = route.filesize_limit
        flagged = self._nsfw_channels if route.age_restricted else "withhold"
        shown = [image for image in generation.images if flagged != "withhold" or not image.filtered]
        if files.fits(shown, limit):
            groups = files.prepare(shown, job_id=job.id, filesize_limit=limit)
        else:
            groups = await asyncio.to_thread(files.prepare, shown, job_id=job.id, filesize_limit=limit)
        if flagged == "spoiler":  # Discord blurs an attachment whose name starts with SPOILER_ until clicked
            groups = files.spoilered(groups, [image.filtered for image in shown])
        await self._acknowledgement(route)
        ended = generation.request.task == "upscale"  # an upscaled picture offers nothing more
        view = None if ended else result_view(job.id, job.lang, generation.drawn, len(groups[0]) if groups else 0)
        sent = 0
        if self._alive(route):
            hook = self._hook(route)
            note = shortfall(generation, job.lang)
            text = summary(
                generation.request, job.lang, limit=CONTENT_MAX - (len(note) + 1 if note else 0), drawn=generation.drawn
            )
            text = f"{note}\n{text}" if note else text
            try:
                for index, group in enumerate(groups):
                    if index == 0:
                        try:
                            await hook.edit_message(
                                ORIGINAL, content=text, attachments=_files(group), view=view, allowed_mentions=_NONE
                            )
                        except _ANSWER_LOST as exc:
                            if isinstance(exc, _NEVER_SENT) or not await self._arrived(hook, job, len(group), exc):
                                raise
                    else:
                        with self._unconfirmed(job):
                            await hook.send(files=_files(group), allowed_mentions=_NONE, wait=True)
                    sent += 1
                return
            except discord.Forbidden as exc:
                log.info("job %s: Discord refused the answer (%s)", job.id, exc.code)
                if sent == 0:  # say why in the answer; the job fails without charge (the core logs it)
                    await self._say_forbidden(hook, job.lang)
                    raise DeliveryGone("missing permissions") from None
            except discord.HTTPException as exc:
                if not token_gone(exc):
                    raise
                log.info("job %s: interaction token gone (%s %s); posting to the channel", job.id, exc.status, exc.code)
        await self._post(route, job, generation, groups[sent:], view, with_text=sent == 0)

    async def _tell_failure(self, job: Job, error: SdbotError, refunded: bool) -> None:
        await self._settle(job.id)
        route = Route.from_json(job.route)
        await self._acknowledgement(route)
        text = describe_failure(error, refunded, job.lang)
        if await self.show(job, text):
            return
        mention = f"<@{route.user_id}>"
        await self._send_to_channel(route, content=f"{mention} {text}"[:CONTENT_MAX], mention=True)

    # Helpers for the handlers -----------------------------------------------------------------------

    async def show(self, job: Job, text: str) -> bool:
        """Replace the job's answer with ``text`` (no images, no buttons); False when the token is gone."""
        await self._settle(job.id)
        route = Route.from_json(job.route)
        if not self._alive(route):
            return False
        try:
            await self._hook(route).edit_message(
                ORIGINAL, content=text[:CONTENT_MAX], attachments=[], view=None, allowed_mentions=_NONE
            )
        except discord.HTTPException as exc:
            if not token_gone(exc):
                raise
            return False
        return True

    # Internals --------------------------------------------------------------------------------------

    async def _say_forbidden(self, hook: discord.Webhook, lang: Lang) -> None:
        with contextlib.suppress(discord.HTTPException):
            await hook.edit_message(
                ORIGINAL, content=t(lang, "error.platform_forbidden"), attachments=[], view=None, allowed_mentions=_NONE
            )

    async def _post(
        self,
        route: Route,
        job: Job,
        generation: Generation,
        groups: Sequence[Sequence[Upload]],
        view: discord.ui.View | None,
        *,
        with_text: bool,
    ) -> None:
        for index, group in enumerate(groups):
            with self._unconfirmed(job):
                if index == 0 and with_text:
                    intro = t(job.lang, "job.delivered_late", mention=f"<@{route.user_id}>", job=job.id)
                    note = shortfall(generation, job.lang)
                    intro = f"{intro}\n{note}" if note else intro
                    text = (
                        intro
                        + "\n"
                        + summary(
                            generation.request, job.lang, limit=CONTENT_MAX - len(intro) - 1, drawn=generation.drawn
                        )
                    )
                    await self._send_to_channel(route, content=text, files=_files(group), view=view, mention=True)
                else:
                    await self._send_to_channel(route, files=_files(group))

    async def _arrived(self, hook: discord.Webhook, job: Job, count: int, lost: BaseException) -> bool:
        """After the answer to the edit carrying the pictures was lost: look at the answer itself. True when
        the pictures are there (or it cannot be looked at either: then they most likely are, as the whole
        request was sent), False when Discord shows they are not (the delivery failed, and may say so)."""
        try:
            message = await hook.fetch_message(ORIGINAL)
        except (discord.HTTPException, aiohttp.ClientError, TimeoutError) as exc:
            log.warning(
                "job %s: Discord did not confirm the pictures (%s) and the answer could not be read (%s); "
                "counted as delivered",
                job.id,
                type(lost).__name__,
                type(exc).__name__,
            )
            return True
        if len(message.attachments) >= count:
            log.warning("job %s: Discord's answer was lost (%s), but the pictures arrived", job.id, type(lost).__name__)
            return True
        log.info("job %s: Discord's answer was lost (%s) and the pictures are not there", job.id, type(lost).__name__)
        return False

    @contextlib.contextmanager
    def _unconfirmed(self, job: Job) -> Iterator[None]:
        """A post whose answer is lost counts as sent: it cannot be looked up (its id never came), and telling
        the user it failed, with a refund, would be false in nearly every case."""
        try:
            yield
        except _ANSWER_LOST as exc:
            if isinstance(exc, _NEVER_SENT):
                raise
            log.warning("job %s: Discord did not confirm a post (%s); counted as delivered", job.id, type(exc).__name__)

    async def _send_to_channel(self, route: Route, *, mention: bool = False, **kwargs: Any) -> None:
        channel = self._client.get_partial_messageable(route.channel_id, guild_id=route.guild_id)
        # Only the owner may be pinged, whatever the prompt in the text holds (@everyone, roles, other users).
        # Every field is explicit: unset ones would default to allowing @everyone and roles.
        allowed = _owner_only(route.user_id) if mention else _NONE
        try:
            await channel.send(allowed_mentions=allowed, **kwargs)
        except discord.Forbidden as exc:
            # Nobody can be told: the token is dead and the channel refuses us. Admission checks the bot's
            # permissions, so this means they changed while the job waited.
            log.warning("channel %s refuses the bot (%s); the job cannot be delivered", route.channel_id, exc.code)
            raise DeliveryGone("missing permissions") from None
        except discord.NotFound as exc:
            log.info("channel %s is gone (%s)", route.channel_id, exc.code)
            raise DeliveryGone("channel gone") from None


_NONE = discord.AllowedMentions.none()


def _owner_only(user_id: int) -> discord.AllowedMentions:
    return discord.AllowedMentions(everyone=False, roles=False, users=[discord.Object(user_id)], replied_user=False)


def _files(group: Sequence[Upload]) -> list[discord.File]:
    return [discord.File(io.BytesIO(upload.data), filename=upload.filename) for upload in group]
