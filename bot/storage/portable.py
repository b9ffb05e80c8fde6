"""Records whose SQL both engines run as written (``?`` placeholders, which the PostgreSQL engine numbers):
the allowed channels, the inbox of platform events, and the job statements that are the same in both."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from bot.draw.request import DrawRequest
from bot.jobs.job import Job, possible_id
from bot.moderation.rules import Refusal, Rule
from bot.quotas.rules import Admission, Limits
from bot.storage.port import HeldEvent

UNFINISHED = "status IN ('queued', 'running')"
_OLD = "quota_day < ? AND status IN ('done', 'failed', 'cancelled')"
_RENAMED = {"user_key": "user", "chat_key": "chat"}
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


Params = Sequence[Any] | Mapping[str, Any]


class Statements(Protocol):
    """What records need of an engine's connection: statements with ``?`` parameters (or ``:name`` ones, each
    engine in its own SQL), and transactions."""

    async def fetchall(self, sql: str, params: Params = ()) -> Sequence[Any]: ...
    async def fetchone(self, sql: str, params: Params = ()) -> Any: ...
    async def execute(self, sql: str, params: Params = ()) -> None: ...
    def transaction(self) -> AbstractAsyncContextManager[None]: ...


class PortableJobs:
    """The job statements both engines run alike; each engine's class adds admission and the transitions
    whose SQL differs (types, functions, the shared queue's lease)."""

    def __init__(self, db: Statements, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock

    async def admit(self, a: Admission, limits: Limits, day: str, now: float) -> Job | None:
        if a.picture is None:
            return await self._admit(a, limits, day, now)
        async with self._db.transaction():  # the job and its picture, or neither
            job = await self._admit(a, limits, day, now)
            if job is not None:
                await self._db.execute("INSERT INTO job_pictures (job_id, data) VALUES (?, ?)", (job.id, a.picture))
        return job

    async def _admit(self, a: Admission, limits: Limits, day: str, now: float) -> Job | None:
        raise NotImplementedError  # each engine's one statement

    async def picture(self, job_id: int) -> bytes | None:
        row = await self._db.fetchone("SELECT data FROM job_pictures WHERE job_id = ?", (job_id,))
        return None if row is None else bytes(row["data"])

    async def by_origin(self, origin: str) -> Job | None:
        return await self._one("SELECT * FROM jobs WHERE origin = ?", (origin,))

    async def get(self, job_id: int) -> Job | None:
        if not possible_id(job_id):
            return None
        return await self._one("SELECT * FROM jobs WHERE id = ?", (job_id,))

    async def unfinished(self) -> list[Job]:
        rows = await self._db.fetchall(f"SELECT * FROM jobs WHERE {UNFINISHED} ORDER BY id")
        return [job_from_row(r) for r in rows]

    async def unfinished_counts(self) -> dict[str, int]:
        rows = await self._db.fetchall(f"SELECT status, count(*) AS n FROM jobs WHERE {UNFINISHED} GROUP BY status")
        return {row["status"]: int(row["n"]) for row in rows}

    async def claim(self, job_id: int) -> Job | None:
        return await self._one(
            "UPDATE jobs SET status = 'running', started_at = ?, attempts = attempts + 1, delivering_at = NULL "
            "WHERE id = ? AND status = 'queued' RETURNING *",
            (self._clock(), job_id),
        )

    async def cancel_all(self, owner: str) -> list[Job]:
        rows = await self._db.fetchall(
            "UPDATE jobs SET status = 'cancelled', error = 'cancelled', charged = 0, finished_at = ? "
            f"WHERE user_key = ? AND {UNFINISHED} AND status = 'queued' RETURNING *",  # the partial index's terms
            (self._clock(), owner),
        )
        return sorted((job_from_row(r) for r in rows), key=lambda j: j.id)

    async def update_route(self, job_id: int, route: dict[str, Any]) -> bool:
        if not possible_id(job_id):
            return False
        sql = "UPDATE jobs SET route = ? WHERE id = ? RETURNING id"
        return bool(await self._db.fetchall(sql, (route_json(route), job_id)))

    async def count_finished_before(self, day: str) -> int:
        row = await self._db.fetchone(f"SELECT count(*) AS n FROM jobs WHERE {_OLD}", (day,))
        return int(row["n"]) if row else 0

    async def delete_finished_before(self, day: str, limit: int) -> int:
        # The engines' triggers take the images off the usage counters and unlink re-runs.
        rows = await self._db.fetchall(
            f"DELETE FROM jobs WHERE id IN (SELECT id FROM jobs WHERE {_OLD} ORDER BY quota_day, id LIMIT ?) "
            "RETURNING id",
            (day, limit),
        )
        return len(rows)

    async def _one(self, sql: str, params: Params) -> Job | None:
        row = await self._db.fetchone(sql, params)
        return job_from_row(row) if row else None


class PortableChannels:
    def __init__(self, db: Statements, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock

    async def allowed(self, chat_key: str) -> list[str]:
        rows = await self._db.fetchall(
            "SELECT channel_id FROM allowed_channels WHERE chat_key = ? ORDER BY created_at, channel_id",
            (chat_key,),
        )
        return [row["channel_id"] for row in rows]

    async def allow(self, chat_key: str, channel_id: str) -> None:
        await self._db.execute(
            "INSERT INTO allowed_channels (chat_key, channel_id, created_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            (chat_key, channel_id, self._clock()),
        )

    async def defaults(self, chat_key: str) -> dict[str, str]:
        rows = await self._db.fetchall("SELECT name, value FROM chat_defaults WHERE chat_key = ?", (chat_key,))
        return {row["name"]: row["value"] for row in rows}

    async def set_default(self, chat_key: str, name: str, value: str | None, by: str) -> None:
        if value is None:
            await self._db.execute("DELETE FROM chat_defaults WHERE chat_key = ? AND name = ?", (chat_key, name))
            return
        await self._db.execute(
            "INSERT INTO chat_defaults (chat_key, name, value, updated_by, updated_at) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (chat_key, name) DO UPDATE SET value = excluded.value, updated_by = excluded.updated_by, "
            "updated_at = excluded.updated_at",
            (chat_key, name, value, by, self._clock()),
        )

    async def remove(self, chat_key: str, channel_id: str) -> None:
        await self._db.execute(
            "DELETE FROM allowed_channels WHERE chat_key = ? AND channel_id = ?", (chat_key, channel_id)
        )

    async def clear(self, chat_key: str) -> None:
        await self._db.execute("DELETE FROM allowed_channels WHERE chat_key = ?", (chat_key,))


class PortableInbox:
    def __init__(self, db: Statements) -> None:
        self._db = db

    async def receive(
        self, platform: str, event_id: int, payload: str, now: float, *, worker: str | None = None,
        until: float | None = None,
    ) -> bool:  # fmt: skip
        row = await self._db.fetchone(
            "INSERT INTO inbox (platform, event_id, payload, received_at, worker, held_until) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING RETURNING event_id",
            (platform, event_id, payload, now, worker, until),
        )
        return row is not None

    async def renew(self, worker: str, until: float) -> None:
        await self._db.execute(
            "UPDATE inbox SET held_until = ? WHERE worker = ? AND handled_at IS NULL", (until, worker)
        )

    async def done(self, platform: str, event_id: int, now: float) -> None:
        await self._db.execute(
            "UPDATE inbox SET handled_at = ?, payload = '' WHERE platform = ? AND event_id = ?",
            (now, platform, event_id),
        )

    async def forget_handled_before(self, when: float) -> None:
        await self._db.execute("DELETE FROM inbox WHERE handled_at < ?", (when,))

    async def take_over(
        self, platform: str, *, now: float, since: float, max_attempts: int, worker: str | None = None,
        until: float | None = None,
    ) -> tuple[list[int], list[HeldEvent]]:  # fmt: skip
        async with self._db.transaction():
            dropped = await self._db.fetchall(
                "DELETE FROM inbox WHERE platform = ? AND (received_at < ? OR (handled_at IS NULL AND attempts >= ?)) "
                "RETURNING event_id, handled_at",
                (platform, since, max_attempts),
            )
            rows = await self._db.fetchall(
                "UPDATE inbox SET attempts = attempts + 1, worker = ?, held_until = ? WHERE platform = ? "
                "AND handled_at IS NULL AND (held_until IS NULL OR held_until < ?) "
                "RETURNING event_id, payload, received_at",
                (worker, until, platform, now),
            )
        unhandled = sorted(r["event_id"] for r in dropped if r["handled_at"] is None)
        held = sorted(
            (HeldEvent(r["event_id"], r["payload"], r["received_at"]) for r in rows), key=lambda e: e.event_id
        )
        return unhandled, held

    async def unhandled(self, platform: str) -> int:
        row = await self._db.fetchone(
            "SELECT count(*) AS n FROM inbox WHERE platform = ? AND handled_at IS NULL", (platform,)
        )
        return int(row["n"]) if row else 0


class PortableModeration:
    """The block list's rules and the prompts it refused."""

    def __init__(self, db: Statements, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._clock = clock

    async def add_rule(self, kind: str, pattern: str, added_by: str, level: str = "all") -> tuple[Rule, bool]:
        row = await self._db.fetchone(
            "INSERT INTO block_rules (kind, pattern, added_by, created_at, level) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (kind, pattern) DO NOTHING RETURNING *",
            (kind, pattern, added_by, self._clock(), level),
        )
        if row is not None:
            return _rule(row), True
        existing = await self._db.fetchone("SELECT * FROM block_rules WHERE kind = ? AND pattern = ?", (kind, pattern))
        return _rule(existing), False

    async def remove_rule(self, rule_id: int) -> Rule | None:
        if not possible_id(rule_id):
            return None
        row = await self._db.fetchone("DELETE FROM block_rules WHERE id = ? RETURNING *", (rule_id,))
        return None if row is None else _rule(row)

    async def rules(self) -> list[Rule]:
        return [_rule(row) for row in await self._db.fetchall("SELECT * FROM block_rules ORDER BY id")]

    async def record_refusal(self, user_key: str, chat_key: str, rule: Rule, field: str, day: str) -> None:
        await self._db.execute(
            "INSERT INTO refusals (user_key, chat_key, rule_id, pattern, field, quota_day, at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (user_key, chat_key, rule.id, rule.pattern, field, day, self._clock()),
        )

    async def refusals(self, limit: int) -> list[Refusal]:
        rows = await self._db.fetchall(
            "SELECT r.*, b.id AS current FROM refusals AS r LEFT JOIN block_rules AS b ON b.id = r.rule_id "
            "ORDER BY r.id DESC LIMIT ?",
            (limit,),
        )
        return [
            Refusal(row["user_key"], row["chat_key"], row["current"], row["pattern"], row["field"], row["at"])
            for row in rows
        ]

    async def refused_on(self, day: str, chat_key: str | None = None) -> int:
        row = await self._db.fetchone(
            "SELECT count(*) AS n FROM refusals WHERE quota_day = ? AND (CAST(? AS TEXT) IS NULL OR chat_key = ?)",
            (day, chat_key, chat_key),
        )
        return int(row["n"]) if row is not None else 0

    async def prune_refusals_before(self, day: str) -> int:
        rows = await self._db.fetchall("DELETE FROM refusals WHERE quota_day < ? RETURNING id", (day,))
        return len(rows)


def _rule(row: Any) -> Rule:
    return Rule(int(row["id"]), row["kind"], row["pattern"], row["added_by"], float(row["created_at"]), row["level"])
