"""Status messages: created at the first news, then edited at most once per interval per chat."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from telegram import Bot

from adapters.telegram.sender import Sender
from adapters.telegram.status import STATUS_KEY, StatusBoard
from bot.core import Core
from bot.draw.request import DrawRequest
from bot.jobs.job import Job
from bot.messages.i18n import t
from tests.fakes.telegram import FakeTelegram
from tests.pipeline_support import WAIT_LIMIT, GatedBackend
from tests.telegram_support import GROUP, USER, PreparedBackend, fake_telegram, running, tg_settings

# End to end on both storage engines: SQLite and PostgreSQL (tests/conftest.py, ``engine``).
pytestmark = pytest.mark.usefixtures("engine")

INTERVAL = 0.3


class TimedSender(Sender):
    """The real sender, noting when each edit went out."""

    def __init__(self, bot: Bot) -> None:
        super().__init__(bot)
        self.edited_at: list[float] = []

    async def edit_text(self, chat_id: int, message_id: int, text: str) -> bool:
        self.edited_at.append(asyncio.get_running_loop().time())
        return await super().edit_text(chat_id, message_id, text)


class HeldSender(Sender):
    """The real sender, whose edits in one chat wait for :attr:`go`."""

    def __init__(self, bot: Bot, held_chat: int) -> None:
        super().__init__(bot)
        self.held_chat = held_chat
        self.go = asyncio.Event()

    async def edit_text(self, chat_id: int, message_id: int, text: str) -> bool:
        if chat_id == self.held_chat:
            await self.go.wait()
        return await super().edit_text(chat_id, message_id, text)


def job(job_id: int, chat_id: int) -> Job:
    return Job(
        id=job_id, user=f"telegram:{job_id}", platform="telegram", chat=f"telegram:{chat_id}", group_chat=True,
        backend="test", request=DrawRequest("x"), route={"chat_id": chat_id, "reply_to": None}, lang="en",
        status="queued", images=1, charged=1, quota_day="2025-01-01", seed=1, delivered=0, error=None, attempts=0,
        parent_id=None, created_at=0.0, started_at=None, finished_at=None,
    )  # fmt: skip


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with fake_telegram() as fake:
        yield fake


async def test_edits_are_coalesced_and_spaced_per_chat(tg: FakeTelegram) -> None:
    tg.add_chat(GROUP, "supergroup")
    async with Bot(tg.token, base_url=f"{tg.url}/bot") as bot:
        sender = TimedSender(bot)
        board = StatusBoard(sender, INTERVAL)
        first, second = job(1, GROUP), job(2, GROUP)
        start = asyncio.get_running_loop().time()
        await board.show(first, "#2 in the queue", reply_to=None, thread_id=None)
        await board.show(second, "#3 in the queue", reply_to=None, thread_id=None)
        for position in (1, 0):  # positions race past faster than the chat may be edited
            await board.show(first, f"#{position} in the queue", reply_to=None, thread_id=None)
            await board.show(second, f"#{position + 1} in the queue", reply_to=None, thread_id=None)
        await board.show(first, "Drawing… 50%", reply_to=None, thread_id=None)
        board.finish(first.id, "Done: 1 picture.")
        edits = [await tg.wait_for("editMessageText") for _ in range(2)]
        await board.close()

    assert len(tg.calls_to("sendMessage")) == 2
    assert sorted(c.params["text"] for c in edits) == ["#1 in the queue", "Done: 1 picture."]
    assert len(tg.calls_to("editMessageText")) == 2  # five changes, two edits
    times = [start, *sender.edited_at]
    assert all(later - earlier >= INTERVAL * 0.95 for earlier, later in itertools.pairwise(times))
    assert sorted(m["text"] for m in tg.sent_messages(GROUP)) == ["#1 in the queue", "Done: 1 picture."]


async def test_chats_do_not_wait_for_each_other(tg: FakeTelegram) -> None:
    chats = [-1001, -1002, -1003]
    for chat in chats:
        tg.add_chat(chat, "supergroup")
    async with Bot(tg.token, base_url=f"{tg.url}/bot") as bot:
        sender = HeldSender(bot, chats[0])
        board = StatusBoard(sender, INTERVAL)
        jobs = [job(i, chat) for i, chat in enumerate(chats, start=1)]
        for item in jobs:
            await board.show(item, "Drawing…", reply_to=None, thread_id=None)
        for item in jobs:
            board.finish(item.id, "Done: 1 picture.")
        # The first chat's edit hangs (a slow answer); the others go ahead of it all the same.
        others = [await tg.wait_for("editMessageText") for _ in chats[1:]]
        sender.go.set()
        last = await tg.wait_for("editMessageText")
        await board.close()
    assert [call.params["chat_id"] for call in [*others, last]] == [*chats[1:], chats[0]]


async def test_a_live_job_shows_progress_then_done(tg: FakeTelegram, tmp_path: Path) -> None:
    backend = GatedBackend(hold=True)
    settings = dataclasses.replace(tg_settings(tmp_path, tg), backend_concurrency=1)
    async with running(settings, backend) as app:
        tg.send_text(1, "/draw first")
        await tg.wait_for("sendMessage")
        tg.send_text(2, "/draw second")
        queued = await tg.wait_for("sendMessage", lambda c: c.params["chat_id"] == 2)
        backend.release(0)
        await backend.wait_started(2)
        drawing = await tg.wait_for("editMessageText", lambda c: c.params["chat_id"] == 2)
        backend.release()
        done = await tg.wait_for("editMessageText", lambda c: c.params["text"].startswith("Done"))
        await app.core.wait_idle()
    assert queued.params["text"] == "#1 in the queue"
    assert drawing.params["text"] == "Drawing…" and drawing.params["message_id"] == queued.result["message_id"]
    assert done.params["chat_id"] in (1, 2)


async def stored_status_id(core: Core, job_id: int) -> int:
    """The status message id the sink stored in the job's route (waits for it: it is written after the send)."""
    async with asyncio.timeout(WAIT_LIMIT):
        while True:
            job = await core.get_job(job_id)
            if job is not None and STATUS_KEY in job.route:
                return int(job.route[STATUS_KEY])
            await asyncio.sleep(0.01)


