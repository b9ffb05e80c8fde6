"""The daily limit holds across three OS processes admitting at once on one database file."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from bot.storage.sqlite import MIGRATIONS
from tests.pipeline_support import Worker


def test_three_processes_admit_exactly_the_daily_limit_together(tmp_path: Path) -> None:
    db = tmp_path / "sdbot.db"
    env = {"SDBOT_DB": str(db), "SDBOT_DAILY_IMAGES": "10", "SDBOT_RATE_PER_MINUTE": "0", "SDBOT_MAX_PENDING": "5000"}
    # The processes also create and migrate the new file at the same moment.
    workers = [Worker(env, "admit", "--count", "334", "--user", "telegram:1") for _ in range(3)]
    try:
        for worker in workers:
            assert worker.readline() == "ready"
        for worker in workers:
            worker.send("go")
        results = [json.loads(worker.readline()) for worker in workers]
        for worker in workers:
            assert worker.proc.wait() == 0, worker.error_output()
    finally:
        for worker in workers:
            worker.close()

    assert [r["unexpected"] for r in results] == [[], [], []]
    assert sum(r["images"] for r in results) == 10
    assert sum(r["refused"].get("quota_daily", 0) for r in results) == 3 * 334 - 10
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*), sum(charged) FROM jobs").fetchone() == (10, 10)
        assert conn.execute("SELECT images FROM usage WHERE scope = 'user'").fetchall() == [(10,)]
        assert conn.execute("SELECT count(*) FROM schema_migrations").fetchone() == (len(MIGRATIONS),)
    conn.close()
