"""Abuse through the real Telegram adapter (python-telegram-bot against the fake Bot API): updates it cannot
read, hostile text, forged button data, strangers using /admin, and an image service answering with garbage.
The bot keeps serving, shows text exactly as typed, and charges nobody for what failed."""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters.telegram.updates import PollingBot, UpdatesRequest
from bot.backends.a1111 import A1111Backend
from bot.backends.http import RetryPolicy
from bot.errors import SdbotError
from bot.messages.i18n import render_error, t
from tests.fakes.a1111 import FakeA1111
from tests.fakes.telegram import FakeTelegram
from tests.pipeline_support import GatedBackend
from tests.telegram_support import GROUP, USER, ZH_USER, PreparedBackend, fake_telegram, running, tg_settings

OTHER = 4545
INTERNAL = (t("en", "error.internal"), t("zh", "error.internal"))


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with fake_telegram() as fake:
        yield fake


def texts_sent(tg: FakeTelegram) -> list[str]:
    return [str(call.params.get("text")) for call in tg.calls_to("sendMessage")]


def forge(tg: FakeTelegram, user_id: int, message: dict[str, Any], real: str, forged: str) -> None:
    """A modified client: press a real button of ``message`` but send ``forged`` as its data."""
    update = tg.press_button(user_id, message, real)
    update["callback_query"]["data"] = forged  # before the bot polls: it receives the forged data


async def test_updates_the_bot_cannot_read_never_stop_it(tg: FakeTelegram, tmp_path: Path) -> None:
    chat = {"id": USER, "type": "private", "first_name": "U"}
    sender = {"id": USER, "is_bot": False, "first_name": "U", "language_code": "en"}
    async with running(tg_settings(tmp_path, tg), PreparedBackend()) as bot:
        for body in (
            {"message": {"message_id": 9001}},  # no date, no chat: python-telegram-bot cannot parse it
            {"message": {"message_id": 9002, "date": "yesterday", "chat": "nowhere"}},
            {"message": {"message_id": 9003, "date": 1, "chat": chat}},  # nobody sent it, and it says nothing
            {"message": {"message_id": 9004, "date": 1, "chat": chat, "from": sender, "text": "/draw", "x": {}}},
            {"callback_query": {"id": "77", "from": sender, "chat_instance": "1"}},  # no message, no data
            {  # a photo whose caption holds text that is not even valid UTF-16
                "message": {"message_id": 9005, "date": 1, "chat": chat, "from": sender, "caption": "/draw \ud800"},
                "some_future_update": {"what": "ever"},
            },
        ):
            tg.enqueue(body)
        tg.send_text(USER, "/draw " + "x" * 100_000)  # far beyond what Telegram lets a user send
        tg.send_text(USER, "/quota " + "z" * 50_000)
        tg.send_text(USER, "/draw cat\ud83d \x00\u202e --seed 3")  # lone surrogate, NUL, right-to-left override
        tg.send_text(OTHER, "/draw dog", first_name="\ud800\u202eevil\x00")  # a name SQLite could not store
        too_long = await tg.wait_for("sendMessage", lambda c: c.params["text"].startswith("The prompt is"))
        quota = await tg.wait_for("sendMessage", lambda c: c.params["text"].startswith("Your quota today"))
        photos = [await tg.wait_for("sendPhoto") for _ in range(2)]
        await bot.core.wait_idle()
        jobs = [job for i in (1, 2) if (job := await bot.core.get_job(i)) is not None]

    assert too_long.params["text"] == render_error(SdbotError("prompt_too_long", length=100_000, max=1024), "en")
    assert quota.params["chat_id"] == USER
    captions = {call.params["chat_id"]: call.params["caption"] for call in photos}
    assert captions[USER].startswith("cat\nSeed 3 ") and captions[OTHER].startswith("dog\n")
    assert sorted((j.status, j.user, j.request.prompt) for j in jobs) == [
        ("done", f"telegram:{USER}", "cat"),
        ("done", f"telegram:{OTHER}", "dog"),
    ]
    assert not any(text in INTERNAL for text in texts_sent(tg))  # nothing ended in "something went wrong"


