"""``sdbot run`` with a damaged database: refused with ``db_unavailable`` (exit 3) before it signs in anywhere,
whatever the damage, as the real executable against the fake Bot API."""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import sys
import time
from pathlib import Path

import pytest

from bot.errors import ConfigError
from bot.storage.sqlite import SQLiteStorage
from tests.fakes.telegram import FakeTelegram

SDBOT = Path(sys.executable).parent / "sdbot"


async def run_bot(db: Path, tg: FakeTelegram, cwd: Path) -> tuple[int | None, str]:
    """``sdbot run`` against ``tg``; a bot still running after 5 s is stopped (returncode None)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SDBOT_", "TELEGRAM_", "DISCORD_"))}
    env.update(SDBOT_DB=str(db), TELEGRAM_BOT_TOKEN=tg.token, TELEGRAM_API_URL=tg.url)
    process = await asyncio.create_subprocess_exec(
        str(SDBOT), "run", cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        _, err = await asyncio.wait_for(process.communicate(), 5)
        return process.returncode, err.decode()
    except TimeoutError:
        process.terminate()
        _, err = await process.communicate()
        return None, err.decode()


async def sdbot_database(path: Path, jobs: int = 300) -> None:
    """A real sdbot database (every migration) holding ``jobs`` finished jobs, in one file (no WAL)."""
    store = await SQLiteStorage.open(path)
    await store.close()
    con = sqlite3.connect(path)
    now = time.time()
    con.executemany(
        "INSERT INTO jobs (user_key, platform, chat_key, group_chat, backend, request, route, lang, status, images,"
        " charged, quota_day, seed, created_at) VALUES (?, 'telegram', ?, 0, 'placeholder', ?, '{}', 'en', 'done',"
        " 1, 1, '2026-12-01', ?, ?)",
        [(f"telegram:{i % 50}", f"telegram:{i % 50}", '{"prompt": "a cat"}', i, now - i) for i in range(jobs)],
    )
    con.commit()
    con.execute("PRAGMA journal_mode = DELETE")
    con.close()


def overwrite_pages(path: Path, pages: list[int]) -> None:
    with path.open("r+b") as fh:
        for page in pages:
            fh.seek(page * 4096)
            fh.write(random.Random(page).randbytes(4096))


def unfinished_job_missing_from_its_table(path: Path) -> None:
    """An index entry for a job whose row is gone: every page is well formed (``PRAGMA quick_check`` passes),
    but the start's look for unfinished jobs reads "database disk image is malformed". A backup copied from
    a live database without its -wal file can look like this."""
    con = sqlite3.connect(path, isolation_level=None)
    con.execute(
        "INSERT INTO jobs (user_key, platform, chat_key, group_chat, backend, request, route, lang, status, images,"
        " charged, quota_day, seed, created_at) VALUES ('telegram:1', 'telegram', 'telegram:1', 0, 'placeholder',"
        " '{}', '{}', 'en', 'running', 1, 0, '2026-12-01', 1, 0)"
    )
    (sql,) = con.execute("SELECT sql FROM sqlite_master WHERE name = 'jobs_unfinished'").fetchone()
    con.execute("PRAGMA writable_schema = ON")  # the index, as SQLite sees it, holds no rows for a moment
    con.execute(
        "UPDATE sqlite_master SET sql = ? WHERE name = 'jobs_unfinished'", (sql.split(" WHERE ")[0] + " WHERE 0",)
    )
    con.close()
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("DELETE FROM jobs WHERE status = 'running'")  # its index entry stays
    con.execute("PRAGMA writable_schema = ON")
    con.execute("UPDATE sqlite_master SET sql = ? WHERE name = 'jobs_unfinished'", (sql,))
    con.close()
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA quick_check").fetchall() == [("ok",)]
    with pytest.raises(sqlite3.DatabaseError, match="malformed"):
        con.execute("SELECT * FROM jobs WHERE status IN ('queued', 'running')").fetchall()
    con.close()


@pytest.mark.parametrize("damage", ["pages overwritten", "index entry without its row"])
async def test_a_damaged_database_stops_sdbot_run_before_it_signs_in(damage: str, tmp_path: Path) -> None:
    db = tmp_path / "sdbot.db"
    await sdbot_database(db)
    if damage == "pages overwritten":
        overwrite_pages(db, [3, 7])
    else:
        unfinished_job_missing_from_its_table(db)
    async with FakeTelegram() as tg:
        code, err = await run_bot(db, tg, tmp_path)
        assert tg.calls == [], [c.method for c in tg.calls]  # not even getMe
    assert code == 3, err
    assert f"The database {db} (SDBOT_DB) cannot be used" in err and "Traceback" not in err


async def test_a_database_error_later_in_the_start_is_db_unavailable_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever the checks at open miss (a disk failing between them and the start's first query): the same
    clean stop, exit 3, with the platform's connection closed, not a traceback."""
    from adapters import runner
    from bot.config import Settings
    from bot.errors import ConfigError
    from bot.storage import StorageError
    from bot.storage.sqlite.jobs import SQLiteJobs

    async def failing(self: SQLiteJobs) -> list[object]:
        raise StorageError("disk I/O error")

    monkeypatch.setattr(SQLiteJobs, "unfinished", failing)
    async with FakeTelegram() as tg:
        env = {"SDBOT_DB": str(tmp_path / "sdbot.db"), "TELEGRAM_BOT_TOKEN": tg.token, "TELEGRAM_API_URL": tg.url}
        with pytest.raises(ConfigError) as caught:
            await runner.run(Settings.from_env(env, env_file=None), asyncio.Event())
    assert (caught.value.code, caught.value.params["reason"]) == ("db_unavailable", "disk I/O error")


async def test_a_file_too_large_to_check_at_start_is_checked_in_the_background(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The start does not wait for a whole-file check of a long history: it runs after, on the checkpointer's
    connection, and damage found there is logged for the operator (the next start refuses the file if small)."""
    db = tmp_path / "sdbot.db"
    await sdbot_database(db)
    unfinished_job_missing_from_its_table(db)
    store = await SQLiteStorage.open(db)
    try:
        await store.check(at_once_up_to=0)  # returns at once: the check runs behind it
        checkpointer = store._checkpointer
        assert checkpointer is not None and checkpointer._verifying is not None
        with caplog.at_level("ERROR"):
            await asyncio.wait_for(checkpointer._verifying, 30)
        assert "is damaged" in caplog.text and str(db) in caplog.text
        with pytest.raises(ConfigError):
            await store.check()  # small enough: checked at once, refused
    finally:
        await store.close()
