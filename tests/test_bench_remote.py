"""The end-to-end benchmarks' fake platform in a process of its own (:mod:`bench.remote`): the real bot, the
library-only floor and the raw floor run against it, and the child never outlives the benchmark."""

from __future__ import annotations

import asyncio
import time

import pytest

from bench import discord as bench_discord
from bench import remote
from bench import telegram as bench_telegram
from bench.remote import Host, Local
from tests.telegram_support import png

pytestmark = pytest.mark.slow

USERS = [10_001, 10_002, 10_003]


async def test_telegram_bot_and_floors_run_against_a_fake_in_another_process() -> None:
    image = png(768, 768)  # the size the benchmark asks for: the bot checks it
    async with Host("telegram") as host:
        child = host._proc
        assert child is not None and child.returncode is None
        results = []
        for run in (
            lambda fake: bench_telegram.run_bot(fake, USERS, image, limiter=False, concurrency=2),
            lambda fake: bench_telegram.run_library(fake, USERS, image, "caption", 2),
            lambda fake: bench_telegram.run_floor(fake, USERS, image, "caption", 2),
        ):
            async with host.fake() as fake:
                results.append(await run(fake))
    assert child.returncode is not None  # stopped with the benchmark
    for result in results:
        assert len(result.latencies) == len(USERS) and result.per_second > 0
        assert result.calls >= 3 * len(USERS)  # a status message, a chat action and a photo each
        assert result.cpu > 0 and result.fake_busy > 0


async def test_telegram_floors_edit_their_status_when_the_run_ends_as_the_bot_does(monkeypatch) -> None:
    """Stopping, the bot shows every final status at once rather than after its status interval: the floors
    make the same "done" edit at the same moment, not STATUS_INTERVAL of idle time later."""
    made: list[remote.TimedTelegram] = []
    new_fake = remote._new_fake
    monkeypatch.setattr(remote, "_new_fake", lambda kind: made.append(new_fake(kind)) or made[-1])
    image = png(768, 768)
    async with Local("telegram") as host:
        for run in (bench_telegram.run_library, bench_telegram.run_floor):
            async with host.fake() as fake:
                began = time.monotonic()
                await run(fake, USERS, image, "caption", 2)
                assert time.monotonic() - began < bench_telegram.STATUS_INTERVAL
                assert len(made[-1].calls_to("editMessageText")) == len(USERS)


async def test_discord_bot_and_floors_run_against_a_fake_in_another_process() -> None:
    image = bench_discord.png(768, 768)
    async with Host("discord") as host:
        results = []
        for run in (bench_discord.run_sdbot, bench_discord.run_discord_py, bench_discord.run_raw):
            async with host.fake() as fake:
                results.append(await run(fake, USERS, image, 2))
        async with host.fake() as fake:  # one user after the other: each waits for the previous picture
            results.append(await bench_discord.run_sdbot(fake.one_at_a_time(), USERS, image, 2))
    for result in results:
        assert len(result.latencies) == len(USERS) and result.per_second > 0
        assert result.calls >= 3 * len(USERS)  # the deferred answer, progress and the picture each
    quiet = results[-1]
    assert sum(quiet.latencies) <= quiet.seconds  # the commands did not overlap


async def test_an_error_mid_burst_ends_the_child_at_once() -> None:
    began = time.monotonic()
    with pytest.raises(RuntimeError, match="the benchmark failed"):
        async with Host("telegram") as host:
            child = host._proc
            async with host.fake() as fake:
                burst = asyncio.create_task(fake.burst(USERS, text="/draw cat"))  # nobody polls: it waits
                await asyncio.sleep(0.2)
                burst.cancel()
                raise RuntimeError("the benchmark failed")
    assert child is not None and child.returncode is not None
    assert time.monotonic() - began < 10  # killed, not waited for (the burst alone would wait 30 s)
