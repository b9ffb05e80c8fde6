"""/draw interactions per second through the Discord adapter, and the latency it adds, against floors.

    python -m bench.discord [--interactions 100] [--concurrency 8] [--rounds 3] [--same-loop]
                            [--one-by-one 30] [--one-by-one-rounds 5]

N users each invoke ``/draw`` at once on the fake Discord (REST + gateway on 127.0.0.1, the one the tests
use, in a process of its own: see :mod:`bench.remote`); the image backend answers instantly with a prepared
PNG. Latency is per interaction, from the fake dispatching INTERACTION_CREATE to it receiving the edit that
carries the image. Each configuration runs against a fresh fake and database, one after the other in each
round; the figures are medians over the rounds, and the ratios are taken round by round (:mod:`bench.rounds`):

* ``floor (raw REST calls)``: a minimal script with aiohttp: a bare gateway connection, and per interaction
  the same REST calls the bot makes (the deferred callback, the progress edits of ``@original``, the final
  multipart edit with the PNG, caption and two buttons). What Discord's round trips cost on their own.
* ``discord.py alone``: the same calls through a bare ``discord.Client`` (``on_interaction``), so the
  library's own share is visible.
* ``sdbot``: the real adapter and core (option parsing, quotas in SQLite, scheduling, the job record and
  its stored route, progress through the relay, images fitted to the size limit, persistent buttons).

``--concurrency`` is ``SDBOT_BACKEND_CONCURRENCY``: it bounds the bot's generations and its
uploads in flight; the floors hold their final upload to the same bound. ``--same-loop`` runs the fake on the
benchmark's own event loop instead (how these figures were taken before; the fake's work then weighs on every
row and on the lag). "client CPU" is this process's CPU time (every thread) per interaction during the burst:
what serving one costs, less disturbed by other work on the machine than the throughput; "fake CPU" is the
fake's CPU time over the burst's time (near 100%: the fake, not the client, set the pace, as it does for the
floors here). With ``--same-loop`` both are the one process's, fake and client together.

After the bursts, ``--one-by-one`` users invoke ``/draw`` one after the other (each once the previous one has
its image), for the same three configurations: the latency of a command with nothing else in flight, what a
user of a quiet bot waits, and so the time the bot adds to the REST calls themselves rather than its cost
under load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import logging
import platform
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp
import discord
from PIL import Image

from bench.looplag import LoopLag
from bench.remote import Fakes, Host, Local, Platform, Result
from bench.rounds import Run, add_one_by_one_options, alternate, print_rounds
from bench.support import BenchBackend
from bot.backends.base import GeneratedImage, ProgressCallback
from bot.draw.request import DrawRequest
from tests.discord_support import TOKEN, running_bot
from tests.fakes.discord import JSON

SIZE = "768x768"
PROMPT = "a lighthouse at dusk --style Anime"
PROGRESS = ("#1 in the queue", "Drawing…")  # what the floors send before the image, like the bot
CAPTION = "a lighthouse at dusk\nSeed 1 · Anime · 768x768 · 20 steps · Euler a · CFG 5"

FLOOR = "floor (raw REST calls)"
LIBRARY = "discord.py alone"
BOT = "sdbot"


class InstantBackend(BenchBackend):
    """Answers at once with one prepared image."""

    def __init__(self, image: bytes) -> None:
        super().__init__()
        self.image = image

    async def generate(
        self, request: DrawRequest, *, user: str, progress: ProgressCallback | None = None
    ) -> list[GeneratedImage]:
        assert request.seed is not None
        # A real backend awaits its answer at least once, which lets the job's "Drawing…" edit go out before
        # the picture, as in production; the floors make that call too.
        await asyncio.sleep(0)
        return [
            GeneratedImage(self.image, "PNG", request.width, request.height, request.seed + i) for i in range(request.n)
        ]


async def burst(fake: Platform, users: list[int], name: str, lag: LoopLag | None = None) -> Result:
    """Every user invokes /draw at once; wait until every answer has its image (``lag`` measures this loop
    meanwhile). (From :meth:`Platform.one_at_a_time`: each user once the previous one has their image.)"""
    async with lag or contextlib.nullcontext():
        cpu = time.process_time()
        done = await fake.burst(users, command="draw", options={"prompt": PROMPT, "size": SIZE})
        return Result.of(name, done, time.process_time() - cpu)


def _command() -> JSON:
    options = [{"type": 3, "name": "prompt", "description": "p", "required": True},
               {"type": 3, "name": "size", "description": "s"}]  # fmt: skip
    return {"name": "draw", "description": "Draw", "type": 1, "options": options}


def _components(job: int) -> list[JSON]:
    buttons = [
        {"type": 2, "style": 1, "label": "🔁 Again", "custom_id": f"sdbot:again:{job}"},
        {"type": 2, "style": 2, "label": "✏️ Edit", "custom_id": f"sdbot:edit:{job}"},
    ]
    return [{"type": 1, "components": buttons}]


async def run_sdbot(
    fake: Platform, users: list[int], image: bytes, concurrency: int, lag: LoopLag | None = None
) -> Result:
    with tempfile.TemporaryDirectory() as tmp, fake.patch_discord():
        settings = {"backend_concurrency": concurrency, "rate_per_minute": 0, "daily_images": 0}
        async with running_bot(fake, Path(tmp) / "sdbot.db", InstantBackend(image), **settings):  # type: ignore[arg-type]
            return await burst(fake, users, BOT, lag)


async def run_raw(
    fake: Platform, users: list[int], image: bytes, concurrency: int, lag: LoopLag | None = None
) -> Result:
    # As many uploads in flight as the bot allows (SDBOT_BACKEND_CONCURRENCY bounds its deliveries too).
    uploads = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession() as http:
        api = fake.api_base
        auth = {"Authorization": f"Bot {TOKEN}"}
        async with http.put(f"{api}/applications/{fake.application_id}/commands", json=[_command()], headers=auth):
            pass
        tasks: set[asyncio.Task[None]] = set()

        async def handle(d: JSON, job: int) -> None:
            original = f"{api}/webhooks/{d['application_id']}/{d['token']}/messages/@original"
            async with http.post(f"{api}/interactions/{d['id']}/{d['token']}/callback", json={"type": 5}) as r:
                r.raise_for_status()
            for text in PROGRESS:
                async with http.patch(original, json={"content": text, "allowed_mentions": {"parse": []}}) as r:
                    r.raise_for_status()
            payload = {
                "content": CAPTION,
                "components": _components(job),
                "attachments": [{"id": 0, "filename": f"sdbot-{job}-1.png"}],
                "allowed_mentions": {"parse": []},
            }
            form = aiohttp.FormData(quote_fields=False)
            form.add_field("payload_json", json.dumps(payload), content_type="application/json")
            form.add_field("files[0]", image, filename=f"sdbot-{job}-1.png", content_type="image/png")
            async with uploads, http.patch(original, data=form) as r:
                r.raise_for_status()

        async with http.ws_connect(fake.gateway_url) as ws:
            await ws.receive_json()  # HELLO; the run is far shorter than a heartbeat interval
            identify = {"token": TOKEN, "intents": 0, "properties": {"os": "linux", "browser": "b", "device": "b"}}
            await ws.send_json({"op": 2, "d": identify})
            ready = asyncio.Event()

            async def listen() -> None:
                jobs = 0
                async for message in ws:
                    frame = json.loads(message.data)
                    if frame.get("t") == "READY":
                        ready.set()
                    elif frame.get("t") == "INTERACTION_CREATE":
                        jobs += 1
                        task = asyncio.create_task(handle(frame["d"], jobs))
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)

            listener = asyncio.create_task(listen())
            await ready.wait()
            try:
                return await burst(fake, users, FLOOR, lag)
            finally:
                listener.cancel()
                await asyncio.gather(listener, *tasks, return_exceptions=True)


async def run_discord_py(
    fake: Platform, users: list[int], image: bytes, concurrency: int, lag: LoopLag | None = None
) -> Result:
    uploads = asyncio.Semaphore(concurrency)
    with fake.patch_discord():
        client = discord.Client(intents=discord.Intents.default(), guild_ready_timeout=0.05)
        jobs = iter(range(1, 10**9))

        async def on_interaction(interaction: discord.Interaction) -> None:
            job = next(jobs)
            await interaction.response.defer(thinking=True)
            for text in PROGRESS:
                await interaction.edit_original_response(content=text)
            view = discord.ui.View(timeout=None)
            view.add_item(discord.ui.Button(label="🔁 Again", custom_id=f"sdbot:again:{job}"))
            view.add_item(discord.ui.Button(label="✏️ Edit", custom_id=f"sdbot:edit:{job}"))
            upload = discord.File(io.BytesIO(image), filename=f"sdbot-{job}-1.png")
            async with uploads:
                await interaction.edit_original_response(content=CAPTION, attachments=[upload], view=view)

        client.on_interaction = on_interaction  # type: ignore[method-assign]
        await client.login(TOKEN)
        await client.http.bulk_upsert_global_commands(fake.application_id, [_command()])
        gateway = asyncio.create_task(client.connect())
        await client.wait_until_ready()
        try:
            return await burst(fake, users, LIBRARY, lag)
        finally:
            await client.close()
            with contextlib.suppress(Exception):
                await gateway


@contextlib.asynccontextmanager
async def quiet() -> AsyncIterator[None]:
    logging.disable(logging.WARNING)  # placeholder and rate-limit notices are noise here
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), "teal").save(out, "PNG")
    return out.getvalue()


def fakes(args: argparse.Namespace) -> AbstractAsyncContextManager[Fakes]:
    return Local("discord") if getattr(args, "same_loop", False) else Host("discord")


async def main(args: argparse.Namespace) -> list[Result]:
    """Every configuration, ``args.rounds`` times, alternating; then ``args.one_by_one_rounds`` rounds with
    ``args.one_by_one`` users one after the other (``args.one_by_one_results``). Sets ``args.lag`` (this loop's
    lag while sdbot served), ``args.library_lag`` (while discord.py alone did) and ``args.floor_lag`` (while the
    raw floor ran). Every burst runs under its ticker, so the ratios compare runs that pay the same for it."""
    width, height = (int(side) for side in SIZE.split("x"))
    if args.image == "flat":
        image = png(width, height)
    else:
        from bot.backends import images

        image = await asyncio.to_thread(images.placeholder_png, width, height, 1, "bench")
    args.image_bytes = len(image)
    args.lag, args.library_lag, args.floor_lag = (LoopLag(callbacks=True) for _ in range(3))
    n = args.concurrency
    runs: list[Run] = [
        lambda fake, users: run_raw(fake, users, image, n, args.floor_lag),
        lambda fake, users: run_discord_py(fake, users, image, n, args.library_lag),
        lambda fake, users: run_sdbot(fake, users, image, n, args.lag),
    ]
    one_by_one: list[Run] = [
        lambda fake, users: run_raw(fake, users, image, n),
        lambda fake, users: run_discord_py(fake, users, image, n),
        lambda fake, users: run_sdbot(fake, users, image, n),
    ]
    async with quiet(), fakes(args) as host:
        args.fake_where = host.where
        results = await alternate(host, runs, args.rounds, args.interactions)
        args.one_by_one_results = (
            await alternate(host, one_by_one, args.one_by_one_rounds, args.one_by_one, one_at_a_time=True)
            if args.one_by_one
            else []
        )
    return results


def report(results: list[Result], args: argparse.Namespace) -> None:
    print(
        f"Python {platform.python_version()}, {platform.machine()}, discord.py {discord.__version__}; "
        f"{args.interactions} users, one /draw each; {SIZE} {args.image} PNG of {args.image_bytes} bytes; "
        f"backend concurrency {args.concurrency}; fake Discord in {args.fake_where}"
    )
    print_rounds(results, unit="per second", calls="REST calls each", library=LIBRARY, bot=BOT)
    if args.one_by_one_results:
        print(f"\none /draw at a time ({args.one_by_one} users, each once the previous one has their image):")
        print_rounds(args.one_by_one_results, unit="per second", calls="REST calls each", library=LIBRARY, bot=BOT)
    if getattr(args, "lag", None) is not None:
        print(f"while sdbot served: {args.lag.summary()}")
        print(f"while discord.py alone served: {args.library_lag.summary()}")
        print(f"while the floor ran: {args.floor_lag.summary()}")


def cli() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n", 1)[0])
    parser.add_argument("--interactions", type=int, default=100, help="simulated users, one /draw each (default 100)")
    parser.add_argument("--concurrency", type=int, default=8, help="SDBOT_BACKEND_CONCURRENCY (default 8)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; medians and round-by-round ratios over them")
    add_one_by_one_options(parser)
    parser.add_argument("--same-loop", action="store_true", help="the fake on this event loop, not its own process")
    parser.add_argument(
        "--image",
        choices=("flat", "placeholder"),
        default="flat",
        help="flat: a small one-colour PNG, so the numbers are the bot's, not the upload's (default); "
        "placeholder: the picture the offline backend draws",
    )
    args = parser.parse_args()
    report(asyncio.run(main(args)), args)


if __name__ == "__main__":
    cli()
