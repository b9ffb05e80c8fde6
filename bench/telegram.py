"""/draw commands per second through the Telegram adapter, and the latency the bot adds, against floors.

    python -m bench.telegram [--users 60] [--concurrency 8] [--rounds 3] [--image flat|placeholder] [--same-loop]
                             [--one-by-one 30] [--one-by-one-rounds 5]

N simulated users each send ``/draw`` at once to the fake Bot API (127.0.0.1, the server the tests use, in a
process of its own: see :mod:`bench.remote`); the image backend answers instantly with a prepared PNG. Latency
is per command, from the update being queued to the fake having received the photo. Each configuration runs
against a fresh fake and database, one after the other in each round; the figures are medians over the rounds,
and the ratios are taken round by round (:mod:`bench.rounds`):

* ``floor (raw Bot API calls)``: a minimal script with httpx, making the same Bot API calls per command as the
  bot (long-poll getUpdates, a status sendMessage, sendChatAction, sendPhoto with the same PNG, caption and
  buttons, and an editMessageText to "done" as many seconds later as the bot's status pacing, or at the run's
  end, where the stopping bot shows its own final statuses at once: see :func:`status_due`), every update
  handled concurrently with at most ``--concurrency`` uploads in flight, like the bot. What the Bot API round
  trips cost on their own.
* ``python-telegram-bot alone``: the same calls from a minimal PTB bot (``Application``, long polling, one
  ``CommandHandler``, concurrent updates, no rate limiter): what the library the bot is built on costs by itself.
* ``sdbot, no rate limiter``: the real adapter and core (parsing, quotas in SQLite, scheduling, the job
  record, delivery, status) with PTB's pacing off: the bot's own overhead.
* ``sdbot`` as shipped (unless ``--no-limiter-row``): with ``AIORateLimiter`` holding sends to Telegram's 30
  per second, so throughput is bounded by Telegram's published limit, not by the bot.

``--concurrency`` is ``SDBOT_BACKEND_CONCURRENCY``: it bounds the deliveries at once as well as the generations, so
with an instant backend it bounds how many uploads are in flight. ``--same-loop`` runs the fake on the benchmark's
own event loop instead (how these figures were taken before; the fake's work then weighs on every row and on the
lag). "client CPU" is this process's CPU time (every thread) per command during the burst: what serving one costs,
less disturbed by other work on the machine than the throughput; "fake CPU" is the fake's CPU time over the burst's
time (near 100%: the fake, not the client, set the pace). With ``--same-loop`` both are the one process's, fake and
client together.

After the bursts, ``--one-by-one`` users send ``/draw`` one after the other (each once the previous one has its
photo), for the same three configurations without the paced one: the latency of a command with nothing else
in flight, what a user of a quiet bot waits, and so the time the bot adds to the Bot API calls themselves
rather than its cost under load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import logging
import platform
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from telegram import InlineKeyboardButton, InlineKeyboardMarkup, ReplyParameters, Update
from telegram.ext import ApplicationBuilder, CommandHandler, ContextTypes

from bench.looplag import LoopLag
from bench.remote import Fakes, Host, Local, Platform, Result
from bench.rounds import Run, add_one_by_one_options, alternate, print_rounds
from bot.backends.base import GeneratedImage, ProgressCallback
from bot.draw.capabilities import SEED, Capabilities
from bot.draw.request import DrawRequest
from tests.fakes.telegram import JSON
from tests.telegram_support import PreparedBackend, png, running, tg_settings

SIZE = "768x768"
STATUS_INTERVAL = 3.0  # the adapter's default
PROMPT = "a lighthouse at dusk --style Anime --size " + SIZE
COMMAND = f"/draw {PROMPT}"
ALLOWED_UPDATES = ["message", "callback_query"]  # the adapter's

FLOOR = "floor (raw Bot API calls)"
LIBRARY = "python-telegram-bot alone"
BOT = "sdbot, no rate limiter"
SHIPPED = "sdbot (AIORateLimiter, as shipped)"


class CachedBackend(PreparedBackend):
    """The tests' instant backend, with its capabilities built once, as every real backend caches them (the
    tests' one builds them per call, which would charge the bot an index build per command)."""

    def __init__(self, prepared: dict[str, bytes]) -> None:
        super().__init__(prepared)
        self.caps = dataclasses.replace(SEED, backend=self.name)

    async def capabilities(self) -> Capabilities:
        return self.caps

    async def generate(
        self, request: DrawRequest, *, user: str, progress: ProgressCallback | None = None
    ) -> list[GeneratedImage]:
        # A real backend awaits its answer at least once, which lets the job's first news reach the chat
        # before the picture, as in production; the floors make that call too.
        await asyncio.sleep(0)
        return await super().generate(request, user=user, progress=progress)


