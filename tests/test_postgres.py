"""PostgreSQL beyond the port's contract: several processes on one database, on a real server the tests start."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import asyncpg
import pytest

from bot.chats.refs import ChatRef, UserRef
from bot.config import Settings
from bot.core import Core
from bot.draw.request import DrawRequest
from bot.errors import ConfigError
from bot.quotas.rules import Admission, Limits
from bot.storage.postgres import PostgresStorage
from bot.storage.postgres.migrations import LATEST
from bot.storage.sqlite import SQLiteStorage
from tests.pipeline_support import GatedBackend, make_settings, open_core
from tests.postgres_support import PostgresServer
from tests.telegram_support import USER, fake_telegram
from tests.test_cli import sdbot
from tests.test_telegram_durable import confirmed
from tests.test_telegram_run import start_sdbot, telegram_env

ROOT = Path(__file__).resolve().parent.parent

# One process: open the database (migrating it if it is new) and try ``count`` admissions, ``inflight`` at once,
# of random users of one group chat against a daily limit of 10 images per user and 25 for the chat.
ADMITTER = """
import asyncio, json, random, sys
from bot.chats.refs import ChatRef, UserRef
from bot.draw.request import DrawRequest
from bot.quotas.rules import Admission, Limits
from bot.storage.postgres import PostgresStorage
from bot.storage.sqlite import SQLiteStorage

