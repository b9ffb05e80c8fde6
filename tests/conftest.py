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


@pytest.fixture(params=["sqlite", "postgresql"])
async def engine(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """Run the test on each storage engine: ``pytestmark = pytest.mark.usefixtures("engine")`` in an end-to-end
    module makes every database it opens through make_settings a fresh PostgreSQL one, in the second run."""
    from tests import pipeline_support

    if request.param == "sqlite":
        yield "sqlite"
        return
    server = request.getfixturevalue("postgres_server")
    pipeline_support.DATABASE_URL = await server.new_database()
    try:
        yield "postgresql"
    finally:
        pipeline_support.DATABASE_URL = None
