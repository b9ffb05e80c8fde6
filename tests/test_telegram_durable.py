"""No command is lost when the bot dies: Telegram updates are kept until handled, and handled once.

python-telegram-bot confirms an update to Telegram when it asks for the next ones, before the handler has
answered; a bot killed in between used to lose the command. Here the real PTB runs against the fake Bot API,
and the real ``sdbot run`` is killed with SIGKILL at exactly that moment.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tests.fakes.telegram import FakeTelegram
from tests.telegram_support import USER, PreparedBackend, fake_telegram, running, tg_settings
from tests.test_telegram_run import free_port, start_sdbot, telegram_env

# End to end on both storage engines: SQLite and PostgreSQL (tests/conftest.py, ``engine``).
pytestmark = pytest.mark.usefixtures("engine")


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with fake_telegram() as fake:
        yield fake


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:  # noqa: ASYNC109
    """Until ``check()`` holds: it reads state the fake or the database changes, which nothing signals."""
    async with asyncio.timeout(timeout):
        while not await check():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def confirmed(tg: FakeTelegram, update_id: int) -> None:
    """Until the bot asked for updates past ``update_id``: Telegram then considers it handled."""

    async def asked_past() -> bool:
        return any(int(c.params.get("offset") or 0) > update_id for c in tg.calls_to("getUpdates"))

    await eventually(asked_past)


async def test_a_command_confirmed_but_not_answered_when_killed_is_answered_after_restart(
    tg: FakeTelegram, tmp_path: Path
) -> None:
    env = telegram_env(tg, tmp_path)
    # The answer meets a long flood wait: the bot has confirmed the update and is still sleeping it off.
    tg.fail_next("sendMessage", retry_after=30)
    first = await start_sdbot(env, tmp_path)
    try:
        await tg.wait_for("deleteWebhook", timeout=20)  # polling starts next
        update = tg.send_text(USER, "/help")
        await tg.wait_for("sendMessage", ok=False, timeout=20)
        await confirmed(tg, update["update_id"])
    finally:
        first.send_signal(signal.SIGKILL)
        await asyncio.wait_for(first.communicate(), 30)
    assert tg.texts(USER) == []  # lost, before this fix: Telegram will not send it again

    second = await start_sdbot(env, tmp_path)
    try:
        answer = await tg.wait_for("sendMessage", timeout=20)
        await asyncio.sleep(0.5)  # time for a (wrong) second answer
    finally:
        second.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(second.communicate(), 30)
    assert second.returncode == 0, err.decode()
    assert answer.params["text"] == tg.texts(USER)[0]
    assert len(tg.texts(USER)) == 1
    assert "handled again" in err.decode()


async def test_a_draw_handled_twice_makes_one_job_and_one_picture(tg: FakeTelegram, tmp_path: Path) -> None:
    settings = tg_settings(tmp_path, tg)
    async with running(settings, PreparedBackend()) as bot:
        update = tg.send_text(USER, "/draw a red kite")
        await tg.wait_for("sendPhoto")
        await bot.core.wait_idle()
        # As if the process had died after admitting the job but before marking the update handled, and
        # before Telegram heard it was confirmed: the next start replays it and Telegram sends it again.
        await bot.core.storage.execute(
            "UPDATE inbox SET handled_at = NULL, payload = ? WHERE platform = 'telegram' AND event_id = ?",
            (json.dumps(update), update["update_id"]),
        )
    tg.redeliver(update)
    async with running(settings, PreparedBackend()) as bot:
        calls_before = len(tg.calls_to("getUpdates"))

        async def settled() -> bool:  # the replayed copy handled, the redelivered one fetched
            return await bot.core.inbox.unhandled("telegram") == 0 and len(tg.calls_to("getUpdates")) > calls_before + 1

        await eventually(settled)
        await bot.core.wait_idle()
        jobs = await bot.core.storage.fetchall("SELECT id, origin, status FROM jobs")
    assert [(r["origin"], r["status"]) for r in jobs] == [
        (f"telegram:{USER}:{update['message']['message_id']}", "done")
    ]
    assert len(tg.photos(USER)) == 1


async def test_webhook_updates_are_kept_before_telegram_is_answered(tg: FakeTelegram, tmp_path: Path) -> None:
    port = free_port()
    settings = tg_settings(
        tmp_path,
        tg,
        telegram_webhook_url=f"http://127.0.0.1:{port}/hook",
        telegram_webhook_listen="127.0.0.1",
        telegram_webhook_port=port,
        telegram_webhook_secret="durable_secret",  # PostgreSQL needs one shared secret (webhook_secret_shared)
    )
    tg.fail_next("sendMessage", retry_after=2)
    async with running(settings, PreparedBackend()) as bot:
        tg.send_text(USER, "/help")
        await tg.wait_for("sendMessage", ok=False)
        assert [status for _, status in tg.webhook_deliveries] == [200]
        assert await bot.core.inbox.unhandled("telegram") == 1  # Telegram was told "got it": we hold it
        answer = await tg.wait_for("sendMessage", timeout=10)

        async def handled() -> bool:
            return await bot.core.inbox.unhandled("telegram") == 0

        await eventually(handled)
    assert tg.texts(USER) == [answer.params["text"]]  # answered once