async def burst(fake: Platform, users: list[int], name: str, lag: LoopLag | None) -> Result:
    """Every user sends /draw at once (once the client polls); wait for every photo. ``lag`` measures this
    loop meanwhile. (From :meth:`Platform.one_at_a_time`: each user once the previous one has their photo.)"""
    async with lag or contextlib.nullcontext():
        cpu = time.process_time()
        done = await fake.burst(users, text=COMMAND)
        return Result.of(name, done, time.process_time() - cpu)


async def run_bot(
    fake: Platform, users: list[int], image: bytes, *, limiter: bool, concurrency: int, lag: LoopLag | None = None
) -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        settings = tg_settings(Path(tmp), fake, backend_concurrency=concurrency, rate_per_minute=10_000)  # type: ignore[arg-type]
        # The shipped poll timeout and status interval; only the pacing is switched for the second row.
        options: dict[str, Any] = {"status_interval": STATUS_INTERVAL, "poll_timeout": 10, "rate_limiter": limiter}
        async with running(settings, CachedBackend({SIZE: image}), **options):
            return await burst(fake, users, SHIPPED if limiter else BOT, lag)


async def status_due(finished: asyncio.Event) -> None:
    """When a floor edits its status message to "done": :data:`STATUS_INTERVAL` after the photo, as the bot
    paces its status edits, or as soon as the run is ``finished``, since the bot, stopping, shows every final
    status at once. Bursts are timed to the last photo, so this only ends a run without idle seconds."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(finished.wait(), STATUS_INTERVAL)


def _markup() -> list[list[JSON]]:
    return [[{"text": "🔁 Again", "callback_data": "again:1"}, {"text": "✏️ Edit", "callback_data": "edit:1"}]]


async def run_floor(
    fake: Platform, users: list[int], image: bytes, caption: str, concurrency: int, lag: LoopLag | None = None
) -> Result:
    # As many uploads in flight as the bot allows: sixty at once through one loop are slower, not faster.
    uploads = asyncio.Semaphore(concurrency)
    finished = asyncio.Event()
    api = f"{fake.url}/bot{fake.token}"
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=256)) as http:

        async def call(method: str, data: dict[str, Any], files: dict[str, Any] | None = None) -> Any:
            answer = await http.post(f"{api}/{method}", data=data, files=files)
            return answer.json()["result"]

        async def handle(update: JSON) -> None:
            message = update["message"]
            chat, reply = message["chat"]["id"], json.dumps({"message_id": message["message_id"]})
            status = await call("sendMessage", {"chat_id": chat, "text": "Drawing…", "reply_parameters": reply})
            async with uploads:
                await call("sendChatAction", {"chat_id": chat, "action": "upload_photo"})
                markup = json.dumps({"inline_keyboard": _markup()})
                data = {"chat_id": chat, "caption": caption, "reply_parameters": reply, "reply_markup": markup}
                await call("sendPhoto", data, {"photo": ("sdbot.png", image, "image/png")})
            await status_due(finished)
            await call("editMessageText", {"chat_id": chat, "message_id": status["message_id"], "text": "Done"})

        tasks: set[asyncio.Task[None]] = set()

        async def poll() -> None:
            offset = 0
            await call("deleteWebhook", {})
            while True:
                data = {"offset": offset, "timeout": 10, "allowed_updates": json.dumps(ALLOWED_UPDATES)}
                for update in await call("getUpdates", data):
                    offset = update["update_id"] + 1
                    task = asyncio.create_task(handle(update))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)

        poller = asyncio.create_task(poll())
        try:
            return await burst(fake, users, FLOOR, lag)
        finally:
            finished.set()
            poller.cancel()
            await asyncio.gather(poller, *tasks, return_exceptions=True)


async def run_library(
    fake: Platform, users: list[int], image: bytes, caption: str, concurrency: int, lag: LoopLag | None = None
) -> Result:
    """The same calls from the smallest PTB bot that makes them: what the library costs without sdbot."""
    uploads = asyncio.Semaphore(concurrency)
    finished = asyncio.Event()
    markup = InlineKeyboardMarkup(
        [[InlineKeyboardButton(b["text"], callback_data=b["callback_data"]) for b in row] for row in _markup()]
    )

    async def draw(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        message = update.effective_message
        assert message is not None
        bot, chat, reply = context.bot, message.chat_id, ReplyParameters(message.message_id)
        status = await bot.send_message(chat, "Drawing…", reply_parameters=reply)
        async with uploads:
            await bot.send_chat_action(chat, "upload_photo")
            await bot.send_photo(
                chat, image, filename="sdbot.png", caption=caption, reply_parameters=reply, reply_markup=markup
            )
        await status_due(finished)
        await bot.edit_message_text("Done", chat, status.message_id)

    app = (
        ApplicationBuilder()
        .token(fake.token)
        .base_url(f"{fake.url}/bot")
        .base_file_url(f"{fake.url}/file/bot")
        .concurrent_updates(True)
        .build()
    )
    app.add_handler(CommandHandler("draw", draw))
    async with app:  # initialize (getMe) ... shutdown
        await app.start()
        updater = app.updater
        assert updater is not None
        await updater.start_polling(poll_interval=0, timeout=10, allowed_updates=ALLOWED_UPDATES)
        try:
            return await burst(fake, users, LIBRARY, lag)
        finally:
            finished.set()
            await updater.stop()
            await app.stop()


@asynccontextmanager
async def quiet() -> AsyncIterator[None]:
    logging.disable(logging.WARNING)  # PTB's "Rate limit hit" info and the placeholder warning are noise here
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def fakes(args: argparse.Namespace) -> AbstractAsyncContextManager[Fakes]:
    return Local("telegram") if getattr(args, "same_loop", False) else Host("telegram")


async def main(args: argparse.Namespace) -> list[Result]:
    """Every configuration, ``args.rounds`` times, alternating; then ``args.one_by_one_rounds`` rounds with
    ``args.one_by_one`` users one after the other, without the paced row (``args.one_by_one_results``). Sets
    ``args.lag`` (this loop's lag while the bot without rate limiter served), ``args.library_lag`` (while
    python-telegram-bot alone did) and ``args.floor_lag`` (while the raw floor ran). The three bursts the goal
    compares each run under a ticker, so their ratios compare runs that pay the same for it."""
    from bot.backends import images
    from bot.draw.validation import parse_request
    from bot.messages.presentation import caption

    width, height = (int(side) for side in SIZE.split("x"))
    if args.image == "flat":
        image = png(width, height)
    else:
        image = await asyncio.to_thread(images.placeholder_png, width, height, 1, "bench")
    args.image_bytes = len(image)
    text = caption(parse_request(f"/draw {PROMPT} --seed 1"), "en", limit=1024)
    args.lag, args.library_lag, args.floor_lag = (LoopLag(callbacks=True) for _ in range(3))
    n = args.concurrency
    runs: list[Run] = [
        lambda fake, users: run_floor(fake, users, image, text, n, args.floor_lag),
        lambda fake, users: run_library(fake, users, image, text, n, args.library_lag),
        lambda fake, users: run_bot(fake, users, image, limiter=False, concurrency=n, lag=args.lag),
    ]
    if not args.no_limiter_row:
        runs.append(lambda fake, users: run_bot(fake, users, image, limiter=True, concurrency=n))
    one_by_one: list[Run] = [
        lambda fake, users: run_floor(fake, users, image, text, n),
        lambda fake, users: run_library(fake, users, image, text, n),
        lambda fake, users: run_bot(fake, users, image, limiter=False, concurrency=n),
    ]
    async with quiet(), fakes(args) as host:
        args.fake_where = host.where
        results = await alternate(host, runs, args.rounds, args.users)
        args.one_by_one_results = (
            await alternate(host, one_by_one, args.one_by_one_rounds, args.one_by_one, one_at_a_time=True)
            if args.one_by_one
            else []
        )
    return results


def report(results: list[Result], args: argparse.Namespace) -> None:
    print(
        f"Python {platform.python_version()}, {platform.machine()}; {args.users} users, one /draw each; "
        f"{SIZE} {args.image} PNG of {args.image_bytes} bytes; backend concurrency {args.concurrency}; "
        f"fake Bot API in {args.fake_where}"
    )
    print_rounds(results, unit="commands/s", calls="API calls each", library=LIBRARY, bot=BOT)
    print(f"while sdbot (no rate limiter) served: {args.lag.summary()}")
    print(f"while python-telegram-bot alone served: {args.library_lag.summary()}")
    print(f"while the raw floor ran: {args.floor_lag.summary()}")
    if args.one_by_one_results:
        print(f"\none /draw at a time ({args.one_by_one} users, each once the previous one has their photo):")
        print_rounds(args.one_by_one_results, unit="commands/s", calls="API calls each", library=LIBRARY, bot=BOT)


def cli() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--users", type=int, default=60, help="simulated users, one /draw each (default 60)")
    parser.add_argument("--concurrency", type=int, default=8, help="SDBOT_BACKEND_CONCURRENCY (default 8)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, for medians and ratios (default 3)")
    parser.add_argument(
        "--image",
        choices=("flat", "placeholder"),
        default="flat",
        help="flat: a 2 KB one-colour PNG, so the numbers are the bot's, not the upload's (default); "
        "placeholder: the ~200 KB picture the offline backend draws",
    )
    add_one_by_one_options(parser)
    parser.add_argument("--no-limiter-row", action="store_true", help="skip the paced (as shipped) run")
    parser.add_argument("--same-loop", action="store_true", help="the fake on this event loop, not its own process")
    args = parser.parse_args()
    report(asyncio.run(main(args)), args)


if __name__ == "__main__":
    cli()