async def test_markup_in_prompts_is_shown_as_typed_and_never_parsed(tg: FakeTelegram, tmp_path: Path) -> None:
    prompt = '<b>bold</b> <a href="tg://user?id=1">me</a> *star* _under_ [link](http://x) `code` &amp;'
    async with running(tg_settings(tmp_path, tg), PreparedBackend()) as bot:
        tg.send_text(USER, f"/draw {prompt} --seed 9")
        photo = await tg.wait_for("sendPhoto")
        await bot.core.wait_idle()
        tg.press_button(USER, photo.result, "edit:1")
        edit = await tg.wait_for("sendMessage", lambda c: "entities" in c.params)
        tg.send_text(USER, "/draw cat --style <i>Anime</i>")
        refusal = await tg.wait_for("sendMessage", lambda c: "<i>" in c.params["text"] and "entities" not in c.params)

    assert photo.params["caption"].startswith(prompt + "\nSeed 9 ")
    assert prompt in edit.params["text"] and [e["type"] for e in edit.params["entities"]] == ["code"]
    assert "<i>Anime</i>" in refusal.params["text"]
    # Plain text everywhere: no call asks Telegram to parse HTML or Markdown, so nothing typed can inject it.
    for call in tg.calls:
        assert "parse_mode" not in call.params, call.method
        for item in call.params.get("media") or []:
            assert "parse_mode" not in item


async def test_forged_button_data_reaches_no_one_elses_job(tg: FakeTelegram, tmp_path: Path) -> None:
    backend = GatedBackend(hold=True)
    backend.free.add("mine")
    settings = dataclasses.replace(tg_settings(tmp_path, tg), backend_concurrency=1)
    async with running(settings, backend) as bot:
        tg.send_text(OTHER, "/draw mine")
        mine = (await tg.wait_for("sendPhoto")).result  # job 1: the forger's own picture, with real buttons
        await tg.wait_for("editMessageText", lambda c: c.params["text"].startswith("Done"))
        tg.send_text(USER, "/draw secret garden")  # job 2: running, held
        await tg.wait_for("sendMessage", lambda c: c.params["chat_id"] == USER)
        tg.send_text(USER, "/draw secret pond")  # job 3: queued
        await tg.wait_for("sendMessage", lambda c: c.params["chat_id"] == USER)
        await backend.wait_started(2)
        for forged in ("again:2", "edit:2", "again:" + "9" * 30, "cancel:3", "admin:ban:4242"):
            forge(tg, OTHER, mine, "again:1", forged)
        answers = [await tg.wait_for("answerCallbackQuery") for _ in range(5)]
        queued = await bot.core.get_job(3)
        backend.release()
        await bot.core.wait_idle()
        state = {user: await bot.core.quotas.state(f"telegram:{user}") for user in (USER, OTHER)}
        jobs = [await bot.core.get_job(i) for i in range(1, 5)]

    # Handled concurrently, so answered in any order; unknown actions are only acknowledged (no text).
    assert Counter(a.params.get("text") for a in answers) == {
        t("en", "error.job_not_found", job=2): 2,
        t("en", "error.job_not_found", job=int("9" * 30)): 1,
        None: 2,
    }
    assert queued is not None and queued.status == "queued"  # "cancel:3" cancelled nothing
    assert jobs[3] is None and [j.status for j in jobs[:3] if j] == ["done", "done", "done"]
    assert (state[USER].used, state[OTHER].used) == (2, 1)  # nobody charged for the forgeries
    assert not any("secret" in text for text in texts_sent(tg) if text)  # the prompt never leaked
    assert not state[USER].banned


