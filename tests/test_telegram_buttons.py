"""The Again and Edit buttons under a delivered picture, including after the bot restarted."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.draw.validation import parse_request
from bot.messages.i18n import t
from tests.fakes.telegram import FakeTelegram
from tests.telegram_support import GROUP, USER, ZH_USER, PreparedBackend, fake_telegram, running, tg_settings

# End to end on both storage engines: SQLite and PostgreSQL (tests/conftest.py, ``engine``).
pytestmark = pytest.mark.usefixtures("engine")


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with fake_telegram() as fake:
        yield fake


async def test_again_works_after_a_restart_and_is_charged(tg: FakeTelegram, tmp_path: Path) -> None:
    settings = tg_settings(tmp_path, tg)
    async with running(settings, PreparedBackend()) as first_run:
        tg.send_text(USER, "/draw cat --style Anime --steps 30")
        photo = (await tg.wait_for("sendPhoto")).result
        await first_run.core.wait_idle()

    async with running(settings, PreparedBackend()) as second_run:  # a new process on the same database
        tg.press_button(USER, photo, "again:1")
        again = await tg.wait_for("sendPhoto")
        await second_run.core.wait_idle()
        original, rerun = await second_run.core.get_job(1), await second_run.core.get_job(2)
        state = await second_run.core.quotas.state(f"telegram:{USER}")

    assert original is not None and rerun is not None
    assert rerun.parent_id == 1 and rerun.status == "done"
    assert rerun.request.with_seed(None) == original.request.with_seed(None)
    assert rerun.seed != original.seed
    assert state.used == 2  # Again counts like /draw
    assert again.params["reply_parameters"]["message_id"] == photo["message_id"]
    assert f"Seed {rerun.seed}" in again.params["caption"]
    assert tg.callback_answers and "text" not in tg.callback_answers[0]


async def test_edit_sends_the_command_that_reproduces_the_picture(tg: FakeTelegram, tmp_path: Path) -> None:
    async with running(tg_settings(tmp_path, tg), PreparedBackend()) as bot:
        tg.send_text(ZH_USER, '/draw "a cat" in a hat --n 2 --negative blurry', language_code="zh-hans")
        await tg.wait_for("sendMediaGroup")
        buttons = await tg.wait_for("sendMessage", lambda c: "reply_markup" in c.params)
        tg.press_button(ZH_USER, buttons.result, "edit:1")
        edit = await tg.wait_for("sendMessage", lambda c: "entities" in c.params)
        await bot.core.wait_idle()
        # answering the Edit message with /draw and a change re-draws it with that change
        tg.send_text(ZH_USER, "/draw --steps 25", reply_to=edit.result, language_code="zh-hans")
        await tg.wait_for("sendMediaGroup")
        await bot.core.wait_idle()
        job, changed = await bot.core.get_job(1), await bot.core.get_job(2)

    assert job is not None and changed is not None
    assert changed.request == dataclasses.replace(job.seeded_request, steps=25)  # the same seed, too
    header, command = edit.params["text"].split("\n", 1)
    assert header == t("zh", "edit.reply")
    assert buttons.params["text"] == t("zh", "job.actions")
    assert command.startswith("/draw ") and f"--seed {job.seed}" in command
    assert parse_request(command) == job.seeded_request
    [entity] = edit.params["entities"]
    assert entity["type"] == "code" and entity["offset"] == len(header) + 1 and entity["length"] == len(command)


async def test_someone_elses_again_is_refused_privately(tg: FakeTelegram, tmp_path: Path) -> None:
    async with running(tg_settings(tmp_path, tg), PreparedBackend()) as bot:
        tg.send_text(USER, "/draw cat", chat_id=GROUP, chat_type="supergroup")
        photo = (await tg.wait_for("sendPhoto")).result
        await bot.core.wait_idle()
        tg.press_button(ZH_USER, photo, "again:1", chat_id=GROUP)
        await tg.wait_for("answerCallbackQuery")
        tg.press_button(ZH_USER, photo, "edit:1", chat_id=GROUP)  # same chat: the command is no secret
        edit = await tg.wait_for("sendMessage", lambda c: "entities" in c.params)
        assert await bot.core.get_job(2) is None

    refusal = tg.callback_answers[0]
    assert refusal["show_alert"] is True
    assert refusal["text"] == t("en", "error.job_not_found", job=1)
    assert edit.params["chat_id"] == GROUP
