"""Jobs in SQLite: admission as one ``INSERT ... SELECT ... WHERE <every limit holds>``, transitions as
conditional ``UPDATE ... RETURNING``."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from typing import Any

from bot.draw.request import DrawRequest
from bot.jobs.job import DayStats, Job, possible_id
from bot.quotas.rules import RATE_WINDOW, Admission, Limits
from bot.storage.sqlite.database import Database, Params

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
_UNFINISHED = "status IN ('queued', 'running')"
_RENAMED = {"user_key": "user", "chat_key": "chat"}
_OLD = "quota_day < ? AND status IN ('done', 'failed', 'cancelled')"


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


_FIELDS = {field.name for field in dataclasses.fields(Job)}


def job_from_row(row: Any) -> Job:
    """A job from a row of any engine (``keys()`` and ``row[key]``)."""
    values = {_RENAMED.get(key, key): row[key] for key in row.keys()}  # noqa: SIM118 (a Row is no dict)
    values.update(
        group_chat=bool(values["group_chat"]),
        request=DrawRequest.from_json(values["request"]),
        route=json.loads(values["route"]),
    )
    return Job(**{key: value for key, value in values.items() if key in _FIELDS})


def route_json(value: dict[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


class SQLiteJobs:
    def __init__(self, db: Database, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock

    async def admit(self, a: Admission, limits: Limits, day: str, now: float) -> Job | None:
        params = limit_params(a.user.key, a.chat.key, limits, day, now) | {
            "platform": a.user.platform,
            "group_chat": int(a.chat.is_group),
            "backend": a.backend,
            "request": a.request.to_json(),
            "route": route_json(a.route),
            "lang": a.lang,
            "n": a.request.n,
            "seed": a.seed,
            "parent_id": a.parent_id,
            "exempt": int(a.exempt),
            "origin": a.origin,
        }
        return await self._one(_ADMIT, params)

    async def by_origin(self, origin: str) -> Job | None:
        return await self._one("SELECT * FROM jobs WHERE origin = ?", (origin,))

    async def get(self, job_id: int) -> Job | None:
        if not possible_id(job_id):
            return None
        return await self._one("SELECT * FROM jobs WHERE id = ?", (job_id,))

    async def unfinished(self) -> list[Job]:
        rows = await self._db.fetchall(f"SELECT * FROM jobs WHERE {_UNFINISHED} ORDER BY id")
        return [job_from_row(r) for r in rows]

    async def unfinished_counts(self) -> dict[str, int]:
        rows = await self._db.fetchall(f"SELECT status, count(*) AS n FROM jobs WHERE {_UNFINISHED} GROUP BY status")
        return {row["status"]: int(row["n"]) for row in rows}

    async def claim(self, job_id: int) -> Job | None:
        return await self._one(
            "UPDATE jobs SET status = 'running', started_at = ?, attempts = attempts + 1, delivering_at = NULL "
            "WHERE id = ? AND status = 'queued' RETURNING *",
            (self._clock(), job_id),
        )

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

    async def finish(self, job_id: int, *, delivered: int, charged: int, attempt: int | None = None) -> bool:
        row = await self._db.fetchone(
            "UPDATE jobs SET status = 'done', delivered = ?, charged = min(charged, ?), finished_at = ? "
            "WHERE id = ? AND status = 'running' AND (? IS NULL OR attempts = ?) RETURNING id",
            (delivered, charged, self._clock(), job_id, attempt, attempt),
        )
        return row is not None

    async def fail(self, job_id: int, code: str, *, refund: bool, attempt: int | None = None) -> Job | None:
        return await self._one(
            "UPDATE jobs SET status = 'failed', error = ?, finished_at = ?, "
            "charged = CASE WHEN ? THEN 0 ELSE charged END "
            f"WHERE id = ? AND {_UNFINISHED} AND (? IS NULL OR attempts = ?) RETURNING *",
            (code, self._clock(), int(refund), job_id, attempt, attempt),
        )

    async def cancel(self, job_id: int, *, owner: str | None) -> Job | None:
        if not possible_id(job_id):
            return None
        return await self._one(
            "UPDATE jobs SET status = 'cancelled', error = 'cancelled', charged = 0, finished_at = ? "
            "WHERE id = ? AND status = 'queued' AND (? IS NULL OR user_key = ?) RETURNING *",
            (self._clock(), job_id, owner, owner),
        )

    async def cancel_all(self, owner: str) -> list[Job]:
        rows = await self._db.fetchall(
            "UPDATE jobs SET status = 'cancelled', error = 'cancelled', charged = 0, finished_at = ? "
            f"WHERE user_key = ? AND {_UNFINISHED} AND status = 'queued' RETURNING *",  # the partial index's terms
            (self._clock(), owner),
        )
        return sorted((job_from_row(r) for r in rows), key=lambda j: j.id)

    async def update_route(self, job_id: int, route: dict[str, Any]) -> bool:
        if not possible_id(job_id):
            return False
        rows = await self._db.fetchall(
            "UPDATE jobs SET route = ? WHERE id = ? RETURNING id", (route_json(route), job_id)
        )
        return bool(rows)

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
        return DayStats(
            day=day,
            jobs={r["status"]: r["n"] for r in by_status},
            images_delivered=sum(r["delivered"] or 0 for r in by_status),
            images_charged=sum(r["charged"] or 0 for r in by_status),
            failures=[(r["error"] or "internal", r["n"]) for r in failures],
            busiest=[(r["user_key"], r["images"]) for r in busiest],
        )

    async def count_finished_before(self, day: str) -> int:
        row = await self._db.fetchone(f"SELECT count(*) FROM jobs WHERE {_OLD}", (day,))
        return int(row[0]) if row else 0

    async def delete_finished_before(self, day: str, limit: int) -> int:
        # The triggers of migration 4 take the images off the usage counters and unlink re-runs.
        rows = await self._db.fetchall(
            f"DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE {_OLD} ORDER BY quota_day, id LIMIT ?) "
            "RETURNING id",
            (day, limit),
        )
        return len(rows)

    async def _one(self, sql: str, params: Params) -> Job | None:
        row = await self._db.fetchone(sql, params)
        return job_from_row(row) if row else None