@pytest.mark.parametrize(("user", "language_code", "lang"), [(ZH_USER, "zh-hans", "zh"), (USER, "en", "en")])
async def test_strangers_cannot_use_admin_commands(
    tg: FakeTelegram, tmp_path: Path, user: int, language_code: str, lang: str
) -> None:
    async with running(tg_settings(tmp_path, tg, admins=frozenset({"telegram:1"})), PreparedBackend()) as bot:
        for command in (f"/admin ban telegram:{OTHER}", f"/admin quota telegram:{user} 0", "/admin stats"):
            tg.send_text(user, command, chat_id=GROUP, chat_type="supergroup", language_code=language_code)
        replies = [await tg.wait_for("sendMessage") for _ in range(3)]
        target = await bot.core.quotas.state(f"telegram:{OTHER}")
        own = await bot.core.quotas.state(f"telegram:{user}")
    assert [r.params["text"] for r in replies] == [t(lang, "error.admin_only")] * 3
    assert not target.banned and own.daily_images == 20


async def test_garbage_from_the_image_service_is_refused_and_refunded(tg: FakeTelegram, tmp_path: Path) -> None:
    settings = tg_settings(tmp_path, tg, rate_per_minute=0, max_pending=5, backend_concurrency=1)
    async with FakeA1111() as fake:
        backend = A1111Backend(fake.url, timeout=10.0, connect_timeout=2.0, retry=RetryPolicy(retries=0))
        fake.push_bomb()  # a 30000x30000 PNG
        fake.push_not_an_image()  # an HTML page where the picture should be
        fake.push_wrong_size()  # half the size asked for
        async with backend, running(settings, backend) as bot:
            for what in ("bomb", "page", "small"):
                tg.send_text(ZH_USER, f"/draw {what} --size 768x768", language_code="zh-hans")
            refusals = [
                await tg.wait_for("sendMessage", lambda c: c.params["text"] == t("zh", "error.backend_bad_image"))
                for _ in range(3)
            ]
            await bot.core.wait_idle()
            refunded = await bot.core.quotas.state(f"telegram:{ZH_USER}")
            tg.send_text(ZH_USER, "/draw fine --size 768x768", language_code="zh-hans")
            await tg.wait_for("sendPhoto")
            await bot.core.wait_idle()
            charged = await bot.core.quotas.state(f"telegram:{ZH_USER}")
            jobs = [await bot.core.get_job(i) for i in range(1, 5)]

    assert len(refusals) == 3 and refunded.used == 0 and charged.used == 1
    assert [(j.status, j.error, j.charged) for j in jobs if j] == [
        ("failed", "backend_bad_image", 0),
        ("failed", "backend_bad_image", 0),
        ("failed", "backend_bad_image", 0),
        ("done", None, 1),
    ]
    assert len(tg.photos(ZH_USER)) == 1  # only the good picture was ever sent


async def test_a_bad_update_in_a_batch_costs_only_itself(tg: FakeTelegram, caplog: pytest.LogCaptureFixture) -> None:
    request = UpdatesRequest()
    bot = PollingBot(tg.token, base_url=f"{tg.url}/bot", get_updates_request=request)
    good = tg.send_text(USER, "/draw first secret")
    tg.enqueue({"message": {"message_id": 9001, "text": "second secret"}})  # no date, no chat: unparseable
    last = tg.send_text(USER, "/draw third secret")
    async with bot:
        updates = await bot.get_updates(timeout=0)
        ids = [update.update_id for update in updates]
        assert len(ids) == 3 and ids[0] == good["update_id"] and ids[2] == last["update_id"]
        assert updates[0].message.text == "/draw first secret" and updates[1].message is None
        assert await bot.get_updates(offset=ids[2] + 1, timeout=0) == ()  # the bad one was confirmed too
    assert f"Telegram update {ids[1]} could not be read" in caplog.text
    assert "secret" not in caplog.text  # what users wrote is not logged
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
