"""Retention: finished jobs of old quota days are deleted in batches, by the bot and by ``sdbot prune``; queued
and running jobs, today and every day inside the window stay exact, and the usage counters keep equal to the
sum of ``jobs.charged``."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.chats.refs import ChatRef, UserRef
from bot.config import Settings
from bot.core import Core
from bot.errors import BackendError, SdbotError
from bot.jobs import retention
from bot.jobs.retention import Pruner, cutoff_day
from bot.storage.sqlite import SQLiteStorage
from tests.pipeline_support import WAIT_LIMIT, GatedBackend, RecordingSink, make_settings, usage_matches_jobs
from tests.test_cli import sdbot

UTC = ZoneInfo("UTC")
DAY = 86400.0
ANN, BO = UserRef("telegram", "1"), UserRef("telegram", "2")
GROUP = ChatRef("telegram", "-5", True)
SMALL = "--size 768x768"


async def add_job(
    store: SQLiteStorage,
    day: str,
    status: str = "done",
    *,
    user: str = "telegram:1",
    chat: str = "telegram:-5",
    group: bool = True,
    n: int = 1,
    parent: int | None = None,
) -> int:
    """A job admitted (charged) on ``day`` and taken to ``status`` the way the bot does: a failed or
    cancelled one is refunded, so its counters go back down (to a row at 0)."""
    row = await store.fetchone(
        "INSERT INTO jobs (user_key, platform, chat_key, group_chat, backend, request, route, lang, status, images,"
        " charged, quota_day, seed, parent_id, created_at) "
        "VALUES (?, 'telegram', ?, ?, 'b', '{\"prompt\":\"x\"}', '{}', 'en', 'queued', ?, ?, ?, 1, ?, 0) RETURNING id",
        (user, chat, int(group), n, n, day, parent),
    )
    assert row is not None
    refund = status in ("failed", "cancelled")
    await store.execute(
        "UPDATE jobs SET status = ?, charged = CASE WHEN ? THEN 0 ELSE charged END WHERE id = ?",
        (status, int(refund), row[0]),
    )
    return int(row[0])


async def usage(store: SQLiteStorage) -> dict[tuple[str, str, str], int]:
    return {(r[0], r[1], r[2]): r[3] for r in await store.fetchall("SELECT scope, key, day, images FROM usage")}


async def test_only_finished_jobs_of_days_before_the_window_go(store: SQLiteStorage) -> None:
    old, older, cutoff, today = "2026-01-02", "2026-01-01", "2026-03-01", "2026-04-10"
    done = await add_job(store, older, n=2)
    failed = await add_job(store, older, "failed")
    cancelled = await add_job(store, older, "cancelled", user="telegram:2")
    queued = await add_job(store, older, "queued", user="telegram:2")  # unfinished: never deleted
    running = await add_job(store, old, "running", group=False, chat="telegram:1")
    again_old = await add_job(store, old, user="telegram:2", parent=done)  # child and parent both go
    again_of_running = await add_job(store, old, parent=running)
    kept = await add_job(store, cutoff, parent=done)  # inside the window; its parent goes
    current = await add_job(store, today, n=3, parent=kept)
    before = await usage(store)

    assert await store.jobs.count_finished_before(cutoff) == 5
    assert await retention.prune(store, cutoff, batch=2) == 5
    assert await retention.prune(store, cutoff, batch=2) == 0

    left = {r["id"]: r["parent_id"] for r in await store.fetchall("SELECT id, parent_id FROM jobs")}
    assert left == {queued: None, running: None, kept: None, current: kept}
    assert {failed, cancelled, again_old, again_of_running}.isdisjoint(left)
    assert await store.fetchall("PRAGMA foreign_key_check") == []
    after = await usage(store)
    # The days kept are untouched, the counters of the days pruned follow what is left of them.
    assert {k: v for k, v in after.items() if k[2] >= cutoff} == {k: v for k, v in before.items() if k[2] >= cutoff}
    assert {k: v for k, v in after.items() if k[2] < cutoff} == {
        ("user", "telegram:2", older): 1,  # the queued job's image
        ("chat", "telegram:-5", older): 1,
        ("user", "telegram:1", old): 1,  # the running job's
    }
    assert await usage_matches_jobs(store) == []


async def test_the_parent_lookup_of_a_deletion_uses_an_index(store: SQLiteStorage) -> None:
    # With foreign keys on, SQLite looks for children of every deleted job; without an index on parent_id that
    # is a scan of the whole table per row (seconds per batch on a large database).
    plan = await store.fetchall("EXPLAIN QUERY PLAN SELECT 1 FROM jobs WHERE parent_id = ?", (1,))
    assert any("jobs_parent" in row[3] for row in plan), [tuple(r) for r in plan]
    assert (await store.fetchone("PRAGMA foreign_keys"))[0] == 1


def test_the_cutoff_is_a_quota_day_in_the_quota_time_zone() -> None:
    now = 1772382600.0  # 2026-03-01 16:30 UTC = 2026-03-02 00:30 in Shanghai
    assert cutoff_day(now, 1, UTC) == "2026-02-28"
    assert cutoff_day(now, 1, ZoneInfo("Asia/Shanghai")) == "2026-03-01"
    assert cutoff_day(now, 90, UTC) == "2025-12-01"


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_the_bot_prunes_at_start_and_again_later(tmp_path: Path) -> None:
    db = tmp_path / "sdbot.db"
    clock = Clock(time.time() - 100 * DAY)
    backend = GatedBackend()
    backend.failures["broken"] = BackendError("backend_unavailable")
    settings = make_settings(db, rate_per_minute=0, max_pending=5)
    async with started(settings, backend, clock) as (core, _):
        drawn = await core.submit(ANN, GROUP, f"a cat --n 2 {SMALL}", {})
        refunded = await core.submit(BO, GROUP, f"broken {SMALL}", {})
        await core.wait_idle()
        assert core.pruner.runs == 1  # at start, with nothing to prune

    clock.now += 100 * DAY
    async with started(settings, GatedBackend(), clock) as (core, sink):
        await asyncio.wait_for(core.pruner.wait_runs(1), WAIT_LIMIT)
        assert await core.get_job(drawn.id) is None and await core.get_job(refunded.id) is None
        with pytest.raises(SdbotError) as gone:  # the Again button under the old picture
            await core.again(drawn.id, ANN, {})
        assert gone.value.code == "job_not_found"
        fresh = await core.submit(ANN, GROUP, f"a dog {SMALL}", {})
        await core.wait_idle()
        assert [job_id for job_id, _ in sink.of("delivered")] == [fresh.id]
        state = await core.quotas.state(ANN.key, GROUP.key)
        assert (state.used, state.chat_used) == (1, 1)
        assert await usage(core.storage) == {
            ("user", ANN.key, core.quotas.today()): 1,
            ("chat", GROUP.key, core.quotas.today()): 1,
        }
        assert await usage_matches_jobs(core.storage) == []

    # Now the background task's next run: ten days later, with 5 days of retention, today's job goes too.
    pruner_store = await SQLiteStorage.open(db)
    try:
        pruner = Pruner(pruner_store, 5, UTC, clock, interval=0.01, pause=0)
        pruner.start()
        await asyncio.wait_for(pruner.wait_runs(1), WAIT_LIMIT)
        assert tuple(await pruner_store.fetchone("SELECT count(*) FROM jobs")) == (1,)
        clock.now += 10 * DAY
        await asyncio.wait_for(pruner.wait_runs(pruner.runs + 2), WAIT_LIMIT)
        await pruner.stop()
        assert tuple(await pruner_store.fetchone("SELECT count(*) FROM jobs")) == (0,)
        assert await usage(pruner_store) == {}
    finally:
        await pruner_store.close()


async def test_retention_zero_keeps_everything(tmp_path: Path) -> None:
    db = tmp_path / "sdbot.db"
    clock = Clock(time.time() - 1000 * DAY)
    settings = make_settings(db, job_retention_days=0)
    async with started(settings, GatedBackend(), clock) as (core, _):
        job = await core.submit(ANN, GROUP, f"a cat {SMALL}", {})
        await core.wait_idle()
    clock.now += 1000 * DAY
    async with started(settings, GatedBackend(), clock) as (core, _):
        assert core.pruner.runs == 0
        assert (await core.get_job(job.id)) is not None


@asynccontextmanager
async def started(
    settings: Settings, backend: GatedBackend, clock: Callable[[], float]
) -> AsyncIterator[tuple[Core, RecordingSink]]:
    """A started Core on ``settings`` with ``clock`` and one RecordingSink for Telegram, once its start-up
    pruning ran; closed afterwards."""
    core = await Core.open(settings, backend, clock=clock)
    sink = RecordingSink()
    core.register_sink("telegram", sink)
    try:
        await core.start()
        if core.pruner.days:
            await asyncio.wait_for(core.pruner.wait_runs(1), WAIT_LIMIT)
        yield core, sink
    finally:
        await core.close()


# sdbot prune -----------------------------------------------------------------------------------------


def test_sdbot_prune_counts_then_deletes(tmp_path: Path) -> None:
    db = tmp_path / "sdbot.db"
    now = time.time()
    old, today = cutoff_day(now, 200, UTC), cutoff_day(now, 0, UTC)

    async def fill() -> None:
        store = await SQLiteStorage.open(db)
        try:
            await add_job(store, old)
            await add_job(store, old, "cancelled")
            await add_job(store, old, "running")
            await add_job(store, today, n=2)
        finally:
            await store.close()

    asyncio.run(fill())
    env = {"SDBOT_DB": str(db)}
    window = cutoff_day(time.time(), 90, UTC)

    dry = sdbot("prune", "--dry-run", env=env, cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert "Would delete 2 finished jobs" in dry.stdout and window in dry.stdout
    assert jobs_in(db) == 4

    forever = sdbot("prune", env={**env, "SDBOT_JOB_RETENTION_DAYS": "0"}, cwd=tmp_path)
    assert forever.returncode == 0 and "SDBOT_JOB_RETENTION_DAYS" in forever.stdout
    assert jobs_in(db) == 4

    done = sdbot("prune", "--lang", "zh", env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "已删除" in done.stdout and "2" in done.stdout and window in done.stdout
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT quota_day, status FROM jobs ORDER BY id").fetchall() == [
            (old, "running"),
            (today, "done"),
        ]
        assert conn.execute("SELECT scope, day, images FROM usage ORDER BY scope, day").fetchall() == [
            ("chat", old, 1),
            ("chat", today, 2),
            ("user", old, 1),
            ("user", today, 2),
        ]
    conn.close()


@pytest.mark.parametrize("days", ["0", "-3", "soon"])
def test_sdbot_prune_refuses_a_bad_days_value(days: str, tmp_path: Path) -> None:
    out = sdbot("prune", f"--days={days}", env={"SDBOT_DB": str(tmp_path / "sdbot.db")}, cwd=tmp_path)
    assert out.returncode == 2 and "sdbot prune [--days N] [--dry-run]" in out.stderr
    assert "Traceback" not in out.stderr


def test_an_invalid_retention_setting_names_the_variable(tmp_path: Path) -> None:
    out = sdbot("prune", env={"SDBOT_JOB_RETENTION_DAYS": "a while", "SDBOT_LANG": "zh"}, cwd=tmp_path)
    assert out.returncode == 3 and "SDBOT_JOB_RETENTION_DAYS" in out.stderr


def jobs_in(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        count = int(conn.execute("SELECT count(*) FROM jobs").fetchone()[0])
    conn.close()
    return count
