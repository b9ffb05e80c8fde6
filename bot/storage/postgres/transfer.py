"""Moving a SQLite database's data into an empty PostgreSQL one (``sdbot migrate-db``), all or nothing."""

from __future__ import annotations

from bot.errors import ConfigError
from bot.storage.postgres import PostgresStorage
from bot.storage.sqlite import SQLiteStorage

# In the order foreign keys need; jobs by id, so that a re-run's parent is there before it.
TABLES: tuple[tuple[str, str], ...] = (
    ("users", "key"),
    ("chats", "key"),
    ("jobs", "id"),
    ("usage", "scope, key, day"),
    ("allowed_channels", "chat_key, channel_id"),
    ("inbox", "platform, event_id"),
)
BATCH = 5000


async def copy_all(source: SQLiteStorage, target: PostgresStorage) -> dict[str, int]:
    """Every row of every table, in one PostgreSQL transaction; rows copied per table. ``db_not_empty`` (naming
    the target) when it holds anything already. Job ids stay what they were, so buttons under old messages still
    find their jobs; the usage counters are the source's own (an operator's reset is not undone by the copy)."""
    copied = {}
    async with target.transaction():
        held = [table for table, _ in TABLES if await target.fetchone(f"SELECT 1 FROM {table} LIMIT 1")]
        if held:
            raise ConfigError("db_not_empty", variable="--to", path=target.shown, tables=held)
        for table, order in TABLES:
            if table == "usage":
                # The jobs' triggers charged the counters as the jobs went in: the source's own replace them.
                await target.execute("DELETE FROM usage")
            copied[table] = await _copy(source, target, table, order)
        await target.execute(
            "SELECT setval(pg_get_serial_sequence('jobs', 'id'), (SELECT coalesce(max(id), 0) + 1 FROM jobs), false)"
        )
    return copied


async def _copy(source: SQLiteStorage, target: PostgresStorage, table: str, order: str) -> int:
    count = last_id = 0
    while True:
        if table == "jobs":  # the long one: by id, not by an offset SQLite would walk again for every batch
            sql, params = "SELECT * FROM jobs WHERE id > ? ORDER BY id LIMIT ?", (last_id, BATCH)
        else:
            sql, params = f"SELECT * FROM {table} ORDER BY {order} LIMIT ? OFFSET ?", (BATCH, count)
        rows = await source.fetchall(sql, params)
        if not rows:
            return count
        columns = list(rows[0].keys())
        marks = ", ".join(f"${i}" for i in range(1, len(columns) + 1))
        overriding = " OVERRIDING SYSTEM VALUE" if table == "jobs" else ""
        await target.executemany(
            f"INSERT INTO {table} ({', '.join(columns)}){overriding} VALUES ({marks})", [tuple(r) for r in rows]
        )
        count += len(rows)
        last_id = rows[-1]["id"] if table == "jobs" else 0
