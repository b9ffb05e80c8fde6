"""The SQLite database (``SDBOT_DB``): one long-lived aiosqlite connection, WAL, forward migrations.

Every write the bot makes is a single SQL statement. SQLite runs a statement atomically, and a write statement
in autocommit mode takes the database's write lock before it reads anything, so a decision such as "admit this
job if the user has images left" cannot interleave with another task on this connection or with another
process on the same file. That is why :class:`Store` has no transaction helper: tasks sharing one aiosqlite
connection would otherwise run their statements inside each other's transactions. Counters that must agree
with the jobs table (images used per day) are kept by triggers, inside the statement that changes the job.

Statements reach the connection's thread in shared trips (see :meth:`Store.fetchall`): each trip hands
Python's GIL from the event loop's thread to the database's and back, which under load costs more than a
short statement, so what is asked together travels together, and writes no one waits on may wait briefly
(``lazy``) for company. A trip's writes share one transaction and so one commit; each statement still runs
in the order asked and succeeds or fails as it would alone. A trip's callers are woken a few per pass of the
event loop (:data:`WAKE_AT_ONCE`), so a burst's big trip does not hold the loop for all of them at once.

Schema versions are rows of ``schema_migrations``; :data:`MIGRATIONS` lists every version's statements in
order and :meth:`Store.open` applies the missing ones under ``BEGIN IMMEDIATE``, so processes starting
together migrate once; a read-only open (commands that only read) applies none and refuses an older schema.
A database from a newer sdbot is refused rather than misread.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from bot.errors import ConfigError, db_unavailable
from bot.pacing import PerPass

Params = Sequence[Any] | Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Statement:
    """A statement to run later (see :meth:`Store.fetchall`'s ``before``)."""

    sql: str
    params: Params = ()


# How long a statement waits for another process's write lock before failing. Admissions hold the lock for
# well under a millisecond; the margin covers a slow disk during a checkpoint.
BUSY_TIMEOUT_MS = 10_000
# How long a lazy write (see Store.fetchall) may wait for another statement's trip to the database's thread.
# Short enough that a quiet bot's bookkeeping is written at once as far as anyone can tell.
LAZY_DELAY = 0.05
# Callers of one trip woken per pass of the event loop. A trip may carry a hundred admissions of a burst; woken
# together, their hundred tasks run in one pass and everything else on the loop (a gateway heartbeat, a timer,
# another chat's message) waits behind all of them. Measured with python -m bench.discord (100 /draw at once, 5-7
# rounds): loop lag p99 29-39 ms waking all at once, 18-24 ms sixteen at a time; with the Discord commands
# themselves starting eight per pass (COMMANDS_PER_PASS in adapters/discord/client.py), six runs each
# alternating: 14.7 ms (13.7-19.1) eight at a time against 19.2 ms (16.4-23.6) sixteen, at the same throughput.
WAKE_AT_ONCE = 8


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "users, chats, jobs and daily usage counters",
        (
            """
            CREATE TABLE users (
                key TEXT PRIMARY KEY,               -- "telegram:123"
                platform TEXT NOT NULL,
                user_id TEXT NOT NULL,
                display_name TEXT,
                language TEXT,                      -- the user's /lang choice; NULL = follow the platform
                platform_language TEXT,             -- the language code the platform last reported
                banned INTEGER NOT NULL DEFAULT 0,
                daily_images INTEGER,               -- limit overrides; NULL = the configured default
                rate_per_minute INTEGER,
                max_pending INTEGER,
                created_at REAL NOT NULL,
                updated_at REAL NOT NULL
            )
            """,
            """
            CREATE TABLE chats (
                key TEXT PRIMARY KEY,               -- "telegram:-100123", "discord:<guild id>"
                platform TEXT NOT NULL,
                chat_id TEXT NOT NULL,
                is_group INTEGER NOT NULL,
                title TEXT,
                daily_images INTEGER,               -- cap override; NULL = SDBOT_CHAT_DAILY_IMAGES
                created_at REAL NOT NULL,
                updated_at REAL NOT NULL
            )
            """,
            """
            CREATE TABLE jobs (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                user_key TEXT NOT NULL,
                platform TEXT NOT NULL,
                chat_key TEXT NOT NULL,
                group_chat INTEGER NOT NULL,
                backend TEXT NOT NULL,
                request TEXT NOT NULL,              -- DrawRequest JSON as validated (seed as the user gave it)
                route TEXT NOT NULL,                -- the adapter's JSON delivery target
                lang TEXT NOT NULL,
                status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
                images INTEGER NOT NULL,            -- images requested
                charged INTEGER NOT NULL,           -- images counted against quotas now (0 once refunded)
                quota_day TEXT NOT NULL,            -- the SDBOT_QUOTA_TZ day the images were charged to
                seed INTEGER NOT NULL,              -- drawn at admission, so a re-run draws the same picture
                delivered INTEGER NOT NULL DEFAULT 0,
                error TEXT,
                attempts INTEGER NOT NULL DEFAULT 0,
                parent_id INTEGER REFERENCES jobs(id),
                created_at REAL NOT NULL,
                started_at REAL,
                finished_at REAL
            )
            """,
            "CREATE INDEX jobs_user_created ON jobs (user_key, created_at)",
            "CREATE INDEX jobs_user_unfinished ON jobs (user_key) WHERE status IN ('queued', 'running')",
            "CREATE INDEX jobs_unfinished ON jobs (id) WHERE status IN ('queued', 'running')",
            "CREATE INDEX jobs_day ON jobs (quota_day)",
            """
            CREATE TABLE usage (
                scope TEXT NOT NULL CHECK (scope IN ('user', 'chat')),
                key TEXT NOT NULL,
                day TEXT NOT NULL,
                images INTEGER NOT NULL,
                PRIMARY KEY (scope, key, day)
            ) WITHOUT ROWID
            """,
            # usage.images is the sum of jobs.charged for that user (or group chat) and day, kept by the
            # statement that changes the job: admission charges, a refund or cancel sets charged to 0.
            """
            CREATE TRIGGER jobs_charge AFTER INSERT ON jobs WHEN NEW.charged <> 0 BEGIN
                INSERT INTO usage (scope, key, day, images) VALUES ('user', NEW.user_key, NEW.quota_day, NEW.charged)
                    ON CONFLICT DO UPDATE SET images = images + excluded.images;
                INSERT INTO usage (scope, key, day, images)
                    SELECT 'chat', NEW.chat_key, NEW.quota_day, NEW.charged WHERE NEW.group_chat
                    ON CONFLICT DO UPDATE SET images = images + excluded.images;
            END
            """,
            # MAX(0, ...): an operator's `sdbot quota reset` may already have zeroed the day.
            """
            CREATE TRIGGER jobs_recharge AFTER UPDATE OF charged ON jobs WHEN NEW.charged <> OLD.charged BEGIN
                UPDATE usage SET images = MAX(0, images + NEW.charged - OLD.charged)
                    WHERE scope = 'user' AND key = NEW.user_key AND day = NEW.quota_day;
                UPDATE usage SET images = MAX(0, images + NEW.charged - OLD.charged)
                    WHERE scope = 'chat' AND key = NEW.chat_key AND day = NEW.quota_day AND NEW.group_chat;
            END
            """,
        ),
    ),
    Migration(
        2,
        "channels where /draw may be used, per group chat / Discord server",
        (
            # No row for a chat: every channel. See bot/channels.py.
            """
            CREATE TABLE allowed_channels (
                chat_key TEXT NOT NULL,             -- "discord:<guild id>"
                channel_id TEXT NOT NULL,
                created_at REAL NOT NULL,
                PRIMARY KEY (chat_key, channel_id)
            ) WITHOUT ROWID
            """,
        ),
    ),
    Migration(
        3,
        "idempotent admission per platform event, and the inbox of events not yet handled",
        (
            # The platform event that asked for the job ("telegram:<chat>:<message>", a button press...):
            # the same event handled twice (redelivered after a crash) finds its job instead of a second one.
            "ALTER TABLE jobs ADD COLUMN origin TEXT",
            "CREATE UNIQUE INDEX jobs_origin ON jobs (origin) WHERE origin IS NOT NULL",
            # Events received but not yet handled, so a crash between receiving and handling loses none, and
            # handled ones for a day, so a redelivery is recognised. See bot/inbox.py.
            """
            CREATE TABLE inbox (
                platform TEXT NOT NULL,
                event_id INTEGER NOT NULL,          -- the platform's own id (Telegram's update_id)
                payload TEXT NOT NULL,              -- the event as the platform sent it (JSON); '' once handled
                attempts INTEGER NOT NULL DEFAULT 0,  -- starts that found it unhandled
                received_at REAL NOT NULL,
                handled_at REAL,
                PRIMARY KEY (platform, event_id)
            ) WITHOUT ROWID
            """,
        ),
    ),
    Migration(
        4,
        "deleting old jobs (retention): parent index, counters and re-runs follow deletions",
        (
            # With foreign keys on, every deleted job makes SQLite look for jobs naming it as parent: without
            # this index that is a scan of the whole table per deleted row.
            "CREATE INDEX jobs_parent ON jobs (parent_id) WHERE parent_id IS NOT NULL",
            # A deleted job's images leave its day's counters (which thus stay the sum of jobs.charged; a
            # counter at 0 goes), and its re-runs forget it: ON DELETE SET NULL, which SQLite cannot add to
            # an existing foreign key. See bot/retention.py.
            """
            CREATE TRIGGER jobs_delete AFTER DELETE ON jobs BEGIN
                UPDATE jobs SET parent_id = NULL WHERE parent_id = OLD.id;
                UPDATE usage SET images = MAX(0, images - OLD.charged)
                    WHERE scope = 'user' AND key = OLD.user_key AND day = OLD.quota_day;
                UPDATE usage SET images = MAX(0, images - OLD.charged)
                    WHERE scope = 'chat' AND key = OLD.chat_key AND day = OLD.quota_day AND OLD.group_chat;
                DELETE FROM usage WHERE scope = 'user' AND key = OLD.user_key AND day = OLD.quota_day AND images = 0;
                DELETE FROM usage WHERE scope = 'chat' AND key = OLD.chat_key AND day = OLD.quota_day
                    AND OLD.group_chat AND images = 0;
            END
            """,
        ),
    ),
    Migration(
        5,
        "when a job's current attempt began delivering (a crash then may have left pictures in the chat)",
        ("ALTER TABLE jobs ADD COLUMN delivering_at REAL",),
    ),
)


