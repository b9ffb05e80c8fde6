"""The SQLite schema: every version's statements, applied in order by :func:`migrate`."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from bot.errors import ConfigError


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
            # No row for a chat: every channel. See bot/chats/channels.py.
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
            # handled ones for a day, so a redelivery is recognised. See bot/chats/inbox.py.
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
            # an existing foreign key. See bot/jobs/retention.py.
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
    Migration(
        6,
        "which process holds an unhandled event, and until when (PostgreSQL's processes share the inbox)",
        ("ALTER TABLE inbox ADD COLUMN worker TEXT", "ALTER TABLE inbox ADD COLUMN held_until REAL"),
    ),
    Migration(
        7,
        "the picture an unfinished job draws from, when its platform cannot give it again; gone when the job ends",
        (
            "CREATE TABLE job_pictures (job_id INTEGER PRIMARY KEY, data BLOB NOT NULL)",
            "CREATE TRIGGER job_pictures_end AFTER UPDATE OF status ON jobs "
            "WHEN NEW.status IN ('done', 'failed', 'cancelled') "
            "BEGIN DELETE FROM job_pictures WHERE job_id = NEW.id; END",
            "CREATE TRIGGER job_pictures_deleted AFTER DELETE ON jobs "
            "BEGIN DELETE FROM job_pictures WHERE job_id = OLD.id; END",
        ),
    ),
    Migration(
        8,
        "the block list's rules, the prompts it refused (for admins and stats), and chats' /draw defaults",
        (
            "CREATE TABLE block_rules (id INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, "
            "pattern TEXT NOT NULL, added_by TEXT NOT NULL, created_at REAL NOT NULL, level TEXT NOT NULL, "
            "UNIQUE (kind, pattern))",
            "CREATE TABLE refusals (id INTEGER PRIMARY KEY AUTOINCREMENT, user_key TEXT NOT NULL, "
            "chat_key TEXT NOT NULL, rule_id INTEGER, pattern TEXT NOT NULL, field TEXT NOT NULL, "
            "quota_day TEXT NOT NULL, at REAL NOT NULL)",
            "CREATE INDEX refusals_day ON refusals (quota_day, chat_key)",
            "CREATE TABLE chat_defaults (chat_key TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL, "
            "updated_by TEXT NOT NULL, updated_at REAL NOT NULL, PRIMARY KEY (chat_key, name))",
        ),
    ),
)


async def schema_version(conn: aiosqlite.Connection, path: Path, migrations: Iterable[Migration]) -> int:
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


async def migrate(conn: aiosqlite.Connection, path: Path, migrations: Iterable[Migration]) -> int:
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