async def main(dsn, count, inflight, seed, limits):
    storage = await PostgresStorage.open(dsn)
    limits = Limits(**json.loads(limits))
    rng = random.Random(seed)
    plan = [rng.randrange(3) for _ in range(count)]
    admitted = []
    async def client():
        while plan:
            user = UserRef("telegram", str(plan.pop()))
            a = Admission(user, ChatRef("telegram", "-100", True), DrawRequest("a cat", n=1), {}, "placeholder",
                          "en", 1, False)
            job = await storage.jobs.admit(a, limits, "2027-01-15", 1_800_000_000.0)
            if job is not None:
                admitted.append(user.key)
    await asyncio.gather(*(client() for _ in range(inflight)))
    await storage.close()
    print(json.dumps(admitted))

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]))
"""


DAILY_AND_CHAT = {"daily_images": 10, "rate_per_minute": 0, "max_pending": 1_000_000, "chat_daily_images": 25}


async def _admit_in_processes(
    dsn: str, processes: int, count: int, inflight: int, limits: dict[str, int] = DAILY_AND_CHAT
) -> list[str]:
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            ADMITTER,
            dsn,
            str(count),
            str(inflight),
            str(seed),
            json.dumps(limits),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for seed in range(processes)
    ]
    admitted: list[str] = []
    for child in children:
        out, err = await asyncio.wait_for(child.communicate(), 120)
        assert child.returncode == 0, err.decode()
        admitted += json.loads(out)
    return admitted


async def test_three_processes_starting_at_once_migrate_once_and_never_overspend(
    postgres_server: PostgresServer,
) -> None:
    dsn = await postgres_server.new_database()  # empty: the three processes race to create the schema
    admitted = await _admit_in_processes(dsn, processes=3, count=1000, inflight=50)
    per_user = {user: admitted.count(user) for user in set(admitted)}
    # 3 users x 10 images would be 30, but the chat's cap of 25 comes first: exactly 25, none over 10 each.
    assert len(admitted) == 25 and all(n <= 10 for n in per_user.values()), per_user
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM jobs") == 25
        usage = await conn.fetch("SELECT scope, key, images FROM usage ORDER BY scope, key")
        assert {(r["scope"], r["key"]): r["images"] for r in usage} == {
            ("chat", "telegram:-100"): 25,
            **{("user", user): n for user, n in per_user.items()},
        }
        assert [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")] == list(
            range(1, LATEST + 1)
        )
    finally:
        await conn.close()


@pytest.mark.parametrize(
    ("limit", "each"),
    [("max_pending", 4), ("rate_per_minute", 6)],
)
async def test_three_processes_hold_the_pending_and_per_minute_limits_exactly(
    postgres_server: PostgresServer, limit: str, each: int
) -> None:
    """Nothing finishes meanwhile and all admissions fall in one minute: each of the 3 users gets exactly
    ``each`` jobs, the limit under test, across 3 processes x 1,000 attempts."""
    dsn = await postgres_server.new_database()
    await (await PostgresStorage.open(dsn)).close()
    limits = {"daily_images": 0, "rate_per_minute": 0, "max_pending": 1_000_000, "chat_daily_images": 0}
    admitted = await _admit_in_processes(dsn, processes=3, count=1000, inflight=50, limits={**limits, limit: each})
    assert {user: admitted.count(user) for user in set(admitted)} == {f"telegram:{n}": each for n in range(3)}


async def test_a_database_that_cannot_be_reached_is_db_unavailable_without_its_password(
    postgres_server: PostgresServer,
) -> None:
    dsn = f"postgresql://sdbot:hunter2-secret@127.0.0.1:{postgres_server.port}/no_such_database"
    with pytest.raises(ConfigError) as caught:
        await PostgresStorage.open(dsn)
    assert caught.value.code == "db_unavailable"
    assert "hunter2" not in str(caught.value.params) and "***@127.0.0.1" in caught.value.params["path"]


async def test_reading_only_refuses_a_database_not_yet_migrated(postgres_server: PostgresServer) -> None:
    dsn = await postgres_server.new_database()
    with pytest.raises(ConfigError) as caught:
        await PostgresStorage.open(dsn, readonly=True)
    assert caught.value.code == "db_outdated"
    storage = await PostgresStorage.open(dsn)  # the bot's start migrates it
    await storage.close()
    storage = await PostgresStorage.open(dsn, readonly=True)
    assert storage.version == LATEST
    await storage.close()


async def test_the_core_runs_jobs_on_postgresql_beside_a_second_bot(postgres_server: PostgresServer) -> None:
    """``SDBOT_DB=postgresql://...``: a /draw admitted, generated, delivered and charged through the real Core;
    a second bot on the same database is no ``db_in_use``: the queue is shared (tests/test_shared_queue.py)."""
    dsn = await postgres_server.new_database()
    settings = Settings.from_env({"SDBOT_DB": dsn}, env_file=None)
    async with open_core(settings.db) as (core, sink):  # type: ignore[arg-type]
        job = await core.submit(UserRef("telegram", "1"), ChatRef("telegram", "-100", True), "/draw a cat --n 2", {})
        await sink.wait_for("delivered", 1)
        await core.wait_idle()
        done = await core.get_job(job.id)
        assert done is not None and (done.status, done.delivered, done.charged) == ("done", 2, 2)
        second = await Core.open(make_settings(settings.db), GatedBackend())  # type: ignore[arg-type]
        try:
            await second.lock_database()
        finally:
            await second.close()


async def test_the_operators_commands_read_and_change_a_postgresql_database(postgres_server: PostgresServer) -> None:
    """``sdbot quota`` and ``sdbot stats`` on ``SDBOT_DB=postgresql://...``; the URL's password is never shown
    (the test server trusts local connections, so any password opens it)."""
    dsn = (await postgres_server.new_database()).replace("sdbot@", "sdbot:s3cret-pw@")
    env = {"SDBOT_DB": dsn}
    outdated = await asyncio.to_thread(sdbot, "quota", "show", "telegram:5", env=env)
    assert outdated.returncode == 3 and "SDBOT_DB" in outdated.stderr  # only a bot's start migrates
    storage = await PostgresStorage.open(dsn)
    await storage.close()
    changed = await asyncio.to_thread(sdbot, "quota", "set", "telegram:5", "7", env=env)
    assert changed.returncode == 0, changed.stderr
    shown = await asyncio.to_thread(sdbot, "quota", "show", "telegram:5", env=env)
    assert shown.returncode == 0 and "7" in shown.stdout, shown.stderr
    stats = await asyncio.to_thread(sdbot, "stats", env=env)
    assert stats.returncode == 0, stats.stderr
    for out in (outdated, changed, shown, stats):
        assert "s3cret-pw" not in out.stdout + out.stderr


async def _community(db: Path) -> None:
    """A SQLite community: a language, limits, a ban, a chat's cap, jobs (one a re-run of another, one queued),
    today's usage with an operator's reset, allowed channels, a held Telegram update."""
    storage = await SQLiteStorage.open(db)
    ann, bo = UserRef("telegram", "1", "en", "Ann"), UserRef("telegram", "2", None, "Bo")
    group = ChatRef("telegram", "-100", True, "Group")
    await storage.people.touch_user(ann)
    await storage.people.set_language(ann, "zh")
    await storage.quotas.set_user_limits("telegram:1", {"daily_images": 7, "rate_per_minute": None})
    await storage.quotas.set_banned("telegram:3", True)
    await storage.quotas.set_chat_limit("telegram:-100", 40)
    limits = Limits(daily_images=20, rate_per_minute=0, max_pending=10, chat_daily_images=0)
    first = await storage.jobs.admit(
        Admission(ann, group, DrawRequest("a cat", n=2), {"chat_id": -100}, "placeholder", "zh", 5, False),
        limits, "2027-01-15", 1_800_000_000.0,
    )  # fmt: skip
    assert first is not None
    await storage.jobs.claim(first.id)
    await storage.jobs.finish(first.id, delivered=2, charged=2)
    again = Admission(bo, group, DrawRequest("a cat", n=1), {}, "placeholder", "en", 6, False, parent_id=first.id)
    assert await storage.jobs.admit(again, limits, "2027-01-15", 1_800_000_001.0) is not None
    await storage.quotas.reset_usage("user", "telegram:2", "2027-01-15")  # forgiven: stays forgiven after the move
    await storage.channels.allow("discord:9", "111")
    await storage.inbox.receive("telegram", 42, '{"update_id": 42}', 1_800_000_002.0)
    await storage.close()


async def test_migrate_db_moves_a_community_into_an_empty_postgresql_database_once(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    db = tmp_path / "sdbot.db"
    await _community(db)
    dsn = await postgres_server.new_database()
    env = {"SDBOT_DB": str(db)}
    moved = await asyncio.to_thread(sdbot, "migrate-db", "--to", dsn, env=env)
    assert moved.returncode == 0, moved.stderr
    assert "2 jobs" in moved.stdout and "1 platform events" in moved.stdout

    storage = await PostgresStorage.open(dsn)
    try:
        assert await storage.people.language_choices() == {"telegram:1": "zh"}
        limits = Limits(daily_images=20, rate_per_minute=0, max_pending=10, chat_daily_images=0)
        ann = await storage.quotas.state("telegram:1", "telegram:-100", limits, "2027-01-15", 1_800_000_100.0)
        assert (ann.daily_images, ann.used, ann.chat_daily_images, ann.chat_used) == (7, 2, 40, 3)
        bo = await storage.quotas.state("telegram:2", "telegram:-100", limits, "2027-01-15", 1_800_000_100.0)
        assert bo.used == 0 and bo.pending == 1  # the reset is kept; the queued re-run is still queued
        banned = await storage.quotas.state("telegram:3", "telegram:-100", limits, "2027-01-15", 1_800_000_100.0)
        assert banned.banned
        jobs = [await storage.jobs.get(job_id) for job_id in (1, 2)]
        assert [(j.id, j.status, j.parent_id) for j in jobs if j] == [(1, "done", None), (2, "queued", 1)]
        assert await storage.channels.allowed("discord:9") == ["111"]
        assert await storage.inbox.unhandled("telegram") == 1
        newcomer = UserRef("telegram", "5")
        admission = Admission(newcomer, ChatRef("telegram", "5", False), DrawRequest("x"), {}, "p", "en", 1, False)
        new = await storage.jobs.admit(admission, limits, "2027-01-16", 1_800_090_000.0)
        assert new is not None and new.id == 3  # ids go on after the moved ones
    finally:
        await storage.close()

    again = await asyncio.to_thread(sdbot, "migrate-db", "--to", dsn, "--lang", "zh", env=env)
    assert again.returncode == 3 and "--to" in again.stderr and "空数据库" in again.stderr
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT count(*) FROM jobs") == 3  # nothing copied twice
    finally:
        await conn.close()


async def test_migrate_db_refuses_a_running_bots_file_and_a_target_that_is_not_postgresql(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    db = tmp_path / "sdbot.db"
    await _community(db)
    env = {"SDBOT_DB": str(db)}
    not_postgres = await asyncio.to_thread(sdbot, "migrate-db", "--to", str(tmp_path / "other.db"), env=env)
    assert not_postgres.returncode == 3 and "--to" in not_postgres.stderr and "PostgreSQL" in not_postgres.stderr
    storage = await SQLiteStorage.open(db)
    await storage.hold()  # a bot runs on it
    try:
        dsn = await postgres_server.new_database()
        busy = await asyncio.to_thread(sdbot, "migrate-db", "--to", dsn, env=env)
        assert busy.returncode == 3 and "SDBOT_DB" in busy.stderr, busy.stderr
    finally:
        await storage.close()
    conn = await asyncpg.connect(dsn)
    try:
        assert await conn.fetchval("SELECT to_regclass('jobs') IS NULL")  # refused before touching the target
    finally:
        await conn.close()


async def test_sdbot_run_on_postgresql_draws_and_answers_a_command_it_was_killed_before_answering(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    """The real ``sdbot run`` (python-telegram-bot against the fake Bot API) with ``SDBOT_DB=postgresql://...``:
    a /draw is delivered, and a command whose answer a SIGKILL cut short is answered after the restart, once,
    from the inbox kept in PostgreSQL."""
    async with fake_telegram() as tg:
        # A lease of 3 s: what the killed process held (the update, as any job) is free for another 3 s on.
        env = {**telegram_env(tg, tmp_path), "SDBOT_DB": await postgres_server.new_database(), "SDBOT_JOB_LEASE": "3"}
        tg.fail_next("sendMessage", retry_after=30)  # the /help answer waits: the bot is killed meanwhile
        first = await start_sdbot(env, tmp_path)
        try:
            await tg.wait_for("deleteWebhook", timeout=30)
            update = tg.send_text(USER, "/help")
            await tg.wait_for("sendMessage", ok=False, timeout=20)
            await confirmed(tg, update["update_id"])
        finally:
            first.send_signal(signal.SIGKILL)
            await asyncio.wait_for(first.communicate(), 30)
        assert tg.texts(USER) == []

        second = await start_sdbot(env, tmp_path)
        try:
            await tg.wait_for("sendMessage", timeout=30)  # /help, answered from the inbox
            tg.send_text(USER, "/draw a red kite")
            await tg.wait_for("sendPhoto", timeout=30)
        finally:
            second.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(second.communicate(), 30)
        assert second.returncode == 0, err.decode()
        assert "postgresql://" not in err.decode() or "***@" in err.decode()
    conn = await asyncpg.connect(env["SDBOT_DB"])
    try:
        assert await conn.fetchval("SELECT count(*) FROM jobs WHERE status = 'done'") == 1
        assert await conn.fetchval("SELECT count(*) FROM inbox WHERE handled_at IS NULL") == 0
    finally:
        await conn.close()
