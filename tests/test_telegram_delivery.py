"""Delivery through Telegram's failures and limits: flood answers, oversize images, blocked users, migrated
groups, deleted status messages, failed generations and exhausted quotas."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from telegram import Bot

from bot.errors import BackendError
from bot.messages.i18n import t
from tests.fakes.telegram import Call, FakeTelegram
from tests.pipeline_support import GatedBackend
from tests.telegram_support import GROUP, USER, ZH_USER, PreparedBackend, fake_telegram, noise_png, running, size_of
from tests.telegram_support import tg_settings as settings_for

# End to end on both storage engines: SQLite and PostgreSQL (tests/conftest.py, ``engine``).
pytestmark = pytest.mark.usefixtures("engine")


def answering(update: dict[str, Any]) -> Callable[[Call], bool]:
    """A call that replies to the message of ``update``."""
    message_id = update["message"]["message_id"]
    return lambda call: call.params.get("reply_parameters", {}).get("message_id") == message_id


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with fake_telegram() as fake:
        yield fake


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")  # PTB-internal retry_after
async def test_flood_answer_on_the_album_is_waited_out(tg: FakeTelegram, tmp_path: Path) -> None:
    tg.fail_next("sendMediaGroup", retry_after=1)
    async with running(settings_for(tmp_path, tg), PreparedBackend()) as bot:
        tg.send_text(USER, "/draw cat --size 768x1024 --n 2")
        await tg.wait_for("sendMediaGroup", timeout=10)
        await bot.core.wait_idle()
        job = await bot.core.get_job(1)
    attempts = tg.calls_to("sendMediaGroup")
    assert [(c.ok, c.error_code) for c in attempts] == [(False, 429), (True, None)]
    assert job is not None and job.status == "done" and job.charged == 2
    assert len(tg.albums(USER)) == 1


async def test_oversize_image_is_reencoded_to_a_photo(tg: FakeTelegram, tmp_path: Path) -> None:
    big = noise_png(2048, 2048)
    assert len(big) > 10 * 1024 * 1024
    async with running(settings_for(tmp_path, tg), PreparedBackend({"2048x2048": big})) as bot:
        tg.send_text(USER, "/draw static --size 2048x2048")
        call = await tg.wait_for("sendPhoto", ok=None, timeout=20)
        await bot.core.wait_idle()
        job = await bot.core.get_job(1)
    assert call.ok
    [photo] = tg.photos(USER)
    assert len(photo.data) <= 10 * 1024 * 1024 and photo.data[:2] == b"\xff\xd8"  # JPEG
    assert size_of(photo.data) == (2048, 2048)
    assert job is not None and job.status == "done"


async def test_originals_mode_sends_refused_photos_as_documents(tg: FakeTelegram, tmp_path: Path) -> None:
    big = noise_png(2048, 2048)
    settings = settings_for(tmp_path, tg, telegram_send_originals=True)
    async with running(settings, PreparedBackend({"2048x2048": big})) as bot:
        tg.send_text(USER, "/draw static --size 2048x2048")
        call = await tg.wait_for("sendDocument", timeout=20)
        await bot.core.wait_idle()
    [document] = tg.documents(USER)
    assert document.data == big
    assert call.params["caption"].startswith("static\n")
    assert call.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == "again:1"
    assert tg.photos(USER) == []


async def test_user_who_blocked_the_bot_is_not_charged(tg: FakeTelegram, tmp_path: Path) -> None:
    backend = GatedBackend(hold=True)
    async with running(settings_for(tmp_path, tg), backend) as bot:
        tg.send_text(USER, "/draw cat")
        await tg.wait_for("sendMessage")  # the status reply
        tg.block(USER)
        backend.release()
        await tg.wait_for("sendPhoto", ok=False)
        await bot.core.wait_idle()
        job = await bot.core.get_job(1)
    assert job is not None and (job.status, job.error, job.charged) == ("failed", "delivery_gone", 0)


async def test_group_migrated_to_a_supergroup_still_gets_its_pictures(tg: FakeTelegram, tmp_path: Path) -> None:
    backend = GatedBackend(hold=True)
    async with running(settings_for(tmp_path, tg), backend) as bot:
        tg.send_text(USER, "/draw cat --n 2", chat_id=GROUP, chat_type="group")
        await tg.wait_for("sendMessage")
        new_id = tg.migrate_group(GROUP)
        backend.release()
        album = await tg.wait_for("sendMediaGroup")
        await bot.core.wait_idle()
        job = await bot.core.get_job(1)
        # and the next job goes straight to the supergroup
        tg.send_text(USER, "/draw dog", chat_id=new_id, chat_type="supergroup")
        await tg.wait_for("sendPhoto")
    assert album.params["chat_id"] == new_id and "reply_parameters" not in album.params
    assert job is not None and job.status == "done"
    assert len(tg.albums(new_id)) == 1 and len(tg.photos(new_id)) == 1
    buttons = [m for m in tg.sent_messages(new_id) if "reply_markup" in m]
    assert buttons and buttons[0]["text"] == t("en", "job.actions")


async def test_deleted_status_message_does_not_stop_delivery(tg: FakeTelegram, tmp_path: Path) -> None:
    backend = GatedBackend(hold=True)
    async with running(settings_for(tmp_path, tg), backend) as bot:
        tg.send_text(USER, "/draw cat")
        status = await tg.wait_for("sendMessage")
        async with Bot(tg.token, base_url=f"{tg.url}/bot") as other_client:  # the user deletes it
            await other_client.delete_message(USER, status.result["message_id"])
        backend.release()
        await tg.wait_for("sendPhoto")
        await tg.wait_for("editMessageText", ok=False)  # "done" could not be shown: message gone
        await bot.core.wait_idle()
        job = await bot.core.get_job(1)
    assert job is not None and job.status == "done"
    assert len(tg.photos(USER)) == 1


async def test_failed_generation_is_told_and_refunded(tg: FakeTelegram, tmp_path: Path) -> None:
    backend = GatedBackend(hold=True)
    backend.failures["cat"] = BackendError("backend_unavailable")
    async with running(settings_for(tmp_path, tg), backend) as bot:
        tg.send_text(ZH_USER, "/draw cat", language_code="zh-CN")
        status = await tg.wait_for("sendMessage")
        backend.release()
        notice = await tg.wait_for("sendMessage")
        await tg.wait_for("deleteMessage")
        await bot.core.wait_idle()
        job = await bot.core.get_job(1)
    assert job is not None and (job.status, job.charged) == ("failed", 0)
    assert notice.params["text"] == t("zh", "error.backend_unavailable")
    assert tg.message(ZH_USER, status.result["message_id"]) is None  # the stale status is gone
    assert tg.texts(ZH_USER) == [notice.params["text"]]


async def test_quota_exhausted_across_commands(tg: FakeTelegram, tmp_path: Path) -> None:
    settings = settings_for(tmp_path, tg, daily_images=3)
    async with running(settings, PreparedBackend()) as bot:
        tg.send_text(USER, "/draw one --n 2")
        await tg.wait_for("sendMediaGroup")
        await bot.core.wait_idle()
        refused = await tg.wait_for("sendMessage", answering(tg.send_text(USER, "/draw two --n 2")))
        tg.send_text(USER, "/draw three")
        await tg.wait_for("sendPhoto")
        await bot.core.wait_idle()
        refused_zh = await tg.wait_for("sendMessage", answering(tg.send_text(USER, "/draw four", language_code="zh")))
        state = await bot.core.quotas.state(f"telegram:{USER}")
        jobs = [await bot.core.get_job(i) for i in (1, 2, 3)]
    assert "3" in refused.params["text"] and refused.params["text"] != refused_zh.params["text"]
    assert any("\u4e00" <= ch <= "\u9fff" for ch in refused_zh.params["text"])  # said in Chinese
    assert state.used == 3
    assert [job.status if job else None for job in jobs] == ["done", "done", None]
    assert len(tg.albums(USER)) == 1 and len(tg.photos(USER)) == 1


async def test_cancel_removes_the_queued_jobs_status(tg: FakeTelegram, tmp_path: Path) -> None:
    backend = GatedBackend(hold=True)
    settings = settings_for(tmp_path, tg, backend_concurrency=1)
    async with running(settings, backend) as bot:
        tg.send_text(ZH_USER, "/draw first")
        await tg.wait_for("sendMessage")
        tg.send_text(USER, "/draw second")
        queued = await tg.wait_for("sendMessage", lambda c: c.params["chat_id"] == USER)
        assert queued.params["text"] == "#1 in the queue"
        tg.send_text(USER, "/cancel")
        answer = await tg.wait_for("sendMessage", lambda c: c.params["chat_id"] == USER)
        await tg.wait_for("deleteMessage")
        backend.release()
        await bot.core.wait_idle()
        job = await bot.core.get_job(2)
    assert job is not None and job.status == "cancelled"
    assert "#2" in answer.params["text"]
    assert tg.texts(USER) == [answer.params["text"]]


async def test_a_slow_answer_to_a_large_album_is_waited_for(tg: FakeTelegram, tmp_path: Path) -> None:
    """Telegram took 8 s to answer an album it had received; python-telegram-bot's own read timeout is 5 s."""
    tg.slow_answer("sendMediaGroup", 6.0)
    async with running(settings_for(tmp_path, tg), PreparedBackend()) as bot:
        tg.send_text(USER, "/draw cat --size 768x1024 --n 2")
        done = await tg.wait_for("editMessageText", lambda c: c.params["text"].startswith("Done"), timeout=15)
        await bot.core.wait_idle()
        job = await bot.core.get_job(1)
    assert done.params["text"] == "Done: 2 pictures."
    assert job is not None and (job.status, job.charged) == ("done", 2)
    assert len(tg.albums(USER)) == 1


