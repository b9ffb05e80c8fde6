"""Jobs in PostgreSQL: admission under a per-chat then per-user lock, transitions as conditional updates."""

from __future__ import annotations

from bot.jobs.job import DayStats, Job, possible_id
from bot.quotas.rules import Admission, Limits
from bot.storage.port import CANCELLED
from bot.storage.portable import PortableJobs, route_json
from bot.storage.postgres.database import NAMED
from bot.storage.sqlite.jobs import limit_params

LIMITS = """
    SELECT coalesce(u.banned, 0) AS banned,
           coalesce(u.daily_images, :daily) AS daily_images,
           coalesce(u.rate_per_minute, :rate) AS rate_per_minute,
           coalesce(u.max_pending, :max_pending) AS max_pending,
           coalesce(c.daily_images, :chat_daily) AS chat_daily_images,
           u.daily_images IS NOT NULL AS daily_override,
           c.daily_images IS NOT NULL AS chat_override
    FROM (SELECT 1) AS one LEFT JOIN users AS u ON u.key = :user::text LEFT JOIN chats AS c ON c.key = :chat::text
"""
PENDING = "(SELECT count(*) FROM jobs WHERE user_key = :user AND status IN ('queued', 'running'))"
RECENT = "(SELECT count(*) FROM jobs WHERE user_key = :user AND created_at > :now::float8 - :window::float8)"
USED = "coalesce((SELECT images FROM usage WHERE scope = 'user' AND key = :user AND day = :day::text), 0)"
CHAT_USED = "coalesce((SELECT images FROM usage WHERE scope = 'chat' AND key = :chat AND day = :day::text), 0)"

_ADMIT = f"""
    INSERT INTO jobs (user_key, platform, chat_key, group_chat, backend, request, route, lang, status,
                      images, charged, quota_day, seed, parent_id, origin, created_at)
    SELECT :user, :platform, :chat, :group_chat, :backend, :request, :route, :lang, 'queued',
           :n, :n, :day, :seed, :parent_id, :origin, :now
    FROM ({LIMITS}) AS lim
    WHERE NOT EXISTS (SELECT 1 FROM jobs WHERE origin = :origin::text) AND (:exempt::boolean OR (
        lim.banned = 0
        AND {PENDING} < lim.max_pending
        AND (lim.rate_per_minute = 0 OR {RECENT} < lim.rate_per_minute)
        AND (lim.daily_images = 0 OR {USED} + :n::bigint <= lim.daily_images)
        AND (:group_chat::bigint = 0 OR lim.chat_daily_images = 0 OR {CHAT_USED} + :n <= lim.chat_daily_images)
    ))
    ON CONFLICT DO NOTHING
    RETURNING *
"""
# The admission's parameters and their types: the arguments of the function that runs it on the server.
_ARGUMENTS = {
    "user": "text", "chat": "text", "now": "float8", "window": "float8", "day": "text", "daily": "bigint",
    "rate": "bigint", "max_pending": "bigint", "chat_daily": "bigint", "platform": "text", "group_chat": "bigint",
    "backend": "text", "request": "text", "route": "text", "lang": "text", "n": "bigint", "seed": "bigint",
    "parent_id": "bigint", "exempt": "boolean", "origin": "text",
}  # fmt: skip
# One round trip: the chat's lock (group chats only), then the user's, in this order everywhere so that two
# admissions never wait on each other; then the insert, which (a new statement under READ COMMITTED) sees every
# admission committed before the locks were granted. Replaced at each start, so it is always this code's.
ADMIT_FUNCTION = f"""
    CREATE OR REPLACE FUNCTION sdbot_admit({", ".join(f"p_{name} {kind}" for name, kind in _ARGUMENTS.items())})
    RETURNS SETOF jobs LANGUAGE plpgsql AS $fn$
    BEGIN
        IF p_group_chat <> 0 THEN
            PERFORM pg_advisory_xact_lock(1, hashtext(p_chat));
        END IF;
        PERFORM pg_advisory_xact_lock(2, hashtext(p_user));
        RETURN QUERY {NAMED.sub(lambda match: "p_" + match.group(1), _ADMIT)};
    END
    $fn$
"""
_CALL = f"SELECT * FROM sdbot_admit({', '.join(f':{name}' for name in _ARGUMENTS)})"
_UNFINISHED = "status IN ('queued', 'running')"


