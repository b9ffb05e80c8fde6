"""One bot process per database: a second one is refused with ``db_in_use`` (exit 3 from ``sdbot run``, before it
connects anywhere), the lock goes with the process however it ends, and the admin commands run beside it."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path

import pytest

from bot.core import Core
from bot.errors import ConfigError
from bot.messages.i18n import render_error
from bot.process.dblock import DatabaseLock, lock_path
from tests.fakes.telegram import FakeTelegram
from tests.pipeline_support import GatedBackend, RecordingSink, Worker, make_settings, open_core
from tests.telegram_support import fake_telegram
from tests.test_cli import sdbot
from tests.test_telegram_run import start_sdbot


async def start_core(db: Path) -> Core:
    core = await Core.open(make_settings(db), GatedBackend())
    core.register_sink("telegram", RecordingSink())
    try:
        await core.start()
    except BaseException:
        await core.close()
        raise
    return core


def test_a_database_whose_jobs_another_process_runs_is_refused_until_it_dies(tmp_path: Path) -> None:
    db = tmp_path / "sdbot.db"
    env = {"SDBOT_DB": str(db), "SDBOT_RATE_PER_MINUTE": "0", "SDBOT_MAX_PENDING": "5"}
    bot = Worker(env, "crash")  # a real bot process: a started Core, jobs running
    try:
        bot.read_until("ready")
        with pytest.raises(ConfigError) as refused:
            asyncio.run(start_core(db))
        assert (refused.value.code, refused.value.variable) == ("db_in_use", "SDBOT_DB")
        for lang in ("en", "zh"):
            message = render_error(refused.value, lang)
            assert "SDBOT_DB" in message and str(db) in message and str(bot.proc.pid) in message

        # The operator's commands open the same file beside the running bot.
        for command in (("quota", "show", "telegram:1"), ("stats",), ("prune", "--dry-run")):
            out = sdbot(*command, env={"SDBOT_DB": str(db)}, cwd=tmp_path)
            assert out.returncode == 0, (command, out.stderr)

        os.kill(bot.proc.pid, signal.SIGKILL)  # no clean-up runs: the kernel releases the lock
        assert bot.proc.wait() == -signal.SIGKILL
    finally:
        bot.close()
    assert lock_path(db).exists()

    async def restart() -> None:
        core = await start_core(db)
        try:
            await core.wait_idle()  # it took over the killed bot's jobs
            assert await core.jobs.unfinished() == []
        finally:
            await core.close()

    asyncio.run(restart())


async def test_a_closed_core_releases_the_database(tmp_path: Path) -> None:
    db = tmp_path / "sdbot.db"
    async with open_core(db) as (core, _):
        await core.lock_database()  # taken by start already: again is a no-op
        second = await Core.open(make_settings(db), GatedBackend())
        try:
            with pytest.raises(ConfigError) as refused:
                await second.lock_database()
            assert refused.value.code == "db_in_use" and str(os.getpid()) in render_error(refused.value, "en")
            assert await second.jobs.unfinished() == []  # an unstarted Core on the same file still reads it
        finally:
            await second.close()
    async with open_core(db):  # the next start finds the lock free
        pass


async def test_a_second_sdbot_run_stops_before_connecting_anywhere(tmp_path: Path) -> None:
    async with fake_telegram() as tg:
        await second_run_is_refused(tg, tmp_path)


async def second_run_is_refused(tg: FakeTelegram, tmp_path: Path) -> None:
    env = {"TELEGRAM_BOT_TOKEN": tg.token, "TELEGRAM_API_URL": tg.url, "SDBOT_DB": str(tmp_path / "sdbot.db")}
    first = await start_sdbot(env, tmp_path)
    try:
        await tg.wait_for("deleteWebhook", timeout=20)  # running: polling starts next
        second = await start_sdbot({**env, "SDBOT_LANG": "zh"}, tmp_path)
        _, err = await asyncio.wait_for(second.communicate(), 30)
        assert second.returncode == 3, err.decode()
        message = err.decode()
        assert "SDBOT_DB" in message and str(first.pid) in message and "Traceback" not in message
        assert len(tg.calls_to("getMe")) == 1  # the second never signed in to Telegram
    finally:
        first.kill()  # SIGKILL: nothing releases the lock but the kernel
        await asyncio.wait_for(first.communicate(), 30)

    third = await start_sdbot(env, tmp_path)
    try:
        await tg.wait_for("deleteWebhook", timeout=20)
    finally:
        third.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(third.communicate(), 30)
    assert third.returncode == 0, err.decode()


async def refusal(db: Path) -> str | None:
    """The code a second bot on ``db`` is refused with, or None when it started (then it is closed again)."""
    try:
        core = await start_core(db)
    except ConfigError as exc:
        return exc.code
    await core.close()
    return None


def test_the_lock_holds_however_the_database_is_reached(tmp_path: Path) -> None:
    """A second bot that reaches the same file by another spelling must not take over the first one's jobs."""
    db = tmp_path / "data" / "sdbot.db"
    db.parent.mkdir()
    (tmp_path / "file-link.db").symlink_to(db)
    (tmp_path / "dir-link").symlink_to(db.parent, target_is_directory=True)
    (tmp_path / "sub").mkdir()
    spellings = {
        "symlink to the file": tmp_path / "file-link.db",
        "symlink to its folder": tmp_path / "dir-link" / "sdbot.db",
        "relative path": Path(os.path.relpath(db)),
        "..": tmp_path / "sub" / ".." / "data" / "sdbot.db",
    }
    bot = Worker({"SDBOT_DB": str(db)}, "crash")
    try:
        bot.read_until("ready")
        for how, path in spellings.items():
            assert asyncio.run(asyncio.wait_for(refusal(path), 30)) == "db_in_use", how
    finally:
        os.kill(bot.proc.pid, signal.SIGKILL)
        bot.proc.wait()
        bot.close()
    assert sorted(p.name for p in db.parent.iterdir() if p.suffix == ".lock") == ["sdbot.db.lock"]


def test_a_database_with_hard_links_is_warned_about(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Hard links are the one spelling the lock cannot join (and SQLite does not support): the operator hears
    of it at start instead of finding a second bot running."""
    db = tmp_path / "sdbot.db"
    db.write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="bot.process.dblock"):
        DatabaseLock.acquire(db).release()
        assert caplog.records == []
        os.link(db, tmp_path / "other-name.db")
        DatabaseLock.acquire(db).release()
    [warning] = caplog.records
    assert "2 hard links" in warning.getMessage() and str(db) in warning.getMessage()
