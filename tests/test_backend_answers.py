"""What an image service sends back, through the real httpx client (A1111 and Qianfan fakes), the core and the
real python-telegram-bot client against the fake Bot API: pictures that only decoding shows to be broken, and
fewer or more pictures than asked for. Nobody pays for what was not delivered, and the user is told."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.backends.a1111 import A1111Backend
from bot.backends.http import RetryPolicy
from bot.backends.qianfan import QianfanBackend
from bot.messages.i18n import t
from tests.fakes.a1111 import FakeA1111
from tests.fakes.images import corrupt_deflate_png, truncated_jpeg
from tests.fakes.qianfan import FakeQianfan
from tests.fakes.telegram import FakeTelegram
from tests.telegram_support import USER, ZH_USER, fake_telegram, running, tg_settings


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with fake_telegram() as fake:
        yield fake


def a1111(fake: FakeA1111) -> A1111Backend:
    return A1111Backend(fake.url, timeout=10.0, connect_timeout=2.0, retry=RetryPolicy(retries=0))


def test_the_broken_pictures_pass_pillows_verify() -> None:
    """The faults are the ones seen: Pillow's verify() accepts both, only load() fails."""
    import io

    from PIL import Image

    for data in (truncated_jpeg(768, 768, 1), corrupt_deflate_png(768, 768, 1)):
        with Image.open(io.BytesIO(data)) as img:
            img.verify()
        with Image.open(io.BytesIO(data)) as img, pytest.raises(OSError):
            img.load()


async def test_pictures_that_do_not_decode_are_refused_refunded_and_told(tg: FakeTelegram, tmp_path: Path) -> None:
    settings = tg_settings(tmp_path, tg, rate_per_minute=0, max_pending=5, backend_concurrency=1)
    async with FakeA1111() as fake:
        fake.push_truncated()
        fake.push_corrupt_pixels()
        backend = a1111(fake)
        async with backend, running(settings, backend) as bot:
            for what in ("cut", "corrupt"):
                tg.send_text(ZH_USER, f"/draw {what} --size 768x768", language_code="zh-hans")
            for _ in range(2):
                await tg.wait_for("sendMessage", lambda c: c.params["text"] == t("zh", "error.backend_bad_image"))
            await bot.core.wait_idle()
            state = await bot.core.quotas.state(f"telegram:{ZH_USER}")
            jobs = [await bot.core.get_job(i) for i in (1, 2)]
    assert state.used == 0
    assert [(j.status, j.error, j.charged) for j in jobs if j] == [("failed", "backend_bad_image", 0)] * 2
    assert tg.photos(ZH_USER) == []


async def test_fewer_pictures_than_asked_are_delivered_and_only_they_charged(tg: FakeTelegram, tmp_path: Path) -> None:
    settings = tg_settings(tmp_path, tg, rate_per_minute=0)
    async with FakeA1111() as fake:
        fake.push_count(1)
        backend = a1111(fake)
        async with backend, running(settings, backend) as bot:
            tg.send_text(USER, "/draw a cat --size 768x768 --n 2")
            done = await tg.wait_for("editMessageText", lambda c: c.params["text"].startswith("Done"))
            await bot.core.wait_idle()
            state = await bot.core.quotas.state(f"telegram:{USER}")
            job = await bot.core.get_job(1)
    assert done.params["text"] == (
        "Done: 1 picture.\nThe image service returned 1 of the 2 pictures asked for; "
        "the 1 missing picture was not charged."
    )
    assert len(tg.photos(USER)) == 1
    assert job is not None and (job.status, job.charged, job.delivered) == ("done", 1, 1)
    assert state.used == 1


async def test_more_pictures_than_asked_are_cut_to_what_was_asked(tg: FakeTelegram, tmp_path: Path) -> None:
    settings = tg_settings(tmp_path, tg, rate_per_minute=0)
    async with FakeQianfan(api_key="more-ak-123", secret_key="more-sk-456") as fake:
        fake.push_count(11)  # Telegram refuses albums over 10, and 1 was paid for
        backend = QianfanBackend("more-ak-123", "more-sk-456", base_url=fake.url, retry=RetryPolicy(retries=0))
        async with backend, running(settings, backend) as bot:
            tg.send_text(USER, "/draw a cat --size 768x768")
            done = await tg.wait_for("editMessageText", lambda c: c.params["text"].startswith("Done"))
            await bot.core.wait_idle()
            job = await bot.core.get_job(1)
    assert done.params["text"] == "Done: 1 picture."
    assert len(tg.photos(USER)) == 1 and tg.calls_to("sendMediaGroup") == []
    assert job is not None and (job.charged, job.delivered) == (1, 1)


async def test_an_answer_trickling_in_is_cut_at_the_timeout_and_counts_as_an_outage(
    tg: FakeTelegram, tmp_path: Path
) -> None:
    """SDBOT_BACKEND_TIMEOUT bounds the whole answer: a byte every 0.1 s never trips a read timeout."""
    settings = tg_settings(tmp_path, tg, rate_per_minute=0, breaker_failures=1, breaker_cooldown=60)
    async with FakeA1111() as fake:
        fake.push_trickle(0.1)
        backend = A1111Backend(fake.url, timeout=1.0, connect_timeout=1.0, retry=RetryPolicy(retries=0))
        async with backend, running(settings, backend) as bot:
            started = asyncio.get_running_loop().time()
            tg.send_text(USER, "/draw a cat --size 768x768")
            told = await tg.wait_for("sendMessage", lambda c: c.params["text"] == t("en", "error.backend_timeout"))
            took = asyncio.get_running_loop().time() - started
            await bot.core.wait_idle()
            job = await bot.core.get_job(1)
            state = await bot.core.quotas.state(f"telegram:{USER}")
            breaker = bot.core.breaker.state
    assert told and took < 3.0, took  # not the 60 s the whole body would take
    assert job is not None and (job.status, job.error, job.charged) == ("failed", "backend_timeout", 0)
    assert state.used == 0
    assert breaker == "open"  # a cut-off answer is an outage failure