@pytest.mark.parametrize("lang", ["en", "zh"])
async def test_an_upload_whose_answer_never_comes_is_not_called_a_failure(
    lang: str, tg: FakeTelegram, tmp_path: Path
) -> None:
    """The album is in the chat, Telegram's answer is late past TELEGRAM_UPLOAD_TIMEOUT: the user must not hear
    'could not be sent' (nor be refunded for pictures they have); the status says what is known."""
    tg.slow_answer("sendMediaGroup", 3.0)
    user = USER if lang == "en" else ZH_USER
    async with running(settings_for(tmp_path, tg, telegram_upload_timeout=1.0), PreparedBackend()) as bot:
        tg.send_text(user, "/draw cat --size 768x1024 --n 2", language_code="en" if lang == "en" else "zh-hans")
        status = await tg.wait_for("editMessageText", lambda c: c.params["text"] == t(lang, "job.unconfirmed"))
        await bot.core.wait_idle()
        job = await bot.core.get_job(1)
    assert status and len(tg.albums(user)) == 1
    assert job is not None and (job.status, job.error, job.charged) == ("done", None, 2)
    told = [str(c.params.get("text")) for c in tg.calls_to("sendMessage")]
    assert t(lang, "error.delivery_failed", job=1) not in told


async def test_an_album_whose_connection_closed_before_the_answer_is_not_called_a_failure(
    tg: FakeTelegram, tmp_path: Path
) -> None:
    """Telegram had the album (it is in the chat), then the connection closed instead of answering: the outcome
    is unknown to the bot, and 'could not be sent' with a refund would be false."""
    tg.drop_answer("sendMediaGroup")
    async with running(settings_for(tmp_path, tg), PreparedBackend()) as bot:
        tg.send_text(USER, "/draw cat --n 2")
        status = await tg.wait_for("editMessageText", lambda c: c.params["text"] == t("en", "job.unconfirmed"))
        await bot.core.wait_idle()
        job = await bot.core.get_job(1)
    assert status and [c.dropped for c in tg.calls_to("sendMediaGroup")] == [True] and len(tg.albums(USER)) == 1
    assert job is not None and (job.status, job.error, job.charged) == ("done", None, 2)
    assert t("en", "error.delivery_failed", job=1) not in [c.params.get("text") for c in tg.calls_to("sendMessage")]