class PostgresJobs(PortableJobs):
    async def _admit(self, a: Admission, limits: Limits, day: str, now: float) -> Job | None:
        params = limit_params(a.user.key, a.chat.key, limits, day, now) | {
            "platform": a.user.platform,
            "group_chat": int(a.chat.is_group),
            "backend": a.backend,
            "request": a.request.to_json(),
            "route": route_json(a.route),
            "lang": a.lang,
            "n": a.images,
            "seed": a.seed,
            "parent_id": a.parent_id,
            "exempt": a.exempt,
            "origin": a.origin,
        }
        # READ COMMITTED sees what committed before each statement: with the chat's, then the user's lock
        # held, no other process can admit against the same counters between this check and this insert.
        return await self._one(_CALL, params)

    async def delivering(self, job_id: int, attempt: int) -> bool:
        # Under the shared queue also only while the lease holds: a worker paused past it delivers nothing.
        now = self._clock()
        row = await self._db.fetchone(
            "UPDATE jobs SET delivering_at = $1 WHERE id = $2 AND status = 'running' AND attempts = $3 "
            "AND (lease_until IS NULL OR lease_until > $1) RETURNING id",
            (now, job_id, attempt),
        )
        return row is not None

    async def requeue(self, job_id: int) -> Job | None:
        return await self._one(
            "UPDATE jobs SET status = 'queued', started_at = NULL, lease_until = NULL, worker = NULL "
            "WHERE id = $1 AND status = 'running' RETURNING *",
            (job_id,),
        )

    async def finish(
        self, job_id: int, *, delivered: int, charged: int, attempt: int | None = None, service: str | None = None
    ) -> bool:
        row = await self._db.fetchone(
            "UPDATE jobs SET status = 'done', delivered = $1, charged = LEAST(charged, $2), finished_at = $3, "
            "backend = COALESCE($6::text, backend) "
            "WHERE id = $4 AND status = 'running' AND ($5::bigint IS NULL OR attempts = $5) RETURNING id",
            (delivered, charged, self._clock(), job_id, attempt, service),
        )
        return row is not None

    async def fail(self, job_id: int, code: str, *, refund: bool, attempt: int | None = None) -> Job | None:
        return await self._one(
            "UPDATE jobs SET status = 'failed', error = $1, finished_at = $2, "
            "charged = CASE WHEN $3 THEN 0 ELSE charged END "
            f"WHERE id = $4 AND {_UNFINISHED} AND ($5::bigint IS NULL OR attempts = $5) RETURNING *",
            (code, self._clock(), refund, job_id, attempt),
        )

    async def cancel(self, job_id: int, *, owner: str | None, running: bool = False) -> Job | None:
        if not possible_id(job_id):
            return None
        job = await self._one(
            "UPDATE jobs SET status = 'cancelled', error = 'cancelled', charged = 0, finished_at = $1 "
            "WHERE id = $2 AND (status = 'queued' OR ($4 AND status = 'running' AND delivering_at IS NULL)) "
            "AND ($3::text IS NULL OR user_key = $3) RETURNING *",
            (self._clock(), job_id, owner, running),
        )
        if job is not None and running:  # whichever process draws it stops drawing (bot.core, CANCELLED)
            await self._db.execute("SELECT pg_notify($1, $2)", (CANCELLED, str(job.id)))
        return job

    async def stats(self, day: str, *, top: int = 5, chat: str | None = None) -> DayStats:
        where = "quota_day = $1 AND ($2::text IS NULL OR chat_key = $2)"
        by_status = await self._db.fetchall(
            "SELECT status, count(*) AS n, sum(delivered) AS delivered, sum(charged) AS charged "
            f"FROM jobs WHERE {where} GROUP BY status",
            (day, chat),
        )
        failures = await self._db.fetchall(
            f"SELECT error, count(*) AS n FROM jobs WHERE {where} AND status = 'failed' "
            "GROUP BY error ORDER BY n DESC, error",
            (day, chat),
        )
        busiest = await self._db.fetchall(
            f"SELECT user_key, sum(charged) AS images FROM jobs WHERE {where} "
            "GROUP BY user_key HAVING sum(charged) > 0 ORDER BY images DESC, user_key LIMIT $3",
            (day, chat, top),
        )
        services = await self._db.fetchall(
            f"SELECT backend, count(*) AS n, sum(delivered) AS images FROM jobs WHERE {where} AND status = 'done' "
            "GROUP BY backend ORDER BY backend",
            (day, chat),
        )
        return DayStats(
            day=day,
            jobs={r["status"]: int(r["n"]) for r in by_status},
            images_delivered=sum(int(r["delivered"] or 0) for r in by_status),
            images_charged=sum(int(r["charged"] or 0) for r in by_status),
            failures=[(r["error"] or "internal", int(r["n"])) for r in failures],
            busiest=[(r["user_key"], int(r["images"])) for r in busiest],
            services=[(r["backend"], int(r["n"]), int(r["images"] or 0)) for r in services],
        )
