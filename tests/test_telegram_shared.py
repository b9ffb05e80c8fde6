"""Telegram with several processes on one PostgreSQL database: the rules of sharing, through the real adapter
(python-telegram-bot against the fake Bot API) and a real PostgreSQL server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from bot.config import Settings
from bot.errors import ConfigError
from bot.messages.i18n import render_error
from tests.fakes.telegram import FakeTelegram
from tests.pipeline_support import make_settings
from tests.postgres_support import PostgresServer
from tests.telegram_support import USER, PreparedBackend, fake_telegram, running
from tests.test_telegram_run import free_port


def settings_on(url: str, tg: FakeTelegram, **overrides: object) -> Settings:
    return make_settings(url, telegram_bot_token=tg.token, telegram_api_url=tg.url, **overrides)  # type: ignore[arg-type]


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with fake_telegram() as fake:
        yield fake


async def test_webhooks_on_postgresql_need_the_shared_secret(
    tg: FakeTelegram, tmp_path: Path, postgres_server: PostgresServer
) -> None:
    """A secret made up at each start would differ between processes (the last to register would win)."""
    url = await postgres_server.new_database()
    port = free_port()
    settings = settings_on(url, tg, telegram_webhook_url=f"http://127.0.0.1:{port}/hook", telegram_webhook_port=port)
    with pytest.raises(ConfigError) as refused:
        async with running(settings, PreparedBackend()):
            pass
    assert refused.value.code == "webhook_secret_shared"
    assert all("TELEGRAM_WEBHOOK_SECRET" in render_error(refused.value, lang) for lang in ("en", "zh"))
    assert tg.calls_to("getMe") == []  # refused before signing in


async def test_a_second_process_may_not_long_poll_the_same_bot(
    tg: FakeTelegram, tmp_path: Path, postgres_server: PostgresServer
) -> None:
    settings = settings_on(await postgres_server.new_database(), tg)
    async with running(settings, PreparedBackend()) as first:
        with pytest.raises(ConfigError) as refused:
            async with running(settings, PreparedBackend()):
                pass
        tg.send_text(USER, "/help")
        await tg.wait_for("sendMessage")  # the first one goes on polling
        await first.core.wait_idle()
    assert refused.value.code == "telegram_polling_shared"
    assert all("TELEGRAM_WEBHOOK_URL" in render_error(refused.value, lang) for lang in ("en", "zh"))
    async with running(settings, PreparedBackend()):  # the first stopped: its lock went with it
        pass


async def test_an_update_that_cannot_be_stored_is_refused_and_comes_again(
    tg: FakeTelegram, tmp_path: Path, postgres_server: PostgresServer
) -> None:
    """The database refuses connections: the webhook answers 503 (Telegram keeps the update and sends it again),
    and once the database is back the command is answered, once."""
    url = await postgres_server.new_database()
    name = url.rsplit("/", 1)[1]
    port = free_port()
    settings = settings_on(
        url, tg, telegram_webhook_url=f"http://127.0.0.1:{port}/hook",
        telegram_webhook_listen="127.0.0.1", telegram_webhook_port=port, telegram_webhook_secret="shared_1",
    )  # fmt: skip
    tg.webhook_retry_delay = 0.3
    admin = await asyncpg.connect(url.rsplit("/", 1)[0] + "/postgres")
    try:
        async with running(settings, PreparedBackend()) as bot:
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name)
            tg.send_text(USER, "/help")
            async with asyncio.timeout(20):
                while 503 not in [status for _, status in tg.webhook_deliveries]:  # noqa: ASYNC110 (the fake's pace)
                    await asyncio.sleep(0.05)
            await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            await tg.wait_for("sendMessage", timeout=20)
            await bot.core.wait_idle()
    finally:
        await admin.close()
    statuses = [status for _, status in tg.webhook_deliveries]
    assert 503 in statuses and statuses[-1] == 200
    assert len(tg.texts(USER)) == 1
