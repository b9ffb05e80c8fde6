"""The one door the adapters and the CLI use: submit, re-run, cancel, commands, chat settings, and sinks."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping
from typing import Any, Protocol

from bot.backends import images
from bot.backends.base import Backend
from bot.chats.directory import Directory
from bot.chats.inbox import Inbox
from bot.chats.refs import ChatRef, PictureRef, UserRef
from bot.commands import Commands
from bot.config import Settings
from bot.draw import defaults
from bot.draw.capabilities import Capabilities
from bot.draw.compose import compose
from bot.draw.grammar import OptionValue, render_command
from bot.draw.request import DrawRequest
from bot.draw.validation import parse_request
from bot.errors import BackendError, DrawError, SdbotError
from bot.jobs import sending
from bot.jobs.breaker import Breaker
from bot.jobs.generation import Generation, draw_seed, generate, user_key
from bot.jobs.job import MAX_ATTEMPTS, Job, JobEvent
from bot.jobs.relay import Relay
from bot.jobs.retention import Pruner
from bot.jobs.scheduler import Scheduler
from bot.jobs.sending import Fenced
from bot.jobs.shared import SharedScheduler
from bot.jobs.sources import Sources
from bot.messages.i18n import Lang, Msg
from bot.messages.presentation import edit_command
from bot.moderation.screen import Screen
from bot.observe.metrics import Metrics
from bot.quotas.admission import Quotas
from bot.quotas.rules import Admission, AlreadyAdmitted
from bot.storage import HeldEvent, Storage, StorageError, open_storage
from bot.storage.port import CANCELLED

__all__ = ["ChatRef", "Core", "DeliveryGone", "Job", "JobEvent", "PictureRef", "Sink", "UserRef"]

log = logging.getLogger(__name__)


class DeliveryGone(Exception):
    """Raised by a :class:`Sink` when the destination is gone for good (bot blocked, chat deleted): the job
    fails with ``delivery_gone``, refunded and logged."""


class Sink(Protocol):
    """How an adapter shows a job's fate (the contract: docs/ARCHITECTURE.md, "A job's life"). Awaited from
    the job's own task; an exception other than :class:`DeliveryGone` from ``deliver`` fails the job."""

    async def on_progress(self, job: Job, event: JobEvent) -> None:
        """The queue position or progress; may come before ``submit()`` returned."""

    async def deliver(self, job: Job, generation: Generation) -> None:
        """Send the images (``generation.images``; ``image.filtered`` ones were blanked by the provider). A sink
        with ``marks_sending = True`` awaits :func:`bot.jobs.sending.sending` when the upload leaves."""

    async def on_failed(self, job: Job, error: SdbotError, refunded: bool) -> None:
        """Tell the user (``commands.describe_failure`` is the text); not when owners cancelled it themselves."""

    async def fetch_picture(self, ref: str, max_bytes: int) -> bytes:
        """The picture a :class:`PictureRef` names, downloaded from the platform: ``DrawError`` ``picture_too_large``
        when the platform says it is over ``max_bytes`` (before downloading it), ``picture_gone`` when the platform
        no longer has it, ``picture_unavailable`` when it cannot be downloaded now."""


