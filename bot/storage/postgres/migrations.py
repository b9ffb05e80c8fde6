"""The PostgreSQL schema: the SQLite schema's meaning in PostgreSQL's types, applied once under a lock."""

from __future__ import annotations

import time

import asyncpg

from bot.errors import ConfigError

# Any fixed number: the advisory lock every process takes to migrate, so that of several starting at once one
# applies each migration and the others then find it applied.
MIGRATION_LOCK = 7_355_608
NEWCOMER = 2**62  # ``turns.served`` of a newcomer is their job's id less this: before every tick, by arrival

MIGRATIONS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (
        1,
        "users, chats, jobs, usage counters, allowed channels, the inbox (SQLite's versions 1-5 at once)",
        (
            """
            CREATE TABLE users (
                key TEXT PRIMARY KEY,
                platform TEXT NOT NULL,
                user_id TEXT NOT NULL,
                display_name TEXT,
                language TEXT,
                platform_language TEXT,
                banned BIGINT NOT NULL DEFAULT 0,
                daily_images BIGINT,
                rate_per_minute BIGINT,
                max_pending BIGINT,
                created_at DOUBLE PRECISION NOT NULL,
                updated_at DOUBLE PRECISION NOT NULL
            )
            """,
            """
            CREATE TABLE chats (
                key TEXT PRIMARY KEY,
                platform TEXT NOT NULL,
                chat_id TEXT NOT NULL,
                is_group BIGINT NOT NULL,
                title TEXT,
                daily_images BIGINT,
                created_at DOUBLE PRECISION NOT NULL,
                updated_at DOUBLE PRECISION NOT NULL
            )
            """,
            """
            CREATE TABLE jobs (
                id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                user_key TEXT NOT NULL,
                platform TEXT NOT NULL,
                chat_key TEXT NOT NULL,
                group_chat BIGINT NOT NULL,
                backend TEXT NOT NULL,
                request TEXT NOT NULL,
                route TEXT NOT NULL,
                lang TEXT NOT NULL,
                status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
                images BIGINT NOT NULL,
                charged BIGINT NOT NULL,
                quota_day TEXT NOT NULL,
                seed BIGINT NOT NULL,
                delivered BIGINT NOT NULL DEFAULT 0,
                error TEXT,
                attempts BIGINT NOT NULL DEFAULT 0,
                parent_id BIGINT REFERENCES jobs(id) ON DELETE SET NULL,
                origin TEXT,
                created_at DOUBLE PRECISION NOT NULL,
                started_at DOUBLE PRECISION,
                finished_at DOUBLE PRECISION,
                delivering_at DOUBLE PRECISION
            )
            """,
            "CREATE INDEX jobs_user_created ON jobs (user_key, created_at)",
            "CREATE INDEX jobs_user_unfinished ON jobs (user_key) WHERE status IN ('queued', 'running')",
            "CREATE INDEX jobs_unfinished ON jobs (id) WHERE status IN ('queued', 'running')",
            "CREATE INDEX jobs_day ON jobs (quota_day)",
            "CREATE UNIQUE INDEX jobs_origin ON jobs (origin) WHERE origin IS NOT NULL",
            "CREATE INDEX jobs_parent ON jobs (parent_id) WHERE parent_id IS NOT NULL",
            """
            CREATE TABLE usage (
                scope TEXT NOT NULL CHECK (scope IN ('user', 'chat')),
                key TEXT NOT NULL,
                day TEXT NOT NULL,
                images BIGINT NOT NULL,
                PRIMARY KEY (scope, key, day)
            )
            """,
            # usage.images is the sum of jobs.charged per user (or group chat) and day, kept by these triggers
            # as in SQLite: charged at admission, changed by a refund, taken off when a job is deleted.
            """
            CREATE FUNCTION jobs_usage() RETURNS trigger LANGUAGE plpgsql AS $$
            DECLARE
                delta BIGINT;
                job jobs;
            BEGIN
                IF TG_OP = 'INSERT' THEN
                    delta := NEW.charged; job := NEW;
                ELSIF TG_OP = 'UPDATE' THEN
                    delta := NEW.charged - OLD.charged; job := NEW;
                ELSE
                    delta := -OLD.charged; job := OLD;
                END IF;
                IF delta > 0 THEN
                    INSERT INTO usage VALUES ('user', job.user_key, job.quota_day, delta)
                        ON CONFLICT (scope, key, day) DO UPDATE SET images = usage.images + excluded.images;
                    IF job.group_chat <> 0 THEN
                        INSERT INTO usage VALUES ('chat', job.chat_key, job.quota_day, delta)
                            ON CONFLICT (scope, key, day) DO UPDATE SET images = usage.images + excluded.images;
                    END IF;
                ELSIF delta < 0 THEN
                    UPDATE usage SET images = GREATEST(0, images + delta)
                        WHERE scope = 'user' AND key = job.user_key AND day = job.quota_day;
                    UPDATE usage SET images = GREATEST(0, images + delta)
                        WHERE scope = 'chat' AND key = job.chat_key AND day = job.quota_day AND job.group_chat <> 0;
                    IF TG_OP = 'DELETE' THEN
                        DELETE FROM usage WHERE scope = 'user' AND key = job.user_key AND day = job.quota_day
                            AND images = 0;
                        DELETE FROM usage WHERE scope = 'chat' AND key = job.chat_key AND day = job.quota_day
                            AND images = 0;
                    END IF;
                END IF;
                RETURN NULL;
            END
            $$
            """,
            "CREATE TRIGGER jobs_charge AFTER INSERT OR DELETE ON jobs FOR EACH ROW EXECUTE FUNCTION jobs_usage()",
            """
            CREATE TRIGGER jobs_recharge AFTER UPDATE OF charged ON jobs FOR EACH ROW
                WHEN (NEW.charged <> OLD.charged) EXECUTE FUNCTION jobs_usage()
            """,
            """
            CREATE TABLE allowed_channels (
                chat_key TEXT NOT NULL,
                channel_id TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (chat_key, channel_id)
            )
            """,
            """
            CREATE TABLE inbox (
                platform TEXT NOT NULL,
                event_id BIGINT NOT NULL,
                payload TEXT NOT NULL,
                attempts BIGINT NOT NULL DEFAULT 0,
                received_at DOUBLE PRECISION NOT NULL,
                handled_at DOUBLE PRECISION,
                PRIMARY KEY (platform, event_id)
            )
            """,
        ),
    ),
    (
        2,
        "the shared queue: leases on running jobs, and each user's turn in the round-robin",
        (
            "ALTER TABLE jobs ADD COLUMN lease_until DOUBLE PRECISION",
            "ALTER TABLE jobs ADD COLUMN worker TEXT",
            # An unhandled event is its receiver's while it renews held_until (bot.chats.inbox).
            "ALTER TABLE inbox ADD COLUMN worker TEXT",
            "ALTER TABLE inbox ADD COLUMN held_until DOUBLE PRECISION",
            "CREATE INDEX jobs_running ON jobs (lease_until) WHERE status = 'running'",
            "CREATE INDEX jobs_user_queued ON jobs (user_key, id) WHERE status = 'queued'",
            # One row a user who ever queued: ``waiting`` counts their queued jobs and ``served`` orders them in
            # the round-robin, smallest first: a claim's tick once served, and below every tick (by arrival)
            # while a newcomer (never served, or nothing left of theirs queued or running since).
            """
            CREATE TABLE turns (
                user_key TEXT PRIMARY KEY,
                platform TEXT NOT NULL,
                served BIGINT NOT NULL,
                waiting BIGINT NOT NULL DEFAULT 0
            )
            """,
            "CREATE INDEX turns_next ON turns (served) WHERE waiting > 0",
            "CREATE SEQUENCE turns_served",
            f"""
            CREATE FUNCTION jobs_turns() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF TG_OP <> 'INSERT' AND OLD.status = 'queued' AND (TG_OP = 'DELETE' OR NEW.status <> 'queued') THEN
                    UPDATE turns SET waiting = waiting - 1 WHERE user_key = OLD.user_key;
                ELSIF TG_OP <> 'DELETE' AND NEW.status = 'queued' AND (TG_OP = 'INSERT' OR OLD.status <> 'queued')
                THEN
                    INSERT INTO turns VALUES (NEW.user_key, NEW.platform, NEW.id - {NEWCOMER}, 1)
                        ON CONFLICT (user_key) DO UPDATE SET waiting = turns.waiting + 1,
                        served = CASE WHEN turns.waiting > 0 OR EXISTS (SELECT 1 FROM jobs
                                      WHERE user_key = NEW.user_key AND status = 'running' AND id <> NEW.id)
                                 THEN turns.served ELSE excluded.served END;
                END IF;
                RETURN NULL;
            END
            $$
            """,
            "CREATE TRIGGER jobs_turns AFTER INSERT OR DELETE OR UPDATE OF status ON jobs "
            "FOR EACH ROW EXECUTE FUNCTION jobs_turns()",
            f"""
            INSERT INTO turns SELECT user_key, min(platform), min(id) - {NEWCOMER}, count(*)
            FROM jobs WHERE status = 'queued' GROUP BY user_key
            """,
            # Workers wait for this (LISTEN) instead of asking: a job queued, a slot freed, a job ended.
            """
            CREATE FUNCTION jobs_notify() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                PERFORM pg_notify('sdbot_jobs', '');
                RETURN NULL;
            END
            $$
            """,
            "CREATE TRIGGER jobs_notify AFTER INSERT OR UPDATE OF status, delivering_at ON jobs "
            "FOR EACH STATEMENT EXECUTE FUNCTION jobs_notify()",
        ),
    ),
    (
        3,
        "paces shared by every process: a platform's flood limits (sdbot_pace)",
        (
            # ``due`` is when the next request may leave (the virtual scheduling of a leaky bucket).
            "CREATE TABLE paces (key TEXT PRIMARY KEY, due DOUBLE PRECISION NOT NULL)",
        ),
    ),
    (
        4,
        "the picture an unfinished job draws from, when its platform cannot give it again; gone when the job ends",
        (
            "CREATE TABLE job_pictures (job_id BIGINT PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE, "
            "data BYTEA NOT NULL)",
            """
            CREATE FUNCTION job_pictures_end() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                DELETE FROM job_pictures WHERE job_id = NEW.id;
                RETURN NULL;
            END
            $$
            """,
            "CREATE TRIGGER job_pictures_end AFTER UPDATE OF status ON jobs FOR EACH ROW "
            "WHEN (NEW.status IN ('done', 'failed', 'cancelled')) EXECUTE FUNCTION job_pictures_end()",
        ),
    ),
    (
        5,
        "the block list's rules, the prompts it refused (for admins and stats), and chats' /draw defaults",
        (
            "CREATE TABLE block_rules (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, kind TEXT NOT NULL, "
            "pattern TEXT NOT NULL, added_by TEXT NOT NULL, created_at DOUBLE PRECISION NOT NULL, "
            "level TEXT NOT NULL, UNIQUE (kind, pattern))",
            "CREATE TABLE refusals (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, user_key TEXT NOT NULL, "
            "chat_key TEXT NOT NULL, rule_id BIGINT, pattern TEXT NOT NULL, field TEXT NOT NULL, "
            "quota_day TEXT NOT NULL, at DOUBLE PRECISION NOT NULL)",
            "CREATE INDEX refusals_day ON refusals (quota_day, chat_key)",
            "CREATE TABLE chat_defaults (chat_key TEXT NOT NULL, name TEXT NOT NULL, value TEXT NOT NULL, "
            "updated_by TEXT NOT NULL, updated_at DOUBLE PRECISION NOT NULL, PRIMARY KEY (chat_key, name))",
        ),
    ),
)
LATEST = MIGRATIONS[-1][0]