class Store:
    """The bot's one connection to ``SDBOT_DB``. Open with :meth:`open`, share it, :meth:`close` at exit."""

    def __init__(self, conn: aiosqlite.Connection, path: Path, version: int) -> None:
        self._conn = conn
        self.path = path
        self.version = version
        self._asked: list[_Call] = []  # statements asked for during this pass of the loop (see fetchall)
        self.hops = 0  # trips to the database's thread so far (what batching saves; tests and benchmarks)
        self._in_flight: set[asyncio.Future[None]] = set()
        self._sending = False  # a trip is due: at the end of this pass of the loop, or when the one under way is back
        self._lazy_timer: asyncio.TimerHandle | None = None  # a trip due for lazy statements only
        self._waking = PerPass(WAKE_AT_ONCE)  # callers handed their outcome (see _settle)

    @classmethod
    async def open(
        cls,
        path: str | Path,
        *,
        migrations: Sequence[Migration] = MIGRATIONS,
        create: bool = True,
        readonly: bool = False,
    ) -> Store:
        """Connect, switch to WAL and apply missing migrations. Raises :class:`ConfigError` (naming
        ``SDBOT_DB``) when the file cannot be opened or belongs to a newer sdbot.

        ``create=False``: a missing file is ``db_not_found``, and neither it nor its folder is created.
        ``readonly=True`` (commands that only read; implies ``create=False``): nothing is written, not even
        the journal mode, and an older schema is not migrated but refused (``db_outdated``): upgrading is the
        bot's job at its start, not a side effect of looking. The connection refuses writes (``query_only``)."""
        path = Path(path)
        if (readonly or not create) and not path.is_file():
            raise ConfigError("db_not_found", variable="SDBOT_DB", path=str(path))
        if sqlite3.sqlite_version_info < (3, 35):  # RETURNING, which every decision relies on
            reason = f"SQLite {sqlite3.sqlite_version} is too old; 3.35 or newer is needed"
            raise db_unavailable(path, reason)
        if path.is_dir():
            raise db_unavailable(path, "it is a directory")
        try:
            if create and not readonly:
                path.parent.mkdir(parents=True, exist_ok=True)
                conn = await _connect(str(path), uri=False)
            else:  # mode=rw: SQLite never creates the file, even one deleted since the check above
                conn = await _connect(path.absolute().as_uri() + "?mode=rw", uri=True)
        except (OSError, sqlite3.Error) as exc:
            raise db_unavailable(path, exc) from None
        conn.row_factory = sqlite3.Row
        try:
            await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if readonly:
                await conn.execute("PRAGMA query_only = ON")
                version = await _schema_version(conn, path, migrations)
            else:
                await conn.execute("PRAGMA journal_mode = WAL")
                # NORMAL is durable against a killed process in WAL mode (only power loss can lose a commit)
                # and saves an fsync per admission.
                await conn.execute("PRAGMA synchronous = NORMAL")
                await conn.execute("PRAGMA foreign_keys = ON")
                version = await _migrate(conn, path, migrations)
        except sqlite3.Error as exc:
            await conn.close()
            raise db_unavailable(path, exc) from None
        except BaseException:
            await conn.close()
            raise
        return cls(conn, path, version)

    async def check(self) -> None:
        """Read every page of the file and match every index with its table (``PRAGMA integrity_check``): a
        damaged database is refused at start with ``db_unavailable`` instead of failing later, after signing in
        or in the middle of serving users. ``quick_check`` skips the index-to-table match, and an index entry
        whose row is gone (a copy of a live file without its -wal) failed the start's first query. The cost:
        2.2 s instead of 1.0 s for 275 MB (a million jobs) from the page cache, 5.8 s against 4.5 s from disk."""
        try:
            rows = await self._conn.execute_fetchall("PRAGMA integrity_check(20)")
        except sqlite3.Error as exc:
            raise db_unavailable(self.path, exc) from None
        # One problem a line, headed by "*** in database main ***" (which reads like a redacted secret).
        lines = [line for row in rows for line in str(row[0]).splitlines()]
        problems = [line for line in lines if line not in ("ok", "*** in database main ***")]
        if lines != ["ok"]:
            reason = "; ".join(problems[:3]) or "damaged"
            raise db_unavailable(self.path, reason)

    async def close(self) -> None:
        self._send()  # statements asked for just before: they run before the connection closes
        await asyncio.gather(*self._in_flight, return_exceptions=True)
        await self._conn.close()

    async def fetchall(
        self, sql: str, params: Params = (), *, before: Sequence[Statement] = (), lazy: bool = False
    ) -> list[sqlite3.Row]:
        """Run one statement (a write too: ``... RETURNING``) and return its rows.

        ``before``: statements to run first, each succeeding or failing as if executed apart; nothing else on
        the connection runs in between.

        Statements travel to the database's thread together (see :class:`_Call`): those asked during one
        pass of the event loop, and those asked while a trip is under way, which go in one trip when it is
        back (the connection runs one statement at a time anyway, so none waits longer for the database).
        Each runs in the order asked, with its own result or exception. What is saved is the hand-over of
        Python's GIL between the loop's thread and the database's at each trip: on two busy cores that cost
        more than a short statement itself. A trip that writes runs in one transaction (see
        :func:`_run_together`): one commit instead of one per statement, and nobody hears of a result before
        it is committed. ``lazy``: a write no one is waiting on (a bookkeeping mark) waits up to
        :data:`LAZY_DELAY` seconds for another statement's trip to travel with."""
        loop = asyncio.get_running_loop()
        call = _Call(before, sql, params, loop.create_future())
        self._asked.append(call)
        if not lazy:
            if not self._sending:
                self._sending = True
                if not self._in_flight:  # else it goes when the trip under way is back (see _back)
                    loop.call_soon(self._send)
        elif self._lazy_timer is None and not self._sending:
            self._lazy_timer = loop.call_later(LAZY_DELAY, self._send)
        return await call.future

    def _send(self) -> None:
        self._sending = False
        if self._lazy_timer is not None:
            self._lazy_timer.cancel()
            self._lazy_timer = None
        calls, self._asked = self._asked, []
        if not calls:
            return
        self.hops += 1
        # aiosqlite's own way to run a function on its thread (what each of its methods does); it has no
        # public one, and a thread of our own beside it could not share the connection.
        hop = asyncio.ensure_future(self._conn._execute(_run_calls, self._conn, calls))
        hop.add_done_callback(functools.partial(self._settle, calls))
        self._in_flight.add(hop)
        hop.add_done_callback(self._back)

    def _back(self, hop: asyncio.Future[None]) -> None:
        """A trip is back: what was asked meanwhile goes now."""
        self._in_flight.discard(hop)
        if self._sending and not self._in_flight:
            self._send()

    def _settle(self, calls: list[_Call], hop: asyncio.Future[None]) -> None:
        """On the loop, when the hop is back: hand each caller its outcome (a failed hop, say a closed
        connection, fails them all), :data:`WAKE_AT_ONCE` callers per pass of the loop, in the order asked
        across trips."""
        if hop.cancelled():  # the loop is being torn down: no later pass to wait for
            for call in calls:
                call.future.cancel()
            return
        failure = hop.exception()
        for call in calls:
            self._waking.call(functools.partial(_wake, call, failure))

    async def fetchone(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        rows = await self.fetchall(sql, params)
        return rows[0] if rows else None

    async def execute(self, sql: str, params: Params = (), *, lazy: bool = False) -> None:
        """Run one write statement (``lazy``: see :meth:`fetchall`). Use :meth:`fetchall` with ``RETURNING``
        to learn what it changed."""
        await self.fetchall(sql, params, lazy=lazy)


@dataclass(slots=True)
class _Call:
    """A statement asked for, waiting for its hop to the database's thread, and the future its caller awaits.
    ``outcome`` is set on that thread: the rows, or the exception the statement raised."""

    before: Sequence[Statement]
    sql: str
    params: Params
    future: asyncio.Future[list[sqlite3.Row]]
    outcome: list[sqlite3.Row] | BaseException | None = None


def _wake(call: _Call, failure: BaseException | None) -> None:
    """Hand ``call``'s caller its outcome, or the trip's ``failure``."""
    if call.future.done():  # its caller was cancelled; the statement ran regardless, as it would alone
        return
    outcome = call.outcome if failure is None else failure
    if isinstance(outcome, BaseException):
        call.future.set_exception(outcome)
    else:
        call.future.set_result(outcome or [])


def _run_calls(connection: aiosqlite.Connection, calls: list[_Call]) -> None:
    """On the database's thread: every call in order, each failing alone."""
    conn = connection._conn  # on its own thread, where the sqlite3 connection may be used
    if _writes_twice(calls) and _run_together(conn, calls):
        return
    for call in calls:
        _run_one(conn, call)


def _run_one(conn: sqlite3.Connection, call: _Call) -> None:
    try:
        for statement in call.before:
            conn.execute(statement.sql, statement.params)
        call.outcome = conn.execute(call.sql, call.params).fetchall()
    except Exception as exc:
        call.outcome = exc


def _writes_twice(calls: list[_Call]) -> bool:
    """Whether two or more of the statements may write (all but plain SELECTs): a transaction saves nothing
    for one, and would make reads wait for another process's write lock, which they need not in WAL mode."""
    writes = 0
    for call in calls:
        for sql in [*(statement.sql for statement in call.before), call.sql]:
            if sql.lstrip()[:6].upper() != "SELECT":
                writes += 1
                if writes > 1:
                    return True
    return False


def _run_together(conn: sqlite3.Connection, calls: list[_Call]) -> bool:
    """Run ``calls`` in one transaction, committed once: each autocommitted write costs SQLite a commit of
    its own (the WAL frames of every page it changed, the WAL index), most of a short write's time. A failing
    statement undoes only itself (SQLite's default for a constraint, a trigger's ABORT...), as it would alone.

    False, with nothing changed, when the transaction could not be had, an error rolled all of it back (a
    full disk, a trigger's ROLLBACK) or the commit failed: the caller then runs each call alone, as before
    batching, so no outcome depends on which calls happened to travel together."""
    try:
        # IMMEDIATE: the write lock first (waiting busy_timeout for another process, as a lone write does),
        # so no read snapshot can go stale before the first write.
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.Error:
        return False
    try:
        for call in calls:
            _run_one(conn, call)
            if not conn.in_transaction:  # the error rolled back the whole transaction, not just its statement
                return False
        conn.execute("COMMIT")
    except sqlite3.Error:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        return False
    return True


async def _connect(target: str, *, uri: bool) -> aiosqlite.Connection:
    """``aiosqlite.connect`` in autocommit mode (``isolation_level=None``: no implicit BEGIN, so each statement
    is its own atomic transaction). When the file cannot be opened, wait for aiosqlite's worker thread before
    raising: aiosqlite tells it to stop without waiting, and the thread then answers on this event loop, which
    ``asyncio.run`` may have closed by then ("Event loop is closed" tracebacks after the operator's message)."""
    pending = aiosqlite.connect(target, isolation_level=None, uri=uri)
    try:
        return await pending
    except BaseException:
        # aiosqlite keeps no public handle on its thread: a Thread itself before 0.21, ._thread since.
        worker = pending if isinstance(pending, threading.Thread) else getattr(pending, "_thread", None)
        if isinstance(worker, threading.Thread) and worker.is_alive():
            await asyncio.to_thread(worker.join, 5.0)
        raise


async def _schema_version(conn: aiosqlite.Connection, path: Path, migrations: Iterable[Migration]) -> int:
    """The database's schema version, read without writing: ``db_too_new`` or ``db_outdated`` unless it is
    the latest of ``migrations``."""
    latest = max((m.version for m in migrations), default=0)
    tables = await conn.execute_fetchall(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
    )
    current = 0
    if int(next(iter(tables))[0]):
        rows = await conn.execute_fetchall("SELECT coalesce(max(version), 0) FROM schema_migrations")
        current = int(next(iter(rows))[0])
    if current > latest:
        raise ConfigError("db_too_new", variable="SDBOT_DB", path=str(path), found=current, known=latest)
    if current < latest:
        raise ConfigError("db_outdated", variable="SDBOT_DB", path=str(path), found=current, known=latest)
    return current


async def _migrate(conn: aiosqlite.Connection, path: Path, migrations: Iterable[Migration]) -> int:
    known = sorted(migrations, key=lambda m: m.version)
    latest = known[-1].version if known else 0
    # IMMEDIATE: the write lock is taken before the version is read, so two processes cannot both apply v2.
    await conn.execute("BEGIN IMMEDIATE")
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            "version INTEGER PRIMARY KEY, description TEXT NOT NULL, applied_at REAL NOT NULL)"
        )
        rows = await conn.execute_fetchall("SELECT coalesce(max(version), 0) FROM schema_migrations")
        current = int(next(iter(rows))[0])
        if current > latest:
            raise ConfigError("db_too_new", variable="SDBOT_DB", path=str(path), found=current, known=latest)
        for migration in known:
            if migration.version <= current:
                continue
            for statement in migration.statements:
                await conn.execute(statement)
            await conn.execute(
                "INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, ?)",
                (migration.version, migration.description, time.time()),
            )
            current = migration.version
        await conn.execute("COMMIT")
    except BaseException:
        await conn.execute("ROLLBACK")
        raise
    return current
