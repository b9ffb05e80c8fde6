"""Fixtures shared by the tests of the database and what is built on it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.storage.sqlite import SQLiteStorage


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStorage]:
    """A fresh database at the latest schema, ``tmp_path / "sdbot.db"``, closed after the test."""
    store = await SQLiteStorage.open(tmp_path / "sdbot.db")
    yield store
    await store.close()


@pytest.fixture(scope="session")
def postgres_server():  # type: ignore[no-untyped-def]
    """One throwaway PostgreSQL server for the session (tests/postgres_support.py), stopped at its end."""
    from tests.postgres_support import PostgresServer

    server = PostgresServer().start()
    yield server
    server.stop()