async def migrate(conn: asyncpg.Connection, shown: str, *, readonly: bool, functions: tuple[str, ...] = ()) -> int:
    """Apply the missing migrations (each once, whatever other processes start at the same moment), or with
    ``readonly`` only check that none is missing. ``functions``: ``CREATE OR REPLACE FUNCTION`` statements run
    at every start, under the same lock, so the server's functions are always the running code's. ``shown``
    names the database in errors (no password)."""
    async with conn.transaction():
        if not readonly:
            await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version BIGINT PRIMARY KEY, description TEXT NOT NULL, applied_at DOUBLE PRECISION NOT NULL)"
            )
        exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
        current = int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations")) if exists else 0
        if current > LATEST:
            raise ConfigError("db_too_new", variable="SDBOT_DB", path=shown, found=current, known=LATEST)
        if readonly and current < LATEST:
            raise ConfigError("db_outdated", variable="SDBOT_DB", path=shown, found=current, known=LATEST)
        for version, description, statements in MIGRATIONS:
            if version <= current:
                continue
            for statement in statements:
                await conn.execute(statement)
            await conn.execute("INSERT INTO schema_migrations VALUES ($1, $2, $3)", version, description, time.time())
            current = version
        if not readonly:
            for statement in functions:
                await conn.execute(statement)
    return current