class Core:
    """See the module documentation. Build with :meth:`open`."""

    def __init__(
        self,
        settings: Settings,
        backend: Backend,
        storage: Storage,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.backend = backend
        self.storage = storage
        self.clock = clock
        self.jobs = storage.jobs
        self.slots = backend.slots or settings.backend_concurrency  # generations at once
        self.quotas = Quotas(storage, settings, clock)
        self.directory = Directory(storage, settings.lang)
        self.inbox = Inbox(storage, clock)  # platform events kept until handled (see bot.chats.inbox)
        self.commands = Commands(settings, self.quotas, storage, self.directory)
        self.scheduler: Scheduler | SharedScheduler
        if storage.queue is None:  # one process: the queue in its memory
            self.scheduler = Scheduler(backend.name, self.slots, self._run, self._on_position)
        else:  # any number of processes: the queue in the database
            self.scheduler = SharedScheduler(
                storage.queue,
                self.slots,
                self._attempt,
                self._take_over,
                self._on_place,
                lambda: list(self._sinks),
                lease=settings.job_lease,
                max_age=settings.job_max_age,
                monotonic=monotonic,
                renew_also=self.inbox.renew,
            )
            self.inbox.share(self.scheduler.worker, settings.job_lease)
        self._deliveries = asyncio.Semaphore(self.slots)  # jobs delivering at once (see _run)
        self.breaker = Breaker(settings.breaker_failures, settings.breaker_cooldown, monotonic)
        self.metrics = Metrics()
        self._sinks: dict[str, Sink] = {}
        self.sources = Sources(self._sinks, storage.jobs, settings.picture_max_bytes)  # pictures to draw from
        self.screen = Screen(storage, self.quotas.today)  # the block list
        self._active: dict[int, Job] = {}  # queued or running in this process
        self._generating: dict[int, asyncio.Task[Generation]] = {}  # jobs whose generation runs here, by id
        self._stopped: set[int] = set()  # running jobs /cancel stopped: their generation's end is no failure
        self._relay = Relay()
        self._background: set[asyncio.Task[None]] = set()
        self._started = False
        self._closed = False
        self.pruner = Pruner(storage, settings.job_retention_days, settings.quota_tz, clock, leading=self.leading)

    @classmethod
    async def open(
        cls,
        settings: Settings,
        backend: Backend,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> Core:
        """Open ``SDBOT_DB`` (``ConfigError`` when it cannot be used). ``monotonic`` times the breaker."""
        storage = await open_storage(settings.db, clock=clock, serving=True)  # a damaged file is refused now
        try:
            core = cls(settings, backend, storage, clock, monotonic)
            await core.directory.load()
            if storage.queue is not None:  # a job /cancel took in another process may be drawn here
                await storage.queue.listen(CANCELLED, core._heard_cancelled)
        except BaseException:
            await storage.close()
            raise
        return core

    def register_sink(self, platform: str, sink: Sink) -> None:
        self._sinks[platform] = sink

    async def lock_database(self) -> None:
        """Become the one process running this database's jobs (else ``db_in_use``); :meth:`start` does it, call
        it earlier to fail before connecting anywhere. A shared queue's database needs no lock."""
        await self.storage.hold()

    @property
    def shared(self) -> bool:
        """Whether several processes may run this database's jobs (PostgreSQL's shared queue)."""
        return isinstance(self.scheduler, SharedScheduler)

    async def hold_alone(self, name: str) -> bool:
        """Whether this process may do ``name`` alone (say, Telegram's long polling): with a shared queue, the
        first process to ask holds it until it exits; with its own queue, the process is alone already."""
        queue = self.storage.queue
        return True if queue is None else await queue.try_lock(name)

    async def pace(self, key: str, rate: float, burst: float) -> None:
        """Wait for a slot under a limit all processes share (a platform's flood limit: ``rate`` requests a
        second, ``burst`` at once); with its own queue the process is alone, and its own pacing is enough."""
        queue = self.storage.queue
        if queue is not None:
            wait = await queue.pace(key, rate, burst)
            if wait > 0:
                await asyncio.sleep(wait)

    def leading(self) -> bool:
        """Whether this process does the duties of one process at a time (pruning, a platform's webhook and
        commands): always with its own queue; with a shared one, the process holding the leader's lock."""
        return not isinstance(self.scheduler, SharedScheduler) or self.scheduler.leading

    async def start(self) -> None:
        """Lock the database, recover what a previous process left unfinished, then run jobs and prune old
        ones. Call once every sink is registered and able to send. With a shared queue there is nothing to
        recover at start: jobs whose process died are taken over once their lease runs out."""
        if self._started:
            return
        await self.lock_database()
        self._started = True
        if isinstance(self.scheduler, Scheduler):
            now = self.clock()
            for job in await self.jobs.unfinished():
                await self._recover(job, now)
        self.scheduler.start()
        self.pruner.start()

    async def close(self) -> None:
        """Stop. Jobs still queued or running stay so in the database and resume at the next start."""
        if self._closed:
            return
        self._closed = True
        await self.pruner.stop()
        await self.scheduler.stop()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self._relay.close()
        with contextlib.suppress(StorageError):
            await self.inbox.release()  # with a shared inbox; else nothing to do
        await self.storage.close()  # the database lock last: the next bot starts once this one wrote all

    # Watching ---------------------------------------------------------------------------------------

    async def healthy(self) -> bool:
        """Serving, and its database answers (``/healthz``)."""
        if not self._started or self._closed:
            return False
        try:
            await self.storage.ping()
        except StorageError:
            return False
        return True

    async def metrics_text(self) -> bytes:
        """``/metrics``: the counters of this process, and the queue's state read from the database now."""
        unfinished = await self.jobs.unfinished_counts()
        today = await self.jobs.stats(self.quotas.today(), top=0)
        for state in ("queued", "running"):
            self.metrics.jobs.labels(state).set(unfinished.get(state, 0))
        for state in ("done", "failed", "cancelled"):
            self.metrics.jobs.labels(state).set(today.jobs.get(state, 0))
        self.metrics.queue_depth.set(unfinished.get("queued", 0))
        self.metrics.backend_up.labels(self.backend.name).set(0 if self.breaker.retry_in() is not None else 1)
        for name, member in self.backend.services().items():  # a pool's members, each with its own breaker
            self.metrics.backend_up.labels(name).set(1 if member.up else 0)
            self.metrics.backend_busy.labels(name).set(member.running)
        self.metrics.leader.set(1 if self.leading() else 0)
        return self.metrics.text()

    # People -----------------------------------------------------------------------------------------

    def language_for(self, user: UserRef) -> Lang:
        """The user's /lang choice, else their platform's language, else ``SDBOT_LANG``."""
        return self.directory.language_for(user)

    def is_admin(self, user: UserRef) -> bool:
        return self.quotas.is_admin(user.key)

    # Jobs -------------------------------------------------------------------------------------------

    async def submit(
        self,
        user: UserRef,
        chat: ChatRef,
        text: str,
        route: dict[str, Any],
        *,
        origin: str | None = None,
        typed: Mapping[str, OptionValue | None] | None = None,
        replied: str | None = None,
        picture: PictureRef | None = None,
    ) -> Job:
        """Validate ``/draw`` text (with Discord's ``typed`` options, or the ``replied`` message: see
        :mod:`bot.draw.compose`), admit it and queue it. ``origin`` names the platform event: the same origin
        again returns the job it made the first time, not queued again (events redelivered after a crash).
        ``picture``: the picture it draws from, checked before anything else (see :mod:`bot.draw.picture`)."""
        self._require_ready(user.platform)
        with self._counting_refusals():
            self._require_backend_up()
            caps = await self.backend.capabilities()
            args = compose(text, caps, typed=typed, replied=replied)
            chat_defaults = await self.storage.channels.defaults(chat.key)
            if picture is None:
                request = defaults.apply(args, chat_defaults, caps)
            else:
                data, info = await self.sources.fetch(user.platform, picture, caps)
                request = defaults.apply(args, chat_defaults, caps, picture=(info.width, info.height))
                request = await self.sources.attach(request, caps, picture, data, info.size)
            await self.backend.check_request(request)
            await self.screen.check(user, chat, request, chat_defaults)
            return await self._admit(user, chat, request, route, parent_id=None, origin=origin)

    async def again(
        self, job_id: int, user: UserRef, route: dict[str, Any], *, origin: str | None = None, strict: bool = False
    ) -> Job:
        """Re-run the job's request with a new seed (and the same picture, fetched again), charged like any other.
        Only its owner may: to anyone else the job does not exist (``job_not_found``). ``strict``: asked where
        moderation is strict (see :attr:`ChatRef.strict`), as for :meth:`vary` and :meth:`upscale`."""
        async with self._rerunning(job_id, user) as original:
            source = original.request.source
            picture = None if source is None else PictureRef(source.ref, durable=not source.kept)
            if original.request.task == "upscale" and picture is not None:
                return await self._upscale(original, user, route, picture, origin, strict)
            request = original.request.with_seed(None)
            return await self._rerun(original, user, route, request, picture, origin, strict)

    async def vary(
        self,
        job_id: int,
        user: UserRef,
        route: dict[str, Any],
        picture: PictureRef,
        *,
        origin: str | None = None,
        strict: bool = False,
    ) -> Job:
        """Variations: ``picture`` (one the job drew) drawn again from itself with the job's request, a new seed and
        the low ``SDBOT_VARIATION_STRENGTH``. Its owner only, as :meth:`again`."""
        async with self._rerunning(job_id, user) as original:
            strength = self.settings.variation_strength
            request = dataclasses.replace(original.request, seed=None, strength=strength, source=None, task="draw")
            return await self._rerun(original, user, route, request, picture, origin, strict)

    async def upscale(
        self,
        job_id: int,
        user: UserRef,
        route: dict[str, Any],
        picture: PictureRef,
        *,
        origin: str | None = None,
        strict: bool = False,
    ) -> Job:
        """Upscale: ``picture`` (one the job drew) at twice its sides, charged ``SDBOT_UPSCALE_COST`` images through
        the same quotas and queue. Its owner only, as :meth:`again`."""
        async with self._rerunning(job_id, user) as original:
            if original.request.task == "upscale":
                raise DrawError("upscale_twice", job=job_id)
            return await self._upscale(original, user, route, picture, origin, strict)

    @contextlib.asynccontextmanager
    async def _rerunning(self, job_id: int, user: UserRef) -> AsyncIterator[Job]:
        """Again, Variations and Upscale alike: the core ready, the service up, refusals counted, and the job, if
        ``user`` owns it; to anyone else it does not exist (a button's data can be forged)."""
        self._require_ready(user.platform)
        with self._counting_refusals():
            self._require_backend_up()
            original = await self.jobs.get(job_id)
            if original is None or original.user != user.key:
                raise SdbotError("job_not_found", job=job_id)
            yield original

    async def _rerun(
        self,
        original: Job,
        user: UserRef,
        route: dict[str, Any],
        request: DrawRequest,
        picture: PictureRef | None,
        origin: str | None,
        strict: bool = False,
    ) -> Job:
        """``request`` (from ``original``) admitted as a new job: checked, as its /draw text, against today's
        service (the stored request was valid for the service of its day), drawing from ``picture`` if any."""
        caps = await self.backend.capabilities()
        text = render_command(request, include_defaults=True, omit=caps.unsupported)
        if picture is None:
            request = parse_request(text, caps)
        else:
            data, info = await self.sources.fetch(user.platform, picture, caps)
            request = parse_request(text, caps, picture=(info.width, info.height))
            request = await self.sources.attach(request, caps, picture, data, info.size)
        await self.backend.check_request(request)
        await self.screen.check(user, dataclasses.replace(original.chat_ref, strict=strict), request)
        return await self._admit(user, original.chat_ref, request, route, parent_id=original.id, origin=origin)

    async def _upscale(
        self,
        original: Job,
        user: UserRef,
        route: dict[str, Any],
        picture: PictureRef,
        origin: str | None,
        strict: bool = False,
    ) -> Job:
        caps = await self.backend.capabilities()
        if not caps.upscale:
            raise DrawError("upscale_unsupported", backend=caps.backend)
        data, info = await self.sources.fetch(user.platform, picture, caps, purpose="upscale")
        width, height = 2 * info.width, 2 * info.height
        if width * height > images.MAX_PIXELS:
            raise DrawError("upscale_too_large", size=info.size, max_mp=images.MAX_PIXELS // 10**6)
        request = dataclasses.replace(
            original.request, task="upscale", n=1, size=f"{width}x{height}", seed=None, strength=None, source=None
        )
        request = await self.sources.attach(request, caps, picture, data, info.size, size=info.size)
        await self.backend.check_request(request)
        await self.screen.check(user, dataclasses.replace(original.chat_ref, strict=strict), request)
        cost = self.settings.upscale_cost
        return await self._admit(
            user, original.chat_ref, request, route, parent_id=original.id, origin=origin, cost=cost
        )

    async def cancel(self, user: UserRef, job_id: int | None = None) -> list[Job]:
        """Cancel (and refund) a job: ``job_id``, queued or being drawn (its generation is stopped, and the service
        told where it can be: ComfyUI), or every queued job of ``user`` when None. Admins may cancel anyone's job by
        id. A job whose pictures are being sent, or that ended, cannot be cancelled (``job_not_cancellable``)."""
        admin = self.is_admin(user)
        if job_id is None:
            cancelled = await self.jobs.cancel_all(user.key)
            if not cancelled:
                raise SdbotError("nothing_to_cancel")
        else:
            job = await self.jobs.cancel(job_id, owner=None if admin else user.key, running=True)
            if job is None:
                existing = await self.jobs.get(job_id)
                if existing is None or not (admin or existing.user == user.key):
                    raise SdbotError("job_not_found", job=job_id)
                status = "delivering" if existing.status == "running" else existing.status
                raise SdbotError("job_not_cancellable", job=job_id, status=Msg(f"job.status.{status}"))
            cancelled = [job]
        for job in cancelled:
            self._stop_drawing(job.id)  # in another process: its NOTIFY (PostgreSQL), and its delivery is fenced
            self.scheduler.remove(job.id)
            self._active.pop(job.id, None)
            await self._relay.settle(job.id)
            if job.user != user.key:
                self._spawn(self._tell_failed(job, SdbotError("cancelled", job=job.id), refunded=job.images > 0))
        log.info("jobs %s cancelled by %s", [j.id for j in cancelled], "an admin" if admin else "their owner")
        return cancelled

    async def _generate(self, job: Job, progress: Callable[[float], Coroutine[Any, Any, None]]) -> Generation:
        request = await self.sources.load(job)
        return await generate(self.backend, request, user=user_key(job.platform, job.user_id), progress=progress)

    def _heard_cancelled(self, payload: str) -> None:
        """A job cancelled through another process."""
        if payload.isdigit():
            self._stop_drawing(int(payload))

    def _stop_drawing(self, job_id: int) -> None:
        """Stop the generation of a cancelled job, if it is drawn here."""
        generating = self._generating.get(job_id)
        if generating is not None:
            self._stopped.add(job_id)
            generating.cancel()

    async def update_route(self, job_id: int, route: dict[str, Any]) -> bool:
        """Replace the job's stored ``route`` (a job recovered after a restart finds, say, its status message);
        the :class:`Job` objects already handed out keep theirs. False when no such job."""
        return await self.jobs.update_route(job_id, route)

    def position(self, job_id: int) -> int | None:
        """The job's place in this process's queue (1 = next), or None when it is not waiting."""
        return self.scheduler.position(job_id)

    async def get_job(self, job_id: int) -> Job | None:
        return await self.jobs.get(job_id)

    async def shown_job(self, job_id: int, user: UserRef, chat: ChatRef) -> Job:
        """The job whose ``/draw`` text Edit shows: to its owner and anyone in its chat (the caption shows it
        anyway); to anyone else it does not exist, since a button's data can be forged."""
        job = await self.jobs.get(job_id)
        if job is None or job.platform != user.platform or not (job.user == user.key or job.chat == chat.key):
            raise SdbotError("job_not_found", job=job_id)
        return job

    async def edit_text(self, job_id: int, user: UserRef, chat: ChatRef) -> str:
        """The whole ``/draw`` text of the job Edit shows (see :meth:`shown_job`), without the options today's
        service does not take."""
        job = await self.shown_job(job_id, user, chat)
        try:
            omit = (await self.backend.capabilities()).unsupported
        except SdbotError:  # the service cannot tell now: show every option
            omit = frozenset()
        return edit_command(job.seeded_request, omit)

    async def capabilities(self) -> Capabilities:
        """What the image service accepts (raises :class:`~bot.errors.BackendError` when it cannot tell)."""
        return await self.backend.capabilities()

    # Chats ------------------------------------------------------------------------------------------

    async def channels_elsewhere(self, user: UserRef, chat: ChatRef, here: set[str]) -> list[str]:
        """Where in ``chat`` /draw may be used when it may not be used ``here`` (a channel and a thread's parent);
        empty when it may (a chat that allowed none allows all; admins draw anywhere)."""
        if self.is_admin(user):
            return []
        allowed = await self.storage.channels.allowed(chat.key)
        return [] if here & set(allowed) else allowed

    async def edit_channels(self, chat: ChatRef, action: str, channel_id: str) -> list[str]:
        """``allow``, ``remove`` or ``clear`` a channel where /draw may be used (else only list them); returns
        the channels allowed now (empty: all)."""
        channels = self.storage.channels
        if action == "allow":
            await channels.allow(chat.key, channel_id)
        elif action == "remove":
            await channels.remove(chat.key, channel_id)
        elif action == "clear":
            await channels.clear(chat.key)
        return await channels.allowed(chat.key)

    async def chat_settings(
        self, user: UserRef, chat: ChatRef, changes: Mapping[str, str | None], *, manager: bool
    ) -> str:
        """``/settings``: apply ``changes`` to the chat's /draw defaults (a value None unsets it), each checked
        as /draw would check it, all or none; the reply shows them in the user's language. Only ``manager`` (the
        platform's admins of the chat, or anyone in their own private chat) and ``SDBOT_ADMINS`` may change them."""
        return await self.commands.chat_settings(
            user, chat, changes, capabilities=self.backend.capabilities, manager=manager
        )

    async def chat_setting(self, chat: ChatRef, name: str) -> str | None:
        """One of the chat's ``/settings`` (``flagged``: how Telegram shows pictures the service flagged)."""
        return (await self.storage.channels.defaults(chat.key)).get(name)

    async def set_chat_cap(self, chat: ChatRef, images: int | None, lang: Lang) -> str:
        """Set the chat's daily image cap (None: back to ``SDBOT_CHAT_DAILY_IMAGES``); returns the reply."""
        await self.directory.touch_chat(chat)
        await self.quotas.set_chat_limit(chat.key, images)
        target = f"{chat.title} ({chat.key})" if chat.title else chat.key
        return self.commands.limit_set_text(lang, target, images, chat=True)

    async def stats_report(self, lang: Lang, chat: ChatRef | None = None) -> str:
        """Today's jobs, images, failures and busiest users, of every chat or of ``chat`` only."""
        return await self.commands.stats_report(lang, chat_key=chat.key if chat else None)

    def help_text(self, lang: Lang, caps: Capabilities, *, admin: bool) -> str:
        return self.commands.help_text(lang, caps, admin=admin)

    # Platform events --------------------------------------------------------------------------------

    async def receive_event(self, platform: str, event_id: int, payload: str) -> bool:
        """Keep a platform event until :meth:`event_done`; False when it came before (see :mod:`bot.chats.inbox`)."""
        return await self.inbox.receive(platform, event_id, payload)

    async def event_done(self, platform: str, event_id: int) -> None:
        await self.inbox.done(platform, event_id)

    async def take_over_events(self, platform: str) -> list[HeldEvent]:
        """The events a previous process received and did not finish handling, oldest first. With a shared
        queue, only those whose process stopped renewing them: the others are being handled."""
        return await self.inbox.take_over(platform)

    async def wait_idle(self) -> None:
        """Until no job is queued or running here and every failure notice went out."""
        await self.scheduler.wait_idle()
        while self._background:
            await asyncio.gather(*list(self._background), return_exceptions=True)

    async def handle_command(
        self, user: UserRef, chat: ChatRef, name: str, args: str = "", *, private: bool = False, manager: bool = False
    ) -> str:
        """``/quota``, ``/lang``, ``/help``, ``/cancel``, ``/settings``, ``/admin ...``: the reply (never raises for
        input). ``private``: only the user sees the reply (Discord's ephemeral answers); ``manager``: the platform
        counts the user an admin of the chat (``/settings`` may change it)."""
        return await self.commands.handle(
            user,
            chat,
            name,
            args,
            capabilities=self.backend.capabilities,
            cancel=self.cancel,
            platforms=self._sinks,
            private=private,
            manager=manager or not chat.is_group,
        )

    # Running ----------------------------------------------------------------------------------------

    def _require_ready(self, platform: str) -> None:
        # Programming errors in an adapter, not user errors: fail loudly in development.
        if not self._started or self._closed:
            raise RuntimeError("Core.start() must be called (and Core not closed) before submitting jobs")
        if platform not in self._sinks:
            raise RuntimeError(f"no sink registered for platform {platform!r}")

    @contextlib.contextmanager
    def _counting_refusals(self) -> Iterator[None]:
        try:
            yield
        except SdbotError as exc:
            self.metrics.refusals.labels(exc.code).inc()
            raise

    def _require_backend_up(self) -> None:
        # Refused before anything is stored or charged: the user learns at once instead of after a timeout.
        if self.breaker.retry_in() is not None:
            raise self.breaker.error()

    async def _admit(
        self,
        user: UserRef,
        chat: ChatRef,
        request: DrawRequest,
        route: dict[str, Any],
        parent_id: int | None,
        origin: str | None,
        cost: int | None = None,
    ) -> Job:
        await self.directory.touch(user, chat if chat.is_group else None)
        admission = Admission(
            user=user,
            chat=chat,
            request=request,
            route=route,
            backend=self.backend.name,
            lang=self.language_for(user),
            seed=draw_seed() if request.seed is None else request.seed,
            exempt=self.is_admin(user),
            parent_id=parent_id,
            origin=origin,
            picture=request.source.data if request.source is not None and request.source.kept else None,
            cost=cost,
        )
        try:
            job = await self.quotas.admit(admission)
        except AlreadyAdmitted as seen:
            # Handled before a crash: the job is queued (start-up recovery took it over) or ended already.
            log.info("job %s: its command %s arrived again; not queued twice", seen.job.id, origin)
            return seen.job
        log.info("job %s queued: %s image(s) for %s", job.id, job.images, job.platform)
        if isinstance(self.scheduler, Scheduler):  # a shared queue's job may run in any process
            self._active[job.id] = job
        self.scheduler.enqueue(job.id, job.user)
        return job

    async def _recover(self, job: Job, now: float) -> None:
        max_age = self.settings.job_max_age
        if job.platform not in self._sinks:
            log.warning("job %s: no %s sink in this process; failing and refunding it", job.id, job.platform)
            await self._fail(job, SdbotError("delivery_gone", job=job.id), refund=True, tell=False)
            return
        if max_age and now - job.created_at > max_age:
            await self._fail(job, SdbotError("job_expired", job=job.id), refund=True, background=True)
            return
        if job.status == "running" and job.attempts >= MAX_ATTEMPTS:
            # Died while sending: the pictures may be in the chat, and saying "interrupted" would be false.
            # Not knowing how far the upload got, the bot gives the user the benefit of the doubt: refunded.
            code = "job_crashed_delivering" if job.delivering_at is not None else "job_crashed"
            await self._fail(job, SdbotError(code, job=job.id), refund=True, background=True)
            return
        if job.backend != self.backend.name:
            try:
                caps = await self.backend.capabilities()
                text = render_command(job.seeded_request, include_defaults=True, omit=caps.unsupported)
                source = job.request.source
                parse_request(text, caps, picture=None if source is None else (source.width, source.height))
            except (DrawError, BackendError) as exc:
                await self._fail(job, exc, refund=True, background=True)
                return
        if job.status == "running":
            requeued = await self.jobs.requeue(job.id)
            if requeued is None:
                return
            job = requeued
        log.info("job %s recovered (attempt %s so far)", job.id, job.attempts)
        self._active[job.id] = job
        self.scheduler.enqueue(job.id, job.user)

    async def _run(self, job_id: int) -> None:
        await self._attempt(job_id)

    async def _attempt(self, target: int | Job) -> None:
        """Run a job: its id when it is still to be claimed (this process's queue), or the job claimed already
        (the shared queue)."""
        verdict = await self.breaker.admit()  # waits while a half-open trial runs
        if verdict == "refuse":
            await self._refuse(target)
            return
        trial = verdict == "trial"
        settled = False
        began: float | None = None  # when the generation was sent

        def settle(error: SdbotError | None, service: str | None = None) -> None:
            nonlocal settled
            settled = True
            if began is not None:
                outcome = "ok" if error is None else "failed"
                label = service or self.backend.name  # a pool's member, where one drew it
                self.metrics.generation.labels(label, outcome).observe(time.monotonic() - began)
            if self.breaker.record(error, trial=trial):
                log.warning(
                    "image service %s marked down for %ss after repeated failures (last: %s)",
                    self.backend.name,
                    self.settings.breaker_cooldown,
                    error.code if error else None,
                )

        try:
            claimed = target if isinstance(target, Job) else await self.jobs.claim(target)
            if claimed is None:  # cancelled while it waited
                self._active.pop(target, None)  # type: ignore[arg-type]
                return
            job = claimed
            self._active[job.id] = job
            self._notify(job, JobEvent("running"))

            async def progress(fraction: float) -> None:
                self._notify(job, JobEvent("running", progress=min(1.0, max(0.0, float(fraction)))))

            began = time.monotonic()
            drawing = asyncio.ensure_future(self._generate(job, progress))
            self._generating[job.id] = drawing
            try:
                generation = await drawing
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if job.id not in self._stopped or (current is not None and current.cancelling()):
                    raise  # this process is stopping: the job stays unfinished for the next start
                # /cancel stopped it, and recorded it as cancelled and refunded.
                settle(SdbotError("internal"))  # says nothing about the service
                self._active.pop(job.id, None)
                log.info("job %s: its generation was stopped by /cancel", job.id)
                return
            except SdbotError as exc:
                settle(exc)
                await self._fail(job, exc, refund=self._refundable(exc))
                return
            except Exception:
                log.exception("job %s: generation failed unexpectedly", job.id)
                internal = SdbotError("internal")
                settle(internal)
                await self._fail(job, internal, refund=True)
                return
            finally:
                self._generating.pop(job.id, None)
                self._stopped.discard(job.id)
            # Before delivery: a slow upload must not hold up the jobs waiting on a trial.
            settle(None, generation.drawn.service)
            # Delivery (an upload: seconds on a slow link) needs no image service, so the job's slot goes to
            # the next job once this one holds a place to deliver in. Those are as many as the slots: uploads
            # at once, and finished pictures held waiting for one, stay bounded while the service keeps busy.
            async with self._deliveries:
                self.scheduler.hand_off(job.id)
                await self._deliver(job, generation)
        finally:
            if not settled:  # cancelled or never started: a trial must not leave the others waiting forever
                settle(SdbotError("internal"))

    async def _refuse(self, target: int | Job) -> None:
        """A queued job whose turn came while the service is marked down: fail it now, refunded, without
        sending anything to the service."""
        job = target if isinstance(target, Job) else self._active.get(target) or await self.jobs.get(target)
        if job is None:
            return
        await self._fail(job, self.breaker.error(), refund=True)

    async def _take_over(self, job: Job) -> None:
        """A shared queue's job whose process died (or paused) past its lease, too far gone to run again: held
        here now as a new attempt, failed and refunded as start-up recovery would have."""
        if job.attempts - 1 < MAX_ATTEMPTS:
            code = "job_expired"
        else:  # as start-up recovery: the pictures may be in the chat when it died sending them
            code = "job_crashed_delivering" if job.delivering_at is not None else "job_crashed"
        await self._fail(job, SdbotError(code, job=job.id), refund=True)

    async def _deliver(self, job: Job, generation: Generation) -> None:
        await self._relay.settle(job.id)
        sink = self._sinks.get(job.platform)
        try:
            if sink is None:
                raise DeliveryGone(f"no sink for {job.platform}")

            async def mark() -> None:
                if not await self.jobs.delivering(job.id, job.attempts):
                    raise Fenced

            if not getattr(sink, "marks_sending", False):
                await mark()
            with sending.marking(mark):
                await sink.deliver(job, generation)
        except Fenced:
            # Its lease ran out (this process was paused or cut off): another process has the job now.
            log.warning("job %s: no longer this process's; its pictures are not sent", job.id)
            self._active.pop(job.id, None)
            return
        except DeliveryGone as exc:
            log.info("job %s: delivery target gone (%s); refunded", job.id, type(exc).__name__)
            await self._fail(job, SdbotError("delivery_gone", job=job.id), refund=True, tell=False)
            return
        except Exception:
            log.exception("job %s: delivery failed", job.id)
            await self._fail(job, SdbotError("delivery_failed", job=job.id), refund=True)
            return
        filtered = generation.filtered
        # What was not delivered is not charged: pictures the service did not return, and (by the operator's
        # choice) those its content filter withheld. The sinks told the user so.
        refunded = generation.missing + (filtered if self.settings.refund_filtered else 0)
        charged = min(job.charged, max(0, job.charged - refunded))
        delivered = len(generation.images) - filtered
        service = generation.drawn.service
        await self.jobs.finish(job.id, delivered=delivered, charged=charged, attempt=job.attempts, service=service)
        self.metrics.deliveries.labels(job.platform).inc()
        self._active.pop(job.id, None)
        log.info("job %s done: %s image(s) delivered", job.id, len(generation.images) - filtered)

    def _refundable(self, error: SdbotError) -> bool:
        # A failed generation is never charged: even a provider rejecting parameters our validation let
        # through is our gap, not the user's. The one exception is the operator's content-filter policy.
        if error.code == "content_filtered":
            return self.settings.refund_filtered
        return True

    async def _fail(
        self, job: Job, error: SdbotError, *, refund: bool, tell: bool = True, background: bool = False
    ) -> None:
        """Tell the user, then record the failure and its refund: in that order, as a delivery comes before
        ``done``, so that a process dying in between (a notice can wait seconds behind a platform's flood
        limits) leaves the job unfinished and the next start re-runs it: told at least once, never silently
        refunded. ``background``: all of it in a task of its own (start-up recovery must not wait on a chat
        platform per job)."""
        if background:
            self._spawn(self._fail(job, error, refund=refund, tell=tell))
            return
        self._active.pop(job.id, None)
        await self._relay.settle(job.id)
        refunded = refund and job.charged > 0
        if tell:
            if job.status == "queued":  # its turn came while the service was down, or start-up recovery
                # Out of the queue before the user hears of it: a /cancel meanwhile must not end it a second way.
                claimed = await self.jobs.claim(job.id)
                if claimed is None:
                    return  # cancelled first: that path reported it
                job = claimed
            elif isinstance(self.scheduler, SharedScheduler) and not await self.scheduler.holds(job.id, job.attempts):
                log.warning("job %s: no longer this process's; its failure (%s) is not reported", job.id, error.code)
                return
            # The sink sees the job as it is about to be recorded.
            ending = dataclasses.replace(job, status="failed", error=error.code, charged=0 if refund else job.charged)
            await self._tell_failed(ending, error, refunded)
        attempt = job.attempts if job.status == "running" else None
        failed = await self.jobs.fail(job.id, error.code, refund=refund, attempt=attempt)
        if failed is None:
            return  # it ended some other way meanwhile (cancelled): that path reported it
        self.metrics.failures.labels(job.platform, error.code).inc()
        log.info("job %s failed: %s (refunded: %s)", job.id, error.code, refunded)

    async def _tell_failed(self, job: Job, error: SdbotError, refunded: bool) -> None:
        sink = self._sinks.get(job.platform)
        if sink is None:
            return
        try:
            await sink.on_failed(job, error, refunded)
        except DeliveryGone:
            log.info("job %s: could not report its failure, destination gone", job.id)
        except Exception:
            log.exception("job %s: reporting its failure failed", job.id)

    def _on_position(self, job_id: int, position: int) -> None:
        job = self._active.get(job_id)
        if job is not None:
            self._notify(job, JobEvent("queued", position=position))

    async def _on_place(self, job_id: int, place: int) -> None:
        """A shared queue's place: the job may have been admitted by any process."""
        job = await self.jobs.get(job_id)
        if job is not None and job.status == "queued":
            self._notify(job, JobEvent("queued", position=place))

    def _notify(self, job: Job, event: JobEvent) -> None:
        sink = self._sinks.get(job.platform)
        if sink is not None:
            self._relay.post(job.id, lambda: sink.on_progress(job, event))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
