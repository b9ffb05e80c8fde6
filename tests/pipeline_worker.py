"""A separate process for the tests that need real ones: ``python -m tests.pipeline_worker MODE``.

Configuration comes from the environment (``SDBOT_DB``, limits...) exactly as for the bot. Each mode prints
``ready`` once it has reached the state the test needs, so the test synchronises on that line.

``admit --count N --user telegram:1``
    Open the database, print ``ready``, wait for a line on stdin, then make N admissions for the user all at
    once and print ``{"images": admitted images, "refused": {code: count}}``.
``crash``
    Run a Core whose backend holds every generation except the prompt ``fast``, and whose sink never
    finishes a delivery. Submit the plan below, print ``accepted <id> <prompt>`` / ``refused <code>`` for
    each, then ``ready`` once three jobs run (two generating, one delivering: it gave its slot to the next),
    and wait to be killed.
``resume --log FILE``
    Run a Core with a backend and sink that work (the sink appends what it is told to FILE), recover, wait
    until everything finished, print ``idle`` and exit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections import Counter
from pathlib import Path

from bot.chats.refs import ChatRef, UserRef
from bot.config import Settings
from bot.core import Core
from bot.draw.request import DrawRequest
from bot.quotas.admission import Quotas
from bot.quotas.rules import Admission, QuotaError
from bot.storage.sqlite import SQLiteStorage
from tests.pipeline_support import GatedBackend, RecordingSink

# (user id, prompt, images, route)
PLAN: list[tuple[str, str, int, dict[str, object]]] = [
    ("1", "fast", 1, {"chat_id": 1}),
    ("2", "slow", 2, {"chat_id": 2}),
    ("1", "queued", 2, {"chat_id": 1}),
    ("3", "gone", 1, {"chat_id": 3, "gone": True}),
    ("2", "old", 1, {"chat_id": 2}),
    ("1", "too many", 4, {"chat_id": 1}),  # over SDBOT_DAILY_IMAGES=5: refused, never stored
]


async def admit(count: int, user: str) -> None:
    settings = Settings.from_env(env_file=None)
    store = await SQLiteStorage.open(settings.db)
    quotas = Quotas(store, settings)
    platform, _, user_id = user.partition(":")
    admission = Admission(
        UserRef(platform, user_id), ChatRef(platform, user_id, False), DrawRequest("a cat"), {}, "placeholder",
        "en", 1, exempt=False,
    )  # fmt: skip
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    results = await asyncio.gather(*(quotas.admit(admission) for _ in range(count)), return_exceptions=True)
    await store.close()
    refused = Counter(r.code for r in results if isinstance(r, QuotaError))
    unexpected = [repr(r) for r in results if isinstance(r, BaseException) and not isinstance(r, QuotaError)]
    images = sum(r.images for r in results if not isinstance(r, BaseException))
    print(json.dumps({"images": images, "refused": refused, "unexpected": unexpected}), flush=True)


async def crash() -> None:
    backend = GatedBackend(hold=True)
    backend.free.add("fast")
    core = await Core.open(Settings.from_env(env_file=None), backend)
    sink = RecordingSink()
    sink.hold_delivery = True
    core.register_sink("telegram", sink)
    await core.start()
    for user_id, prompt, n, route in PLAN:
        user = UserRef("telegram", user_id)
        try:
            job = await core.submit(
                user, ChatRef("telegram", user_id, False), f"{prompt} --n {n} --size 768x768", route
            )
            print(f"accepted {job.id} {prompt}", flush=True)
        except QuotaError as exc:
            print(f"refused {exc.code}", flush=True)
    await sink.wait_for("deliver_started", 1)
    await backend.wait_started(3)
    print("ready", flush=True)
    await asyncio.Event().wait()  # until SIGKILL


async def resume(log: Path) -> None:
    core = await Core.open(Settings.from_env(env_file=None), GatedBackend())
    core.register_sink("telegram", RecordingSink(log))
    await core.start()
    await core.wait_idle()
    await core.close()
    print("idle", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("admit", "crash", "resume"))
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--user", default="telegram:1")
    parser.add_argument("--log", type=Path)
    args = parser.parse_args()
    if args.mode == "admit":
        asyncio.run(admit(args.count, args.user))
    elif args.mode == "crash":
        asyncio.run(crash())
    else:
        asyncio.run(resume(args.log))


if __name__ == "__main__":
    main()
