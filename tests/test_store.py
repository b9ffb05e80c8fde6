"""The database: WAL, migrations applied forward once, newer schemas refused, usage counters kept by triggers."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from bot.errors import ConfigError
from bot.messages.i18n import render_error
from bot.storage import StorageError
from bot.storage.sqlite import MIGRATIONS, Migration, SQLiteStorage
from tests.pipeline_support import usage_matches_jobs

# A migration from a future sdbot, one past the latest this one knows.
LATEST = MIGRATIONS[-1].version
NEXT = Migration(LATEST + 1, "users get a note", ("ALTER TABLE users ADD COLUMN note TEXT",))
ADD_USER = "INSERT INTO users (key, platform, user_id, created_at, updated_at) VALUES (?, 'telegram', ?, 0, 0)"


async def test_open_creates_a_wal_database_at_the_latest_schema(tmp_path: Path) -> None:
    store = await SQLiteStorage.open(tmp_path / "deep" / "dir" / "sdbot.db")
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
    store = await SQLiteStorage.open(db)
    await store.execute(
        "INSERT INTO users (key, platform, user_id, created_at, updated_at) "
        "VALUES ('telegram:1', 'telegram', '1', 0, 0)"
    )
    await store.close()

    store = await SQLiteStorage.open(db, migrations=(*MIGRATIONS, NEXT))
    try:
        assert store.version == LATEST + 1
        row = await store.fetchone("SELECT key, note FROM users")
        assert tuple(row) == ("telegram:1", None)
    finally:
        await store.close()

    store = await SQLiteStorage.open(db, migrations=(*MIGRATIONS, NEXT))  # reopening applies nothing again
    try:
        versions = [r[0] for r in await store.fetchall("SELECT version FROM schema_migrations ORDER BY version")]
        assert versions == list(range(1, LATEST + 2))
    finally:
        await store.close()


async def test_a_database_from_a_newer_sdbot_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "sdbot.db"
    await (await SQLiteStorage.open(db, migrations=(*MIGRATIONS, NEXT))).close()
    with pytest.raises(ConfigError) as caught:
        await SQLiteStorage.open(db)
    assert caught.value.code == "db_too_new"
    assert caught.value.variable == "SDBOT_DB"
    for lang in ("en", "zh"):
        text = render_error(caught.value, lang)
        assert "SDBOT_DB" in text and str(db) in text and str(LATEST + 1) in text


async def test_a_failed_migration_leaves_the_database_as_it_was(tmp_path: Path) -> None:
    db = tmp_path / "sdbot.db"
    await (await SQLiteStorage.open(db)).close()
    broken = Migration(LATEST + 1, "broken", ("ALTER TABLE users ADD COLUMN note TEXT", "THIS IS NOT SQL"))
    with pytest.raises(ConfigError) as caught:
        await SQLiteStorage.open(db, migrations=(*MIGRATIONS, broken))
    assert caught.value.code == "db_unavailable"
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT max(version) FROM schema_migrations").fetchone()[0] == LATEST
        columns = [r[1] for r in conn.execute("PRAGMA table_info(users)")]
    assert "note" not in columns


async def test_an_unusable_path_is_a_configuration_error_naming_sdbot_db(tmp_path: Path) -> None:
    (tmp_path / "a-directory.db").mkdir()
    with pytest.raises(ConfigError) as caught:
        await SQLiteStorage.open(tmp_path / "a-directory.db")
    assert caught.value.code == "db_unavailable"
    assert "SDBOT_DB" in render_error(caught.value, "en")


async def test_usage_counters_follow_jobs_charged_images(store: SQLiteStorage) -> None:

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


async def test_an_engine_error_is_a_storage_error_with_its_cause(store: SQLiteStorage) -> None:
    await store.execute(ADD_USER, ("telegram:1", "1"))
    with pytest.raises(StorageError) as caught:
        await store.execute(ADD_USER, ("telegram:1", "1"))  # the same key again
    assert isinstance(caught.value.__cause__, sqlite3.IntegrityError) and "UNIQUE" in str(caught.value)


async def test_a_transaction_commits_together_and_other_statements_wait_for_its_end(
    store: SQLiteStorage, tmp_path: Path
) -> None:
    outside: list[int] = []

    async def count_users() -> None:
        outside.append((await store.fetchone("SELECT count(*) FROM users"))[0])

    async with store.transaction():
        await store.execute(ADD_USER, ("telegram:1", "1"))
        waiting = asyncio.create_task(count_users())
        await asyncio.sleep(0.01)
        assert not waiting.done()  # it would have run inside the transaction, seeing half of it
        await store.execute(ADD_USER, ("telegram:2", "2"))
    await waiting
    assert outside == [2]
    with sqlite3.connect(tmp_path / "sdbot.db") as other:  # committed: another connection sees both
        assert other.execute("SELECT count(*) FROM users").fetchone()[0] == 2


async def test_a_failing_transaction_leaves_nothing_behind(store: SQLiteStorage) -> None:
    with pytest.raises(StorageError):
        async with store.transaction():
            await store.execute(ADD_USER, ("telegram:1", "1"))
            await store.execute(ADD_USER, ("telegram:1", "1"))
    assert (await store.fetchone("SELECT count(*) FROM users"))[0] == 0
    await store.execute(ADD_USER, ("telegram:1", "1"))  # the connection is usable again, in autocommit
    assert (await store.fetchone("SELECT count(*) FROM users"))[0] == 1


async def test_a_write_lock_held_elsewhere_past_the_timeout_fails_the_statement(
    store: SQLiteStorage, tmp_path: Path
) -> None:
    other = sqlite3.connect(tmp_path / "sdbot.db", isolation_level=None)
    try:
        await store.execute("PRAGMA busy_timeout = 50")
        other.execute("BEGIN IMMEDIATE")  # another process writing, past our patience
        with pytest.raises(StorageError, match="locked"):
            await store.execute(ADD_USER, ("telegram:1", "1"))
        other.execute("COMMIT")
        await store.execute(ADD_USER, ("telegram:1", "1"))
        assert (await store.fetchone("SELECT count(*) FROM users"))[0] == 1
    finally:
        other.close()


async def test_opening_a_file_others_are_setting_up_is_tried_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three processes creating one new file at once: SQLite may answer "database is locked" at once rather
    than wait its busy timeout; the open is tried again, and any other failure is not."""
    from bot.errors import db_unavailable
    from bot.storage.sqlite import database

    real = database._open_connection
    failures = ["database is locked", "locking protocol"]

    async def flaky(path: Path, **options: object) -> object:
        if failures:
            raise db_unavailable(path, failures.pop(0))
        return await real(path, **options)  # type: ignore[arg-type]

    monkeypatch.setattr(database, "_open_connection", flaky)
    conn, version = await database.open_connection(tmp_path / "new.db")
    await conn.close()
    assert failures == [] and version > 0
    failures.append("file is not a database")
    with pytest.raises(ConfigError) as caught:
        await database.open_connection(tmp_path / "new.db")
    assert caught.value.params["reason"] == "file is not a database" and failures == []
