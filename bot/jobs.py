"""Job records: one accepted /draw request, from admission to delivery, in the ``jobs`` table.

A job is ``queued`` at admission (see :mod:`bot.quotas`), ``running`` while a worker generates and delivers
it, and ends ``done`` (delivered), ``failed`` (with an error code) or ``cancelled``. It moves to ``done`` only
after the adapter's delivery succeeded, so a crash at any point leaves it ``queued`` or ``running`` and the
next start re-runs or refunds it. Every transition is one conditional ``UPDATE ... RETURNING``: of two
concurrent transitions exactly one wins, and a refund (``charged`` set to 0) can only happen once.

``route`` is the adapter's own JSON (chat id, message to reply to, interaction token...): everything it needs
to deliver after a restart, stored verbatim.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, cast

from bot.i18n import Lang
from bot.request import DrawRequest
from bot.store import Store

JobStatus = Literal["queued", "running", "done", "failed", "cancelled"]
UNFINISHED: tuple[JobStatus, ...] = ("queued", "running")

# A job found unfinished at start this many times already (it was running each time the process died) is
# failed instead of re-run, so one poisonous request cannot crash the bot forever.
MAX_ATTEMPTS = 3
# Ids come from people too (/cancel 12, a button's data): beyond SQLite's integer range none can exist, and
# passing one would raise OverflowError rather than find nothing.
MAX_ID = 2**63 - 1


def possible_id(job_id: int) -> bool:
    return 0 < job_id <= MAX_ID


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    user: str  # "telegram:123"
    platform: str
    chat: str  # "telegram:-100123"; on Discord the guild for server channels
    group_chat: bool
    backend: str
    request: DrawRequest  # as the user asked (seed None = random)
    route: dict[str, Any]
    lang: Lang  # the language of this job's messages, fixed at admission
    status: JobStatus
    images: int  # requested
    charged: int  # counted against quotas now; 0 after a refund
    quota_day: str
    seed: int  # the seed this job draws with (the user's, or drawn at admission)
    delivered: int
    error: str | None
    attempts: int
    parent_id: int | None  # the job this one re-runs ("again")
    created_at: float
    started_at: float | None
    finished_at: float | None
    origin: str | None = None  # the platform event that asked for it (see bot.quotas: one job per event)
    delivering_at: float | None = None  # when this attempt began sending its pictures (None: not yet)

    @property
    def user_id(self) -> str:
        return self.user.split(":", 1)[1]

    @property
    def seeded_request(self) -> DrawRequest:
        """The request exactly as it is generated: with this job's seed."""
        return self.request.with_seed(self.seed)

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Job:
        return cls(
            id=row["id"],
            user=row["user_key"],
            platform=row["platform"],
            chat=row["chat_key"],
            group_chat=bool(row["group_chat"]),
            backend=row["backend"],
            request=DrawRequest.from_json(row["request"]),
            route=json.loads(row["route"]),
            lang=cast(Lang, row["lang"]),
            status=cast(JobStatus, row["status"]),
            images=row["images"],
            charged=row["charged"],
            quota_day=row["quota_day"],
            seed=row["seed"],
            delivered=row["delivered"],
            error=row["error"],
            attempts=row["attempts"],
            parent_id=row["parent_id"],
            created_at=row["created_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            origin=row["origin"],
            delivering_at=row["delivering_at"],
        )


@dataclass(frozen=True, slots=True)
class DayStats:
    """``/admin stats`` and ``sdbot stats``: one quota day."""

    day: str
    jobs: dict[str, int]  # status -> count
    images_delivered: int
    images_charged: int
    failures: list[tuple[str, int]]  # error code -> count, most frequent first
    busiest: list[tuple[str, int]]  # user key -> images charged, most first


class JobStore:
    """Reads and state transitions of jobs. Admission (the INSERT) belongs to :class:`bot.quotas.Quotas`."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock

    async def get(self, job_id: int) -> Job | None:
        if not possible_id(job_id):
            return None
        row = await self._store.fetchone("SELECT * FROM jobs WHERE id = ?", (job_id,))
        return Job.from_row(row) if row else None

    async def unfinished(self) -> list[Job]:
        """Queued and running jobs, oldest first (what a start must recover)."""
        rows = await self._store.fetchall("SELECT * FROM jobs WHERE status IN ('queued', 'running') ORDER BY id")
        return [Job.from_row(r) for r in rows]

    async def claim(self, job_id: int, known: Job | None = None) -> Job | None:
        """queued -> running. ``None`` when the job is no longer queued (cancelled meanwhile). ``known``: the
        job as this process admitted it, returned with its new state rather than rebuilt from its row (which
        parses its request and route again); nothing else about a queued job changes meanwhile but its stored
        route, which the job objects already handed out do not follow anyway (see ``Core.update_route``)."""
        claim = (
            "UPDATE jobs SET status = 'running', started_at = ?, attempts = attempts + 1, delivering_at = NULL "
            "WHERE id = ? AND status = 'queued' RETURNING "
        )
        if known is None:
            return await self._one(claim + "*", (self._clock(), job_id))
        row = await self._store.fetchone(claim + "started_at, attempts", (self._clock(), job_id))
        if row is None:
            return None
        return dataclasses.replace(
            known, status="running", started_at=row["started_at"], attempts=row["attempts"], delivering_at=None
        )

    async def delivering(self, job_id: int) -> None:
        """Record that the running job's pictures are about to be sent: should the process die now, they may
        be in the chat already, and start-up recovery says so instead of "interrupted" (see bot.core)."""
        await self._store.execute(
            "UPDATE jobs SET delivering_at = ? WHERE id = ? AND status = 'running'", (self._clock(), job_id)
        )

    async def requeue(self, job_id: int) -> Job | None:
        """running -> queued, for a job a dead process left running."""
        return await self._one(
            "UPDATE jobs SET status = 'queued', started_at = NULL WHERE id = ? AND status = 'running' RETURNING *",
            (job_id,),
        )

    async def finish(self, job_id: int, *, delivered: int, charged: int) -> bool:
        """running -> done, after delivery. ``charged`` may only go down (filtered images refunded). False when
        the job was not running. (Only the id comes back: its one caller needs no row, and building a Job per
        delivered job cost a JSON parse of its request and route.)"""
        row = await self._store.fetchone(
            "UPDATE jobs SET status = 'done', delivered = ?, charged = min(charged, ?), finished_at = ? "
            "WHERE id = ? AND status = 'running' RETURNING id",
            (delivered, charged, self._clock(), job_id),
        )
        return row is not None

    async def fail(self, job_id: int, code: str, *, refund: bool) -> Job | None:
        """queued/running -> failed with ``code``; with ``refund`` its images stop counting. ``None`` when
        the job had already ended (so a failure is reported and refunded at most once)."""
        return await self._one(
            "UPDATE jobs SET status = 'failed', error = ?, finished_at = ?, "
            "charged = CASE WHEN ? THEN 0 ELSE charged END "
            "WHERE id = ? AND status IN ('queued', 'running') RETURNING *",
            (code, self._clock(), int(refund), job_id),
        )

    async def cancel(self, job_id: int, *, owner: str | None) -> Job | None:
        """queued -> cancelled and refunded; ``owner`` restricts it to that user's job (None: anyone's)."""
        if not possible_id(job_id):
            return None
        return await self._one(
            "UPDATE jobs SET status = 'cancelled', error = 'cancelled', charged = 0, finished_at = ? "
            "WHERE id = ? AND status = 'queued' AND (? IS NULL OR user_key = ?) RETURNING *",
            (self._clock(), job_id, owner, owner),
        )

    async def update_route(self, job_id: int, route: dict[str, Any]) -> bool:
        """Replace the job's stored ``route`` (the adapter learned where it shows the job, e.g. its status
        message, and needs that after a restart). False when there is no such job. Lazy (see
        :meth:`bot.store.Store.fetchall`): only a restart reads it."""
        if not possible_id(job_id):
            return False
        rows = await self._store.fetchall(
            "UPDATE jobs SET route = ? WHERE id = ? RETURNING id",
            (json.dumps(route, ensure_ascii=False, separators=(",", ":")), job_id),
            lazy=True,
        )
        return bool(rows)

    async def cancel_all(self, owner: str) -> list[Job]:
        """Cancel and refund every queued job of ``owner``."""
        rows = await self._store.fetchall(
            "UPDATE jobs SET status = 'cancelled', error = 'cancelled', charged = 0, finished_at = ? "
            "WHERE user_key = ? AND status = 'queued' RETURNING *",
            (self._clock(), owner),
        )
        return sorted((Job.from_row(r) for r in rows), key=lambda j: j.id)

    async def stats(self, day: str, *, top: int = 5, chat: str | None = None) -> DayStats:
        """One quota day, of every chat or only of ``chat`` (a Discord server's own statistics)."""
        where = "quota_day = :day AND (:chat IS NULL OR chat_key = :chat)"
        values = {"day": day, "chat": chat, "top": top}
        by_status = await self._store.fetchall(
            "SELECT status, count(*) AS n, sum(delivered) AS delivered, sum(charged) AS charged "
            f"FROM jobs WHERE {where} GROUP BY status",
            values,
        )
        failures = await self._store.fetchall(
            f"SELECT error, count(*) AS n FROM jobs WHERE {where} AND status = 'failed' "
            "GROUP BY error ORDER BY n DESC, error",
            values,
        )
        busiest = await self._store.fetchall(
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

    async def _one(self, sql: str, params: tuple[Any, ...]) -> Job | None:
        row = await self._store.fetchone(sql, params)
        return Job.from_row(row) if row else None
