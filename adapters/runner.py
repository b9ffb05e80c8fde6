"""``sdbot run``: every adapter whose token is configured, in one process around one core, until a signal."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import signal
import sys

from adapters.base import Adapter
from bot.backends import create_backend
from bot.cli.exit_codes import EXIT_CONFIG
from bot.config import Settings, shown_database
from bot.core import Core
from bot.errors import db_unavailable
from bot.messages.i18n import t
from bot.observe.server import StatusServer
from bot.process import tuning as runtime
from bot.storage import StorageError

log = logging.getLogger(__name__)


# platform -> (the variable that enables it, "module:Class")
ADAPTERS: dict[str, tuple[str, str]] = {
    "telegram": ("telegram_bot_token", "adapters.telegram:TelegramAdapter"),
    "discord": ("discord_bot_token", "adapters.discord:DiscordAdapter"),
}


def configured(settings: Settings) -> list[str]:
    return [platform for platform, (field, _) in ADAPTERS.items() if getattr(settings, field)]


def load(platform: str) -> type[Adapter]:
    module, name = ADAPTERS[platform][1].split(":")
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


async def run(settings: Settings, stop: asyncio.Event | None = None) -> int:
    """Run until SIGINT/SIGTERM (or ``stop`` is set). Raises ``ConfigError`` for a refused token or a bad
    configuration; returns the exit code otherwise."""
    platforms = configured(settings)
    if not platforms:  # a configuration error like any other (exit 3), with the variables to set
        print(t(settings.lang, "cli.no_adapter"), file=sys.stderr)
        return EXIT_CONFIG
    if settings.backend == "placeholder":
        log.warning("SDBOT_BACKEND is not set: users get offline placeholder images")
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread, or Windows
            loop.add_signal_handler(sig, stop.set)
    backend = create_backend(settings)
    async with backend:
        core = await Core.open(settings, backend)
        adapters: list[Adapter] = [load(platform)(core, settings) for platform in platforms]
        started: list[Adapter] = []
        status: StatusServer | None = None
        try:
            await core.lock_database()  # one bot per SDBOT_DB: a second one stops here, before it connects anywhere
            try:
                for adapter in adapters:
                    await adapter.prepare()
                    started.append(adapter)
                await core.start()
                # Process tuning, for the bot process only (not for tests or tools that build a Core): see there.
                runtime.settle()
                for adapter in adapters:
                    await adapter.start()
                if settings.http_listen is not None:
                    status = StatusServer(core, *settings.http_listen)
                    await status.start()
            except StorageError as exc:
                # Core.open read every page and index; what still fails here (recovering jobs, replaying
                # stored updates) is the database too: the same clean stop, not a traceback.
                raise db_unavailable(shown_database(settings.db), exc) from None
            log.info("sdbot running: %s, backend %s", ", ".join(platforms), backend.name)
            await stop.wait()
            log.info("stopping")
        finally:
            # Stop taking commands first, then let the core put unfinished jobs to rest for the next start.
            if status is not None:
                await status.stop()
            for adapter in reversed(started):
                try:
                    await adapter.stop()
                except Exception:
                    log.exception("%s adapter did not stop cleanly", adapter.platform)
            await core.close()
            runtime.release()
    return 0
