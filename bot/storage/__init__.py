"""What the bot keeps: the port (:mod:`bot.storage.port`) and its engines (:mod:`bot.storage.sqlite`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from bot.config import is_database_url
from bot.storage.port import HeldEvent, Storage, StorageError
from bot.storage.postgres import PostgresStorage
from bot.storage.sqlite import SQLiteStorage
from bot.storage.sqlite.database import CHECK_AT_ONCE_BYTES

__all__ = ["HeldEvent", "Storage", "StorageError", "open_storage"]


async def open_storage(
    target: str | Path,
    *,
    clock: Callable[[], float] = time.time,
    create: bool = True,
    readonly: bool = False,
    serving: bool = False,
) -> Storage:
    """Open ``SDBOT_DB``: a file path is SQLite (created and migrated unless ``create``/``readonly`` say not), a
    ``postgresql://`` URL is PostgreSQL (migrated unless ``readonly``).
    Raises ``ConfigError`` naming ``SDBOT_DB`` when it cannot be used. The database is checked whole first
    (``db_unavailable`` when damaged), before anything is served from it; for the bot (``serving``) a file too
    large to check quickly is checked right after instead, so that its start does not grow with history."""
    storage: SQLiteStorage | PostgresStorage
    if is_database_url(target):
        storage = await PostgresStorage.open(str(target), clock=clock, readonly=readonly)  # the server creates nothing
    else:
        storage = await SQLiteStorage.open(target, clock=clock, create=create, readonly=readonly)
    try:
        await storage.check(at_once_up_to=CHECK_AT_ONCE_BYTES if serving else None)
    except BaseException:
        await storage.close()
        raise
    return storage
