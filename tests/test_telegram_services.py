"""Today's image services end to end on Telegram: the real python-telegram-bot against the fake Bot API, the real
Stability v2beta client against the fake Stability. The caption says what a ratio-based service drew and leaves out
what it did not use; Edit and Again give back a command the service takes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.backends.stability_v2 import StabilityV2Backend
from tests.backend_support import fast_retry
from tests.fakes.stability import CORE_SIZES, FakeStability
from tests.fakes.telegram import FakeTelegram
from tests.telegram_support import USER, fake_telegram, running, size_of
from tests.telegram_support import tg_settings as settings_for

KEY = "sk-telegram-services-key"


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with fake_telegram() as fake:
        yield fake


async def test_a_ratio_service_on_telegram(tg: FakeTelegram, tmp_path: Path) -> None:
    async with FakeStability(api_key=KEY) as stability:
        backend = StabilityV2Backend(KEY, base_url=stability.url, timeout=10, retry=fast_retry()[0])
        async with running(settings_for(tmp_path, tg, rate_per_minute=0), backend) as bot:
            tg.send_text(USER, "/draw a lighthouse --size 1024x576 --style Cinematic --seed 21")
            photo = await tg.wait_for("sendPhoto")
            buttons = photo.params["reply_markup"]["inline_keyboard"][0]
            tg.press_button(USER, photo.result, "edit:1")
            edit = await tg.wait_for("sendMessage", lambda c: "entities" in c.params)
            tg.press_button(USER, photo.result, "again:1")
            await tg.wait_for("sendPhoto", lambda c: c is not photo)
            await bot.core.wait_idle()
            again = await bot.core.get_job(2)
        (sent, *_) = tg.photos(USER)

    width, height = CORE_SIZES["16:9"]
    caption = photo.params["caption"]
    assert f"{width}x{height} (16:9, asked 1024x576)" in caption and "Cinematic" in caption and "Seed 21" in caption
    assert "steps" not in caption and "Euler" not in caption and "CFG" not in caption
    assert size_of(sent.data) == (width, height) and [b["callback_data"] for b in buttons] == ["again:1", "edit:1"]
    command = edit.params["text"].split("\n", 1)[1]
    assert "--size 1024x576" in command and "--seed 21" in command and "--steps" not in command
    assert again is not None and again.status == "done" and len(stability.v2_calls) == 2
    assert stability.v2_calls[0].fields["style_preset"] == "cinematic"
