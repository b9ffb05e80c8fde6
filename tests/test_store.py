"""The database: WAL, migrations applied forward once, newer schemas refused, usage counters kept by triggers."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from bot.errors import ConfigError
from bot.i18n import render_error
from bot.store import LAZY_DELAY, MIGRATIONS, WAKE_AT_ONCE, Migration, Statement, Store
from tests.loop_support import PassCounter
from tests.pipeline_support import usage_matches_jobs

# A migration from a future sdbot, one past the latest this one knows.
LATEST = MIGRATIONS[-1].version
NEXT = Migration(LATEST + 1, "users get a note", ("ALTER TABLE users ADD COLUMN note TEXT",))
ADD_USER = "INSERT INTO users (key, platform, user_id, created_at, updated_at) VALUES (?, 'telegram', ?, 0, 0)"


async def test_open_creates_a_wal_database_at_the_latest_schema(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "deep" / "dir" / "sdbot.db")
    try:
        assert store.version == MIGRATIONS[-1].version
        assert (await store.fetchone("PRAGMA journal_mode"))[0] == "wal"
        assert (await store.fetchone("PRAGMA busy_timeout"))[0] >= 1000
        tables = {r[0] for r in await store.fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"users", "chats", "jobs", "usage", "schema_migrations"} <= tables
    finally:
        await store.close()


async def test_migrations_apply_forward_once_and_keep_data(tmp_path: Path) -> None:
    db = tmp_path / "sdbot.db"
    store = await Store.open(db)
    await store.execute(
        "INSERT INTO users (key, platform, user_id, created_at, updated_at) "
        "VALUES ('telegram:1', 'telegram', '1', 0, 0)"
    )
    await store.close()

    store = await Store.open(db, migrations=(*MIGRATIONS, NEXT))
    try:
        assert store.version == LATEST + 1
        row = await store.fetchone("SELECT key, note FROM users")
        assert tuple(row) == ("telegram:1", None)
    finally:
        await store.close()

    store = await Store.open(db, migrations=(*MIGRATIONS, NEXT))  # reopening applies nothing again
    try:
        versions = [r[0] for r in await store.fetchall("SELECT version FROM schema_migrations ORDER BY version")]
        assert versions == list(range(1, LATEST + 2))
    finally:
        await store.close()


async def test_a_database_from_a_newer_sdbot_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "sdbot.db"
    await (await Store.open(db, migrations=(*MIGRATIONS, NEXT))).close()
    with pytest.raises(ConfigError) as caught:
        await Store.open(db)
    assert caught.value.code == "db_too_new"
    assert caught.value.variable == "SDBOT_DB"
    for lang in ("en", "zh"):
        text = render_error(caught.value, lang)
        assert "SDBOT_DB" in text and str(db) in text and str(LATEST + 1) in text


async def test_a_failed_migration_leaves_the_database_as_it_was(tmp_path: Path) -> None:
    db = tmp_path / "sdbot.db"
    await (await Store.open(db)).close()
    broken = Migration(LATEST + 1, "broken", ("ALTER TABLE users ADD COLUMN note TEXT", "THIS IS NOT SQL"))
    with pytest.raises(ConfigError) as caught:
        await Store.open(db, migrations=(*MIGRATIONS, broken))
    assert caught.value.code == "db_unavailable"
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT max(version) FROM schema_migrations").fetchone()[0] == LATEST
        columns = [r[1] for r in conn.execute("PRAGMA table_info(users)")]
    assert "note" not in columns


async def test_an_unusable_path_is_a_configuration_error_naming_sdbot_db(tmp_path: Path) -> None:
    (tmp_path / "a-directory.db").mkdir()
    with pytest.raises(ConfigError) as caught:
        await Store.open(tmp_path / "a-directory.db")
    assert caught.value.code == "db_unavailable"
    assert "SDBOT_DB" in render_error(caught.value, "en")


async def test_usage_counters_follow_jobs_charged_images(store: Store) -> None:

    async def add_job(user: str, chat: str, group: int, n: int, day: str) -> int:
        row = await store.fetchone(
            "INSERT INTO jobs (user_key, platform, chat_key, group_chat, backend, request, route, lang, status,"
            " images, charged, quota_day, seed, created_at) "
            "VALUES (?, 'telegram', ?, ?, 'b', '{\"prompt\":\"x\"}', '{}', 'en', 'queued', ?, ?, ?, 1, 0) "
            "RETURNING id",
            (user, chat, group, n, n, day),
        )
        return row[0]

    a = await add_job("telegram:1", "telegram:-5", 1, 3, "2026-01-01")
    await add_job("telegram:1", "telegram:-5", 1, 2, "2026-01-01")
    await add_job("telegram:1", "telegram:1", 0, 4, "2026-01-02")  # private chat: no chat counter
    await store.execute("UPDATE jobs SET charged = 1 WHERE id = ?", (a,))  # two of three refunded
    usage = {tuple(r[:3]): r[3] for r in await store.fetchall("SELECT * FROM usage")}
    assert usage == {
        ("user", "telegram:1", "2026-01-01"): 3,
        ("chat", "telegram:-5", "2026-01-01"): 3,
        ("user", "telegram:1", "2026-01-02"): 4,
    }
    assert await usage_matches_jobs(store) == []


async def test_statements_before_a_statement_run_in_the_same_trip_each_as_if_alone(store: Store) -> None:
    rows = await store.fetchall(
        "SELECT count(*) FROM users",
        before=[Statement(ADD_USER, ("telegram:1", "1")), Statement(ADD_USER, ("telegram:2", "2"))],
    )
    assert rows[0][0] == 2  # the last statement sees what ran before it
    with pytest.raises(sqlite3.IntegrityError):  # the second one fails: the first stays written
        await store.fetchall(
            "SELECT 1", before=[Statement(ADD_USER, ("telegram:3", "3")), Statement(ADD_USER, ("telegram:1", "1"))]
        )
    keys = [r[0] for r in await store.fetchall("SELECT key FROM users ORDER BY key")]
    assert keys == ["telegram:1", "telegram:2", "telegram:3"]
    assert await store.fetchall("SELECT 1 WHERE 0", before=[]) == []  # nothing before: the usual path


async def test_statements_asked_together_share_one_trip_each_with_its_own_outcome(store: Store) -> None:
    hops = store.hops
    outcomes = await asyncio.gather(
        store.execute(ADD_USER, ("telegram:1", "1")),
        store.execute(ADD_USER, ("telegram:1", "1")),  # the same key again: fails, alone
        store.fetchall("SELECT count(*) FROM users", before=[Statement(ADD_USER, ("telegram:2", "2"))]),
        store.fetchone("SELECT key FROM users ORDER BY key DESC"),
        return_exceptions=True,
    )
    assert store.hops == hops + 1
    assert outcomes[0] is None
    assert isinstance(outcomes[1], sqlite3.IntegrityError)
    assert outcomes[2][0][0] == 2  # run in the order asked: sees the first insert and its own `before`
    assert outcomes[3]["key"] == "telegram:2"
    await store.fetchall("SELECT 1")
    await store.fetchall("SELECT 2")
    assert store.hops == hops + 3  # one after the other: a trip each


async def test_a_trip_that_writes_commits_once_and_reads_take_no_write_lock(store: Store, tmp_path: Path) -> None:
    traced: list[str] = []
    await store._conn.set_trace_callback(traced.append)  # called on the database's thread, in order
    await asyncio.gather(*(store.execute(ADD_USER, (f"telegram:{i}", str(i))) for i in range(3)))
    await asyncio.gather(store.fetchall("SELECT count(*) FROM users"), store.fetchall("SELECT 1"))
    await store.execute(ADD_USER, ("telegram:9", "9"))  # one write alone: its own commit, as ever
    await store._conn.set_trace_callback(None)
    assert [t for t in traced if t in ("BEGIN IMMEDIATE", "COMMIT")] == ["BEGIN IMMEDIATE", "COMMIT"]
    assert traced.index("COMMIT") == 4  # the three inserts between BEGIN and COMMIT; then reads, no BEGIN
    with sqlite3.connect(tmp_path / "sdbot.db") as other:  # committed: another connection sees them all
        assert other.execute("SELECT count(*) FROM users").fetchone()[0] == 4


async def test_an_error_that_rolls_back_a_shared_transaction_leaves_each_statement_to_run_alone(
    store: Store,
) -> None:
    await store.execute("CREATE TABLE t (x INTEGER)")
    # A trigger's ROLLBACK undoes the whole transaction, not only its own statement (unlike a constraint).
    trigger = "CREATE TRIGGER t_guard BEFORE INSERT ON t WHEN NEW.x < 0 BEGIN SELECT RAISE(ROLLBACK, 'no'); END"
    await store.execute(trigger)
    insert = "INSERT INTO t (x) VALUES (?)"
    outcomes = await asyncio.gather(
        store.execute(insert, (1,)),
        store.execute(insert, (-1,)),
        store.execute(insert, (2,)),
        return_exceptions=True,
    )
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], sqlite3.IntegrityError)
    assert [r[0] for r in await store.fetchall("SELECT x FROM t ORDER BY x")] == [1, 2]  # each once
    assert not store._conn.in_transaction


async def test_a_write_lock_held_elsewhere_fails_each_statement_of_a_trip_as_it_would_alone(
    store: Store, tmp_path: Path
) -> None:
    other = sqlite3.connect(tmp_path / "sdbot.db", isolation_level=None)
    try:
        await store.execute("PRAGMA busy_timeout = 50")
        other.execute("BEGIN IMMEDIATE")  # another process writing, past our patience
        outcomes = await asyncio.gather(
            store.execute(ADD_USER, ("telegram:1", "1")),
            store.execute(ADD_USER, ("telegram:2", "2")),
            return_exceptions=True,
        )
        assert all(isinstance(o, sqlite3.OperationalError) and "locked" in str(o) for o in outcomes)
        other.execute("COMMIT")
        await asyncio.gather(store.execute(ADD_USER, ("telegram:1", "1")), store.execute(ADD_USER, ("telegram:2", "2")))
        assert (await store.fetchone("SELECT count(*) FROM users"))[0] == 2
        assert not store._conn.in_transaction
    finally:
        other.close()


async def test_a_cancelled_caller_leaves_its_trip_to_the_others(store: Store) -> None:
    cancelled = asyncio.create_task(store.execute(ADD_USER, ("telegram:1", "1")))
    kept = asyncio.create_task(store.fetchall("SELECT count(*) FROM users"))
    await asyncio.sleep(0)  # both have asked
    cancelled.cancel()
    assert (await kept)[0][0] == 1  # the statement ran regardless, as one sent alone would have
    with pytest.raises(asyncio.CancelledError):
        await cancelled


async def test_closing_runs_what_was_asked_just_before_and_then_refuses(tmp_path: Path) -> None:
    store = await Store.open(tmp_path / "sdbot.db")
    asked = asyncio.create_task(store.execute(ADD_USER, ("telegram:1", "1")))
    await asyncio.sleep(0)
    await store.close()
    await asked
    with pytest.raises(ValueError):
        await store.fetchall("SELECT 1")
    store = await Store.open(tmp_path / "sdbot.db")
    try:
        assert (await store.fetchall("SELECT key FROM users"))[0][0] == "telegram:1"
    finally:
        await store.close()


async def test_a_lazy_write_travels_with_the_next_statement_or_alone_soon_after(store: Store) -> None:
    hops = store.hops
    mark = asyncio.create_task(store.execute(ADD_USER, ("telegram:1", "1"), lazy=True))
    await asyncio.sleep(0.01)  # a fifth of LAZY_DELAY: still waiting for company
    assert store.hops == hops and not mark.done()
    rows = await store.fetchall("SELECT key FROM users")
    assert store.hops == hops + 1 and mark.done()  # one trip for both, the lazy one first as asked
    assert [r[0] for r in rows] == ["telegram:1"]
    loop = asyncio.get_running_loop()
    began = loop.time()
    await store.execute(ADD_USER, ("telegram:2", "2"), lazy=True)  # alone: it goes once LAZY_DELAY is up
    assert loop.time() - began >= LAZY_DELAY * 0.9 and store.hops == hops + 2


async def test_statements_asked_while_a_trip_is_under_way_go_together_when_it_is_back(store: Store) -> None:
    hops = store.hops
    # A statement that keeps the database's thread busy for a good while (hundreds of milliseconds).
    slow = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 500000) SELECT count(*) FROM c"
    first = asyncio.create_task(store.fetchall(slow))
    for _ in range(3):  # the task asks; the trip leaves
        await asyncio.sleep(0)
    assert store.hops == hops + 1
    later = []
    for i in range(2, 6):  # each asked in a pass of the loop of its own
        later.append(asyncio.create_task(store.fetchall(f"SELECT {i}")))
        await asyncio.sleep(0)
    assert [r[0][0] for r in await asyncio.gather(first, *later)] == [500000, 2, 3, 4, 5]
    assert store.hops == hops + 2


async def test_the_callers_of_a_big_trip_are_woken_a_few_per_pass_of_the_loop_in_the_order_asked(
    store: Store,
) -> None:
    """So a burst's trip does not hold the loop for all its callers at once (see WAKE_AT_ONCE)."""
    woken: list[tuple[int, int]] = []  # (caller, pass it resumed in)

    async def caller(i: int) -> None:
        rows = await store.fetchall("SELECT ?", (i,))
        woken.append((rows[0][0], passes.now))

    count = 3 * WAKE_AT_ONCE + 5
    hops = store.hops
    with PassCounter() as passes:
        await asyncio.gather(*(caller(i) for i in range(count)))
    assert store.hops == hops + 1
    assert [i for i, _ in woken] == list(range(count))
    per_pass = Counter(p for _, p in woken)
    assert sorted(per_pass.values()) == [5, WAKE_AT_ONCE, WAKE_AT_ONCE, WAKE_AT_ONCE]
