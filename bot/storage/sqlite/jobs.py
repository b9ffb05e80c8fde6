"""Jobs in SQLite: admission as one ``INSERT ... SELECT ... WHERE <every limit holds>``, transitions as
conditional ``UPDATE ... RETURNING``."""

from __future__ import annotations

from typing import Any

from bot.jobs.job import DayStats, Job, possible_id
from bot.quotas.rules import RATE_WINDOW, Admission, Limits
from bot.storage.portable import UNFINISHED as _UNFINISHED
from bot.storage.portable import PortableJobs, route_json

# The effective limits: overrides where an admin set one, else the configured defaults.
LIMITS = """
    SELECT coalesce(u.banned, 0) AS banned,
           coalesce(u.daily_images, :daily) AS daily_images,
           coalesce(u.rate_per_minute, :rate) AS rate_per_minute,
           coalesce(u.max_pending, :max_pending) AS max_pending,
           coalesce(c.daily_images, :chat_daily) AS chat_daily_images,
           u.daily_images IS NOT NULL AS daily_override,
           c.daily_images IS NOT NULL AS chat_override
    FROM (SELECT 1) LEFT JOIN users AS u ON u.key = :user LEFT JOIN chats AS c ON c.key = :chat
"""
PENDING = "(SELECT count(*) FROM jobs WHERE user_key = :user AND status IN ('queued', 'running'))"
RECENT = "(SELECT count(*) FROM jobs WHERE user_key = :user AND created_at > :now - :window)"
USED = "coalesce((SELECT images FROM usage WHERE scope = 'user' AND key = :user AND day = :day), 0)"
CHAT_USED = "coalesce((SELECT images FROM usage WHERE scope = 'chat' AND key = :chat AND day = :day), 0)"

_ADMIT = f"""
    INSERT INTO jobs (user_key, platform, chat_key, group_chat, backend, request, route, lang, status,
                      images, charged, quota_day, seed, parent_id, origin, created_at)
    SELECT :user, :platform, :chat, :group_chat, :backend, :request, :route, :lang, 'queued',
           :n, :n, :day, :seed, :parent_id, :origin, :now
    FROM ({LIMITS}) AS lim
    WHERE NOT EXISTS (SELECT 1 FROM jobs WHERE origin = :origin) AND (:exempt OR (
        NOT lim.banned
        AND {PENDING} < lim.max_pending
        AND (lim.rate_per_minute = 0 OR {RECENT} < lim.rate_per_minute)
        AND (lim.daily_images = 0 OR {USED} + :n <= lim.daily_images)
        AND (NOT :group_chat OR lim.chat_daily_images = 0 OR {CHAT_USED} + :n <= lim.chat_daily_images)
    ))
    RETURNING *
"""


def limit_params(user_key: str, chat_key: str, limits: Limits, day: str, now: float) -> dict[str, Any]:
    return {
        "user": user_key,
        "chat": chat_key,
        "now": now,
        "window": RATE_WINDOW,
        "day": day,
        "daily": limits.daily_images,
        "rate": limits.rate_per_minute,
        "max_pending": limits.max_pending,
        "chat_daily": limits.chat_daily_images,
    }


class SQLiteJobs(PortableJobs):
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
            "exempt": int(a.exempt),
            "origin": a.origin,
        }
        return await self._one(_ADMIT, params)

    async def delivering(self, job_id: int, attempt: int) -> bool:
        row = await self._db.fetchone(
            "UPDATE jobs SET delivering_at = ? WHERE id = ? AND status = 'running' AND attempts = ? RETURNING id",
            (self._clock(), job_id, attempt),
        )
        return row is not None

    async def requeue(self, job_id: int) -> Job | None:
        return await self._one(
            "UPDATE jobs SET status = 'queued', started_at = NULL WHERE id = ? AND status = 'running' RETURNING *",
            (job_id,),
        )

    async def finish(
        self, job_id: int, *, delivered: int, charged: int, attempt: int | None = None, service: str | None = None
    ) -> bool:
        row = await self._db.fetchone(
            "UPDATE jobs SET status = 'done', delivered = ?, charged = min(charged, ?), finished_at = ?, "
            "backend = coalesce(?, backend) "
            "WHERE id = ? AND status = 'running' AND (? IS NULL OR attempts = ?) RETURNING id",
            (delivered, charged, self._clock(), service, job_id, attempt, attempt),
        )
        return row is not None

    async def fail(self, job_id: int, code: str, *, refund: bool, attempt: int | None = None) -> Job | None:
        return await self._one(
            "UPDATE jobs SET status = 'failed', error = ?, finished_at = ?, "
            "charged = CASE WHEN ? THEN 0 ELSE charged END "
            f"WHERE id = ? AND {_UNFINISHED} AND (? IS NULL OR attempts = ?) RETURNING *",
            (code, self._clock(), int(refund), job_id, attempt, attempt),
        )

    async def cancel(self, job_id: int, *, owner: str | None, running: bool = False) -> Job | None:
        if not possible_id(job_id):
            return None
        return await self._one(
            "UPDATE jobs SET status = 'cancelled', error = 'cancelled', charged = 0, finished_at = ? "
            "WHERE id = ? AND (status = 'queued' OR (? AND status = 'running' AND delivering_at IS NULL)) "
            "AND (? IS NULL OR user_key = ?) RETURNING *",
            (self._clock(), job_id, int(running), owner, owner),
        )

    async def stats(self, day: str, *, top: int = 5, chat: str | None = None) -> DayStats:
        where = "quota_day = :day AND (:chat IS NULL OR chat_key = :chat)"
        values = {"day": day, "chat": chat, "top": top}
        by_status = await self._db.fetchall(
            "SELECT status, count(*) AS n, sum(delivered) AS delivered, sum(charged) AS charged "
            f"FROM jobs WHERE {where} GROUP BY status",
            values,
        )
        failures = await self._db.fetchall(
            f"SELECT error, count(*) AS n FROM jobs WHERE {where} AND status = 'failed' "
            "GROUP BY error ORDER BY n DESC, error",
            values,
        )
        busiest = await self._db.fetchall(
            f"SELECT user_key, sum(charged) AS images FROM jobs WHERE {where} "
            "GROUP BY user_key HAVING images > 0 ORDER BY images DESC, user_key LIMIT :top",
            values,
        )
        services = await self._db.fetchall(
            f"SELECT backend, count(*) AS n, sum(delivered) AS images FROM jobs WHERE {where} AND status = 'done' "
            "GROUP BY backend ORDER BY backend",
            values,
        )
        return DayStats(
            day=day,
            jobs={r["status"]: r["n"] for r in by_status},
            images_delivered=sum(r["delivered"] or 0 for r in by_status),
            images_charged=sum(r["charged"] or 0 for r in by_status),
            failures=[(r["error"] or "internal", r["n"]) for r in failures],
            busiest=[(r["user_key"], r["images"]) for r in busiest],
            services=[(r["backend"], r["n"], r["images"] or 0) for r in services],
        )
