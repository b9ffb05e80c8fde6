"""Starting and stopping: ``sdbot run`` with Telegram (in-process and as a real subprocess), webhook mode, a
refused token, an unreachable server, and the token kept out of the logs."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters import runner
from adapters.telegram import TelegramAdapter
from bot.commands import describe_failure
from bot.core import Core
from bot.errors import BackendError, ConfigError, SdbotError
from bot.jobs.job import Job
from bot.messages.i18n import render_error
from bot.process import redact
from tests.fakes.telegram import FakeTelegram
from tests.pipeline_support import GatedBackend
from tests.telegram_support import USER, PreparedBackend, fake_telegram, running, tg_settings


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with fake_telegram() as fake:
        yield fake


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_refused_token_fails_at_start_with_a_clear_message(tg: FakeTelegram, tmp_path: Path) -> None:
    settings = dataclasses.replace(tg_settings(tmp_path, tg), telegram_bot_token="987654:not-the-token")
    with pytest.raises(ConfigError) as caught:
        await runner.run(settings, asyncio.Event())
    assert caught.value.code == "platform_auth_failed"
    message = render_error(caught.value, "en")
    assert "TELEGRAM_BOT_TOKEN" in message and "Telegram" in message
    assert "not-the-token" not in message
    assert [c.method for c in tg.calls] == []  # refused before any method ran: 401 on getMe
    assert tg.requests == [("POST", "/bot987654:not-the-token/getMe")]


async def test_unreachable_api_fails_at_start(tmp_path: Path) -> None:
    async with fake_telegram() as tg:
        settings = dataclasses.replace(tg_settings(tmp_path, tg), telegram_api_url=f"http://127.0.0.1:{free_port()}")
    with pytest.raises(ConfigError) as caught:
        async with running(settings, PreparedBackend()):
            pass
    assert caught.value.code == "platform_unreachable"
    assert "TELEGRAM_API_URL" in render_error(caught.value, "zh")


async def test_sdbot_run_in_process_until_stopped(tg: FakeTelegram, tmp_path: Path) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(tg_settings(tmp_path, tg), stop))
    await tg.wait_for("deleteWebhook", timeout=10)  # polling starts next
    tg.send_text(USER, "/draw lighthouse at dusk")
    photo = await tg.wait_for("sendPhoto", timeout=10)
    stop.set()
    assert await asyncio.wait_for(task, 10) == 0
    assert photo.params["caption"].startswith("lighthouse at dusk\n")
    assert [c.method for c in tg.calls[:2]] == ["getMe", "setMyCommands"]


async def test_webhook_mode(tg: FakeTelegram, tmp_path: Path) -> None:
    port = free_port()
    settings = tg_settings(
        tmp_path,
        tg,
        telegram_webhook_url=f"http://127.0.0.1:{port}/tg-hook",
        telegram_webhook_listen="127.0.0.1",
        telegram_webhook_port=port,
        telegram_webhook_secret="s3cret_Token-1",
    )
    async with running(settings, PreparedBackend()) as bot:
        tg.send_text(USER, "/draw cat on a hook")
        await tg.wait_for("sendPhoto")
        await bot.core.wait_idle()
    assert tg.webhook is not None and tg.webhook["secret_token"] == "s3cret_Token-1"
    assert tg.webhook["url"] == f"http://127.0.0.1:{port}/tg-hook"
    assert tg.calls_to("getUpdates") == []
    assert [status for _, status in tg.webhook_deliveries] == [200]


async def test_webhook_secret_is_generated_or_checked(tg: FakeTelegram, tmp_path: Path) -> None:
    port = free_port()
    base = tg_settings(
        tmp_path, tg, telegram_webhook_url=f"http://127.0.0.1:{port}/hook", telegram_webhook_listen="127.0.0.1"
    )
    async with running(dataclasses.replace(base, telegram_webhook_port=port), PreparedBackend()):
        pass
    assert tg.webhook is not None and len(tg.webhook["secret_token"]) >= 32
    with pytest.raises(ConfigError) as caught:
        async with running(dataclasses.replace(base, telegram_webhook_secret="not base64="), PreparedBackend()):
            pass
    assert caught.value.variable == "TELEGRAM_WEBHOOK_SECRET"
    assert "not base64" not in render_error(caught.value, "en")


async def test_the_token_never_reaches_the_logs(
    tg: FakeTelegram, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    redact.install()
    caplog.set_level(logging.DEBUG)
    backend = GatedBackend(hold=True)
    async with running(tg_settings(tmp_path, tg), backend) as bot:
        tg.send_text(USER, "/draw cat")
        await tg.wait_for("sendMessage")
        tg.block(USER)  # a failure path too: PTB logs the failing URL
        backend.release()
        await tg.wait_for("sendPhoto", ok=False)
        await bot.core.wait_idle()
    assert "getUpdates" in caplog.text  # PTB and httpx did log their requests
    secret = tg.token.split(":", 1)[1]
    assert secret not in caplog.text


async def test_sigterm_keeps_the_accepted_job_for_the_next_start(tg: FakeTelegram, tmp_path: Path) -> None:
    env = telegram_env(tg, tmp_path)
    # The first delivery meets a long flood wait, so the signal arrives while the job is being delivered.
    tg.fail_next("sendPhoto", retry_after=10)
    first = await start_sdbot(env, tmp_path)
    try:
        await tg.wait_for("deleteWebhook", timeout=20)  # polling starts next
        tg.send_text(USER, "/draw a lighthouse in the storm")
        await tg.wait_for("sendPhoto", ok=False, timeout=20)
    finally:
        first.send_signal(signal.SIGTERM)
        _, first_err = await asyncio.wait_for(first.communicate(), 30)
    assert first.returncode == 0, first_err.decode()
    assert tg.photos() == []

    second = await start_sdbot(env, tmp_path)
    try:
        photo = await tg.wait_for("sendPhoto", timeout=20)
    finally:
        second.send_signal(signal.SIGTERM)
        _, second_err = await asyncio.wait_for(second.communicate(), 30)
    assert second.returncode == 0, second_err.decode()
    assert photo.params["caption"].startswith("a lighthouse in the storm\n")
    assert len(tg.photos(USER)) == 1
    secret = tg.token.split(":", 1)[1]
    logs = first_err.decode() + second_err.decode()
    assert "recovered" in logs and secret not in logs


def telegram_env(tg: FakeTelegram, tmp_path: Path) -> dict[str, str]:
    """What an operator sets to run the bot against ``tg`` with its database in ``tmp_path``."""
    return {
        "TELEGRAM_BOT_TOKEN": tg.token,
        "TELEGRAM_API_URL": tg.url,
        "SDBOT_DB": str(tmp_path / "sdbot.db"),
        "SDBOT_LOG_LEVEL": "INFO",
    }


async def start_sdbot(env: dict[str, str], cwd: Path) -> asyncio.subprocess.Process:
    """``python -m bot run`` as an operator starts it; ``cwd`` is a temporary directory (no ``.env``)."""
    ambient = ("SDBOT_", "TELEGRAM_", "DISCORD_", "QIANFAN_", "STABILITY_", "MODELSLAB_", "BEDROCK_", "A1111_")
    environment = {k: v for k, v in os.environ.items() if not k.startswith(ambient)}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "run",
        cwd=cwd,
        env={**environment, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_a_failure_during_shutdown_is_told_at_the_next_start(tg: FakeTelegram, tmp_path: Path) -> None:
    """A generation that fails while the bot stops (a deploy): the user is not left without an answer, and
    the job is not refunded silently; the next start runs it again and tells them."""
    settings = tg_settings(tmp_path, tg)
    backend = GatedBackend(hold=True)
    backend.failures["doomed"] = BackendError("backend_unavailable")
    core = await Core.open(settings, backend)
    adapter = TelegramAdapter(core, settings, status_interval=0.2, poll_timeout=1, shutdown_grace=0.5)
    told = asyncio.Event()
    on_failed = adapter.sink.on_failed

    async def failure_seen(job: Job, error: SdbotError, refunded: bool) -> None:
        told.set()
        await on_failed(job, error, refunded)

    adapter.sink.on_failed = failure_seen  # type: ignore[method-assign]
    try:
        await adapter.prepare()
        await core.start()
        await adapter.start()
        tg.send_text(USER, "/draw doomed --size 768x768")
        await backend.wait_started(1)
        await adapter.stop()  # SIGTERM: no more sending
        backend.release()  # ... and the generation fails now
        await asyncio.wait_for(told.wait(), 10)
        await asyncio.sleep(0.2)
        job = await core.get_job(1)
        # Neither failed nor refunded while nobody was told.
        assert job is not None and (job.status, job.charged) == ("running", 1)
    finally:
        await core.close()

    backend = GatedBackend()
    backend.failures["doomed"] = BackendError("backend_unavailable")
    async with running(settings, backend) as bot:
        await bot.core.wait_idle()
        ended = await bot.core.get_job(1)
    notice = describe_failure(BackendError("backend_unavailable"), True, "en")
    assert notice in tg.texts(USER)
    assert ended is not None and (ended.status, ended.charged) == ("failed", 0)
