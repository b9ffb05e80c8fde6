"""Starting and stopping: a refused token is a clear configuration error, ``sdbot run`` serves Discord and
stops cleanly, early interactions are answered, secrets stay out of the logs. Plus the adapter's pure parts."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path

import pytest

from adapters import runner
from adapters.discord.adapter import DiscordAdapter
from adapters.discord.files import Upload, batches
from adapters.discord.route import Route
from adapters.discord.sink import CONTENT_MAX, summary
from bot.commands import describe_failure
from bot.core import Core
from bot.draw.request import DrawRequest
from bot.errors import BackendError, ConfigError, SdbotError
from bot.jobs.generation import Generation
from bot.jobs.job import Job
from bot.messages.i18n import render_error, t
from bot.process import redact
from tests.discord_support import TOKEN, QuietBackend, fake_discord, running_bot
from tests.pipeline_support import GatedBackend, make_settings

# End to end on both storage engines: SQLite and PostgreSQL (tests/conftest.py, ``engine``).
pytestmark = pytest.mark.usefixtures("engine")


async def test_a_refused_token_fails_prepare_with_a_clear_message(tmp_path: Path) -> None:
    async with fake_discord() as dc:
        settings = make_settings(tmp_path / "db", discord_bot_token="not-the-token")
        core = await Core.open(settings, GatedBackend())
        try:
            adapter = DiscordAdapter(core, settings, guild_ready_timeout=0.05)
            with pytest.raises(ConfigError) as caught:
                await adapter.prepare()
        finally:
            await core.close()

    error = caught.value
    assert (error.code, error.variable, error.params["platform"]) == (
        "platform_auth_failed",
        "DISCORD_BOT_TOKEN",
        "Discord",
    )
    assert "DISCORD_BOT_TOKEN" in render_error(error, "en") and "Discord" in render_error(error, "zh")
    assert adapter.client.is_closed() and not dc.is_connected


async def test_a_token_the_gateway_refuses_is_the_same_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with fake_discord() as dc:
        settings = make_settings(tmp_path / "db", discord_bot_token=TOKEN)
        core = await Core.open(settings, GatedBackend())
        adapter = DiscordAdapter(core, settings, guild_ready_timeout=0.05)
        setup = adapter.client.setup_hook

        async def rotate_after_login() -> None:  # REST accepted the token; now it is revoked
            await setup()
            dc.token = "rotated"

        monkeypatch.setattr(adapter.client, "setup_hook", rotate_after_login)
        try:
            with pytest.raises(ConfigError) as caught:
                await adapter.prepare()
        finally:
            await core.close()

    assert caught.value.code == "platform_auth_failed" and adapter.client.is_closed()


async def test_an_unreachable_discord_fails_prepare_with_a_clear_message(tmp_path: Path) -> None:
    async with fake_discord() as dc:
        await dc.stop()  # nothing listens at its address any more
        settings = make_settings(tmp_path / "db", discord_bot_token=TOKEN)
        core = await Core.open(settings, GatedBackend())
        try:
            adapter = DiscordAdapter(core, settings, guild_ready_timeout=0.05)
            with pytest.raises(ConfigError) as caught:
                await adapter.prepare()
        finally:
            await core.close()

    assert caught.value.code == "platform_unreachable" and dc.api_base in render_error(caught.value, "en")
    assert adapter.client.is_closed()


async def test_sdbot_run_serves_discord_until_stopped(tmp_path: Path) -> None:
    async with fake_discord() as dc:
        settings = make_settings(tmp_path / "db", discord_bot_token=TOKEN)
        stop = asyncio.Event()
        task = asyncio.create_task(runner.run(settings, stop))
        await dc.wait_for(lambda: dc.commands and dc.is_connected)
        rec = await dc.invoke_command("draw", {"prompt": "a placeholder cat", "size": "768x768"})
        await dc.wait_for(lambda: rec.original and rec.original.attachments, timeout=15)
        stop.set()
        assert await asyncio.wait_for(task, 10) == 0
        await dc.wait_for(lambda: not dc.is_connected)


async def test_interactions_before_start_wait_then_hear_that_the_bot_is_starting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("adapters.discord.handlers.START_WAIT", 0.05)
    async with fake_discord() as dc:
        async with running_bot(dc, tmp_path / "db"):
            pass  # the first run syncs the commands
        settings = make_settings(tmp_path / "db", discord_bot_token=TOKEN)
        core = await Core.open(settings, GatedBackend())
        adapter = DiscordAdapter(core, settings, guild_ready_timeout=0.05)
        try:
            await adapter.prepare()
            rec = await dc.invoke_command("draw", {"prompt": "a cat"}, locale="zh-CN")
            message = await dc.wait_for(lambda: rec.original)
        finally:
            await adapter.stop()
            await core.close()

    assert message.ephemeral and message.content == t("zh", "discord.starting")


async def test_tokens_never_reach_the_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    redact.install()  # what `sdbot run` does at start
    caplog.set_level(logging.DEBUG)
    async with fake_discord() as dc, running_bot(dc, tmp_path / "db") as bot:
        rec = await dc.invoke_command("draw", {"prompt": "a cat"})
        await bot.delivered(rec)

    assert "/webhooks/" in caplog.text and "/interactions/" in caplog.text  # discord.py did log the URLs
    assert TOKEN not in caplog.text and rec.token not in caplog.text


def test_batches_respect_the_count_and_the_request_size() -> None:
    uploads = [Upload(f"{i}.png", b"x" * size) for i, size in enumerate([4, 4, 4, 9, 1])]
    assert [[u.filename for u in group] for group in batches(uploads, max_files=2, max_bytes=10)] == [
        ["0.png", "1.png"],
        ["2.png"],
        ["3.png", "4.png"],
    ]
    eleven = [Upload(f"{i}.png", b"x") for i in range(11)]
    assert [len(group) for group in batches(eleven)] == [10, 1]


def test_the_route_survives_json_and_knows_when_the_token_dies() -> None:
    route = Route(1, "tok", 2, 3, None, 4, expires_at=100.0, filesize_limit=8)
    data = route.to_json()
    assert data["application_id"] == "1" and data["guild_id"] is None
    assert Route.from_json(data) == route
    assert route.token_alive(99.9) and not route.token_alive(100.0)


def test_the_summary_fits_a_message_and_shows_markdown_literally() -> None:
    request = DrawRequest(prompt="**bold** " * 400, negative_prompt="_x_ " * 300, seed=1)
    text = summary(request, "en")
    assert len(text) <= CONTENT_MAX and "\\*\\*bold\\*\\*" in text
    assert text.endswith("Seed 1 · Base · 1024x1024 · 20 steps · Euler a · CFG 5")
    short = summary(dataclasses.replace(request, prompt="cat", negative_prompt=None), "en", limit=100)
    assert short.splitlines()[0] == "cat"


async def test_jobs_finishing_while_the_bot_stops_are_resumed_at_the_next_start(tmp_path: Path) -> None:
    """A deploy (SIGTERM) while images are generating: the results that come in while the adapter stops are
    neither sent through the closed connection nor failed; the next start delivers them or tells the failure."""
    db = tmp_path / "db"
    backend = QuietBackend(hold=True)
    backend.failures["doomed"] = BackendError("backend_unavailable")
    async with fake_discord() as dc:
        settings = make_settings(db, discord_bot_token=TOKEN, backend_concurrency=2)
        core = await Core.open(settings, backend)
        adapter = DiscordAdapter(core, settings, guild_ready_timeout=0.05)
        reached = asyncio.Event()
        results = 0

        async def count(job: object, *args: object) -> None:
            nonlocal results
            results += 1
            if results == 2:
                reached.set()

        try:
            await adapter.prepare()
            await core.start()
            await adapter.start()
            ok = await dc.invoke_command("draw", {"prompt": "fine", "size": "768x768"})
            doomed = await dc.invoke_command("draw", {"prompt": "doomed", "size": "768x768"})
            await backend.wait_started(2)
            deliver, on_failed = adapter.sink.deliver, adapter.sink.on_failed

            async def deliver_seen(job: Job, generation: Generation) -> None:
                await count(job)
                await deliver(job, generation)

            async def failure_seen(job: Job, error: SdbotError, refunded: bool) -> None:
                await count(job)
                await on_failed(job, error, refunded)

            adapter.sink.deliver, adapter.sink.on_failed = deliver_seen, failure_seen  # type: ignore[method-assign]
            await adapter.stop()  # SIGTERM: the gateway and the HTTP session are closed
            backend.release()  # ... and both generations end now
            await asyncio.wait_for(reached.wait(), 10)
            await asyncio.sleep(0.2)  # what used to happen next took milliseconds: "Session is closed", failed
            assert {job.status for job in await stored_jobs_of(core)} == {"running"}
        finally:
            await core.close()

        backend = QuietBackend()
        backend.failures["doomed"] = BackendError("backend_unavailable")
        async with running_bot(dc, db, backend) as bot:
            await bot.delivered(ok)
            notice = describe_failure(BackendError("backend_unavailable"), True, "en")
            told = await dc.wait_for(lambda: doomed.original if doomed.original.content == notice else None)
            await bot.core.wait_idle()
            jobs = {job.request.prompt: job for job in await bot.jobs()}
    assert (jobs["fine"].status, jobs["fine"].charged) == ("done", 1)
    assert (jobs["doomed"].status, jobs["doomed"].error, jobs["doomed"].charged) == ("failed", "backend_unavailable", 0)
    assert told.attachments == []


async def stored_jobs_of(core: Core) -> list[Job]:
    rows = await core.storage.fetchall("SELECT id FROM jobs ORDER BY id")
    return [job for row in rows if (job := await core.get_job(row["id"])) is not None]
