"""PostgreSQL beyond the port's contract: several processes on one database, on a real server the tests start."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import asyncpg
import pytest

from bot.errors import ConfigError
from bot.storage.postgres import PostgresStorage
from tests.postgres_support import PostgresServer

ROOT = Path(__file__).resolve().parent.parent

# One process: open the database (migrating it if it is new) and try ``count`` admissions, ``inflight`` at once,
# of random users of one group chat against a daily limit of 10 images per user and 25 for the chat.
ADMITTER = """
import asyncio, json, random, sys
from bot.chats.refs import ChatRef, UserRef
from bot.draw.request import DrawRequest
from bot.quotas.rules import Admission, Limits
from bot.storage.postgres import PostgresStorage

async def main(dsn, count, inflight, seed):
    storage = await PostgresStorage.open(dsn)
    limits = Limits(daily_images=10, rate_per_minute=0, max_pending=1_000_000, chat_daily_images=25)
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

asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])))
"""


async def _admit_in_processes(dsn: str, processes: int, count: int, inflight: int) -> list[str]:
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            ADMITTER,
            dsn,
            str(count),
            str(inflight),
            str(seed),
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
        assert [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")] == [1]
    finally:
        await conn.close()


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
    assert storage.version == 1
    await storage.close()
