"""The Telegram adapter: python-telegram-bot's Application around the shared core."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any
from urllib.parse import urlsplit

from telegram._utils.types import JSONDict
from telegram.error import TelegramError
from telegram.ext import AIORateLimiter, Application, ApplicationBuilder, BaseRateLimiter
from telegram.request import HTTPXRequest

from adapters.telegram import durable, media, menu
from adapters.telegram.durable import DurableProcessor, DurableQueue
from adapters.telegram.handlers import Handlers
from adapters.telegram.sender import Sender
from adapters.telegram.signin import quiet_request_log, sign_in_failure
from adapters.telegram.sink import TelegramSink
from adapters.telegram.status import StatusBoard
from adapters.telegram.updates import PollingBot, UpdatesRequest
from bot.config import Settings, redact_url
from bot.core import Core
from bot.errors import ConfigError
from bot.jobs.sending import sending
from bot.messages.i18n import Msg
from bot.process import redact
from bot.storage import StorageError

log = logging.getLogger(__name__)

PUBLIC_API = "https://api.telegram.org"
ALLOWED_UPDATES = ["message", "callback_query"]
POLLING = "telegram-polling"  # the lock of the one process receiving updates by long polling
MENUS = "telegram-menus"  # the lock of the one process setting the command menus
Pace = Callable[[str, float, float], Awaitable[None]]
OVERALL_PER_SECOND = 30.0  # Telegram's limits for a bot: messages a second in all, and a minute in one group
GROUP_PER_MINUTE = 20.0
_UPLOADS = frozenset({"sendPhoto", "sendMediaGroup", "sendDocument"})  # how a delivery's pictures leave
_SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")


class MarkingRateLimiter(AIORateLimiter):
    """PTB's limiter, which also tells the core when a delivery's upload leaves, after its wait for a turn
    (see :mod:`bot.jobs.sending`): the window a crash leaves a job "maybe delivered" is the upload only. With
    several processes (``pace``: the core's shared pacing) each request first waits for its slot under the
    bot's limits counted across all of them: Telegram's 30 messages a second, 20 a minute in a group."""

    def __init__(self, *, max_retries: int, pace: Pace | None = None) -> None:
        super().__init__(max_retries=max_retries)
        self.pace = pace

    async def process_request(
        self,
        callback: Callable[..., Coroutine[Any, Any, bool | JSONDict | list[JSONDict]]],
        args: Any,
        kwargs: dict[str, Any],
        endpoint: str,
        data: dict[str, Any],
        rate_limit_args: int | None,
    ) -> bool | JSONDict | list[JSONDict]:
        if self.pace is not None and data.get("chat_id") is not None:
            await self.pace("telegram", OVERALL_PER_SECOND, OVERALL_PER_SECOND)
            chat = str(data["chat_id"])
            if chat.startswith("-"):  # a group or channel
                await self.pace(f"telegram:{chat}", GROUP_PER_MINUTE / 60, GROUP_PER_MINUTE)
        if endpoint in _UPLOADS:
            original = callback

            async def callback(*a: Any, **kw: Any) -> bool | JSONDict | list[JSONDict]:
                await sending()
                return await original(*a, **kw)

        return await super().process_request(callback, args, kwargs, endpoint, data, rate_limit_args)


def default_rate_limiter(pace: Pace | None = None) -> BaseRateLimiter[Any]:
    # Overall and per-group pacing at Telegram's published limits; a 429 is slept off and retried.
    return MarkingRateLimiter(max_retries=5, pace=pace)


class TelegramAdapter:
    platform = "telegram"

    def __init__(
        self,
        core: Core,
        settings: Settings,
        *,
        status_interval: float = 3.0,
        poll_timeout: int = 10,
        shutdown_grace: float = 3.0,
        rate_limiter: BaseRateLimiter[Any] | bool | None = True,
    ) -> None:
        """``status_interval``: seconds between two status edits in one chat. ``rate_limiter``: ``True`` for
        the default pacing, ``None``/``False`` for none (benchmarks), or a limiter of your own."""
        token = settings.telegram_bot_token
        if not token:
            raise ValueError("TelegramAdapter needs TELEGRAM_BOT_TOKEN")
        redact.register(token, settings.telegram_webhook_secret)  # PTB puts the token in every URL it logs
        quiet_request_log()
        self.core = core
        self.settings = settings
        self._poll_timeout = poll_timeout
        self._grace = shutdown_grace
        api = settings.telegram_api_url.rstrip("/")
        self._api = api
        # Our own request objects: PTB does not close its own when initialize() fails (a refused token).
        updates_request = UpdatesRequest()
        self._requests = (HTTPXRequest(media_write_timeout=settings.telegram_upload_timeout), updates_request)
        shared = core.pace if core.shared else None  # several processes: the limits are counted across them
        limiter = default_rate_limiter(shared) if rate_limiter is True else rate_limiter or None
        bot = PollingBot(
            token,
            base_url=f"{api}/bot",
            base_file_url=f"{api}/file/bot",
            request=self._requests[0],
            get_updates_request=updates_request,
            rate_limiter=limiter,
        )
        # By webhook, an update that cannot be stored is refused (Telegram sends it again); see durable.py.
        self._queue = DurableQueue(core, refuse_unstored=bool(settings.telegram_webhook_url))
        builder = (
            ApplicationBuilder()
            .bot(bot)
            # Updates are stored before PTB confirms them and forgotten once handled (see durable.py).
            .update_queue(self._queue)
            .concurrent_updates(DurableProcessor(core))
        )
        self.app: Application[Any, Any, Any, Any, Any, Any] = builder.build()
        self.sender = Sender(self.app.bot, settings.telegram_upload_timeout)
        self.board = StatusBoard(self.sender, status_interval)
        self.sink = TelegramSink(
            self.sender,
            self.board,
            send_originals=settings.telegram_send_originals,
            document_limit=media.DOCUMENT_MAX_BYTES if api == PUBLIC_API else media.LOCAL_DOCUMENT_MAX_BYTES,
            update_route=core.update_route,
        )
        self.sink.marks_sending = isinstance(limiter, MarkingRateLimiter)
        self.handlers = Handlers(core, self.sender, self.board)
        self.handlers.install(self.app)
        core.register_sink(self.platform, self.sink)
        self._webhook_secret = settings.telegram_webhook_secret
        self._replays: asyncio.Task[None] | None = None

    async def prepare(self) -> None:
        """getMe: proves the token and teaches PTB the bot's username (for ``/draw@ThisBot`` in groups).
        Before it, the rules of several processes on one database: webhooks with one shared secret, and long
        polling by one process only (Telegram gives each update to one poller)."""
        self._check_webhook_settings()
        if self.core.shared and not self.settings.telegram_webhook_url and not await self.core.hold_alone(POLLING):
            raise ConfigError("telegram_polling_shared", variable="TELEGRAM_WEBHOOK_URL")
        try:
            await self.app.initialize()
        except (TelegramError, TypeError, KeyError, ValueError, AttributeError) as exc:
            await self._release()
            kind, cause = sign_in_failure(exc)
            where = redact_url(self._api)
            if kind == "refused":
                raise ConfigError("platform_auth_failed", variable="TELEGRAM_BOT_TOKEN", platform="Telegram") from None
            if kind == "unreachable":
                log.error("Telegram Bot API at %s unreachable: %s", where, cause)
                code = "platform_unreachable"
            else:  # an answer that is not the Bot API's
                log.error("Telegram Bot API at %s: getMe answered unexpectedly: %s", where, cause)
                code = "platform_bad_answer"
            raise ConfigError(code, variable="TELEGRAM_API_URL", platform="Telegram", url=where) from None
        log.info("Telegram: signed in as @%s", self.app.bot.username)

    async def start(self) -> None:
        # Several processes: the first to start sets the menus (Telegram keeps them); each sets the same webhook
        # (PTB's webhook server always registers its URL), the same URL and secret, so none undoes another.
        if await self.core.hold_alone(MENUS):
            await menu.register(self.app.bot, self.settings.lang, self.settings.admins)
        await self.app.start()
        # Commands a killed process had received but not handled, before any new ones.
        await durable.replay(self.core, self._queue, self.app.bot)
        if self.core.shared:  # and later those of a process that dies while the others go on
            self._replays = asyncio.get_running_loop().create_task(self._replay_for_the_dead(), name="tg-replays")
        updater = self.app.updater
        assert updater is not None
        url = self.settings.telegram_webhook_url
        if url:
            secret = self._webhook_secret or secrets.token_urlsafe(32)  # Telegram proves itself with it
            redact.register(secret)
            await updater.start_webhook(
                listen=self.settings.telegram_webhook_listen,
                port=self.settings.telegram_webhook_port,
                url_path=urlsplit(url).path.lstrip("/"),
                webhook_url=url,
                secret_token=secret,
                allowed_updates=ALLOWED_UPDATES,
            )
            log.info("Telegram: receiving updates by webhook on %s", urlsplit(url).netloc)
        else:
            await updater.start_polling(timeout=self._poll_timeout, allowed_updates=ALLOWED_UPDATES)
            log.info("Telegram: receiving updates by long polling")

    async def _replay_for_the_dead(self) -> None:
        """Every lease, in every process: the updates a dead or paused process holds no more. Each goes to one
        taker (the take-over is one conditional update), so this needs no leader, which could be the one paused
        and keep its lock meanwhile."""
        while True:
            await asyncio.sleep(self.settings.job_lease)
            try:
                await durable.replay(self.core, self._queue, self.app.bot)
            except StorageError as exc:
                log.warning("Telegram: held updates could not be read (%s); trying again later", exc)

    async def stop(self) -> None:
        """Stop taking updates, let handlers and deliveries under way finish (``shutdown_grace``), close."""
        if self._replays is not None:
            self._replays.cancel()
            await asyncio.gather(self._replays, return_exceptions=True)
        updater = self.app.updater
        if updater is not None and updater.running:
            await updater.stop()
        if self.app.running:
            await self.app.stop()
        await self.sink.close(self._grace)
        await self.app.shutdown()  # closes the bot's HTTP clients (ours)

    def _check_webhook_settings(self) -> None:
        secret = self._webhook_secret
        if self.settings.telegram_webhook_url and secret is None and self.core.shared:
            # A secret made up at start would differ per process: the last one to register would win.
            raise ConfigError("webhook_secret_shared", variable="TELEGRAM_WEBHOOK_SECRET")
        if self.settings.telegram_webhook_url and secret is not None and not _SECRET_TOKEN.fullmatch(secret):
            raise ConfigError(
                "config_invalid",
                variable="TELEGRAM_WEBHOOK_SECRET",
                value="***",  # a secret, even a malformed one, is not printed
                expected=Msg("config.expect.webhook_secret"),
            )

    async def _release(self) -> None:
        for request in self._requests:
            try:
                await request.shutdown()
            except Exception as exc:
                log.debug("closing a Telegram HTTP client: %s", type(exc).__name__)