async def test_a_job_recovered_after_a_restart_edits_its_old_status_message(tg: FakeTelegram, tmp_path: Path) -> None:
    settings = tg_settings(tmp_path, tg)
    backend = GatedBackend(hold=True)
    async with running(settings, backend) as first:
        tg.send_text(USER, "/draw a slow cat")
        status = await tg.wait_for("sendMessage")
        await backend.wait_started(1)
        remembered = await stored_status_id(first.core, 1)
    # Stopped while drawing: the job stays unfinished and the next process re-runs it.
    async with running(settings, PreparedBackend()) as second:
        await tg.wait_for("sendPhoto")
        done = await tg.wait_for("editMessageText", lambda c: c.params["text"] == "Done: 1 picture.")
        await second.core.wait_idle()
        job = await second.core.get_job(1)

    assert remembered == status.result["message_id"]
    assert job is not None and job.status == "done" and job.attempts == 2
    assert done.params["message_id"] == remembered  # the same message, brought up to date
    assert len(tg.calls_to("sendMessage")) == 1  # and no second status message
    assert tg.texts(USER).count("Done: 1 picture.") == 1


async def test_a_recovered_job_that_fails_removes_its_old_status_message(tg: FakeTelegram, tmp_path: Path) -> None:
    backend = GatedBackend(hold=True)
    async with running(tg_settings(tmp_path, tg), backend) as first:
        tg.send_text(USER, "/draw a slow cat")
        await backend.wait_started(1)
        remembered = await stored_status_id(first.core, 1)
    # Restarted too late: the job is failed and refunded; its stale "Drawing…" must not stay behind.
    async with running(tg_settings(tmp_path, tg, job_max_age=0.001), PreparedBackend()) as second:
        expired = t("en", "error.job_expired", job=1)
        notice = await tg.wait_for("sendMessage", lambda c: c.params["text"] == expired)
        await tg.wait_for("deleteMessage")
        await second.core.wait_idle()
    assert (USER, remembered) in tg.deleted
    assert tg.message(USER, remembered) is None and notice.params["chat_id"] == USER
