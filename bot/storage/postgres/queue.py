"""The queue every process shares: jobs claimed under leases, in round-robin order, with their places."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

from bot.jobs.job import Job
from bot.storage.portable import job_from_row
from bot.storage.postgres.database import PostgresDatabase
from bot.storage.postgres.link import PostgresLink

# One claim at a time (a transaction-scoped advisory lock), so that the count of generations running, checked
# first, is still true when the claim commits: SDBOT_BACKEND_CONCURRENCY holds across processes. The job itself
# is locked FOR UPDATE SKIP LOCKED, so a /cancel in flight is passed over rather than waited for.
CLAIM_FUNCTION = """
    CREATE OR REPLACE FUNCTION sdbot_claim(p_worker text, p_platforms text[], p_cap bigint, p_now float8,
                                           p_lease float8)
    RETURNS SETOF jobs LANGUAGE plpgsql AS $fn$
    DECLARE
        picked jobs;
    BEGIN
        PERFORM pg_advisory_xact_lock(3, 0);
        IF (SELECT count(*) FROM jobs WHERE status = 'running' AND delivering_at IS NULL
                AND lease_until > p_now) >= p_cap THEN
            RETURN;
        END IF;
        SELECT j.* INTO picked FROM turns AS t CROSS JOIN LATERAL (
            SELECT * FROM jobs WHERE user_key = t.user_key AND status = 'queued' ORDER BY id LIMIT 1
            FOR UPDATE SKIP LOCKED
        ) AS j
        WHERE t.waiting > 0 AND t.platform = ANY(p_platforms)
        ORDER BY t.served LIMIT 1;
        IF picked.id IS NULL THEN
            RETURN;
        END IF;
        UPDATE turns SET served = nextval('turns_served') WHERE user_key = picked.user_key;
        RETURN QUERY UPDATE jobs SET status = 'running', attempts = attempts + 1, started_at = p_now,
            delivering_at = NULL, lease_until = p_now + p_lease, worker = p_worker
            WHERE id = picked.id RETURNING *;
    END
    $fn$
"""
# A flood limit every process shares: ``rate`` requests a second, ``burst`` of them at once. Each call reserves the
# next slot and answers how long to wait for it (0: go now), so callers sleep once and never ask twice.
PACE_FUNCTION = """
    CREATE OR REPLACE FUNCTION sdbot_pace(p_key text, p_rate float8, p_burst float8, p_now float8)
    RETURNS float8 LANGUAGE plpgsql AS $fn$
    DECLARE
        slot float8;
    BEGIN
        INSERT INTO paces VALUES (p_key, p_now) ON CONFLICT (key) DO NOTHING;
        SELECT GREATEST(due, p_now - p_burst / p_rate) INTO slot FROM paces WHERE key = p_key FOR UPDATE;
        UPDATE paces SET due = slot + 1 / p_rate WHERE key = p_key;
        RETURN GREATEST(0, slot + 1 / p_rate - p_burst / p_rate - p_now);
    END
    $fn$
"""
# The round-robin as a place for every queued job: a user's k-th queued job starts in round k, and within a
# round users go in the order of ``turns.served`` (what sdbot_claim picks next).
_PLACES = """
    SELECT id, row_number() OVER (ORDER BY k, served, id) AS place FROM (
        SELECT j.id, t.served, row_number() OVER (PARTITION BY j.user_key ORDER BY j.id) AS k
        FROM jobs AS j JOIN turns AS t ON t.user_key = j.user_key WHERE j.status = 'queued'
    ) AS q
"""
# Expired leases: the job goes back to the queue as it was (drawn again with its seed, as one process does at
# start), unless it must end (it ran out of attempts, or is too old), in which case the caller holds it (a new
# attempt, so a new fence) to fail it.
_REQUEUE = "attempts < $4::bigint AND ($5::float8 = 0 OR $1::float8 - created_at <= $5)"
_TAKE_EXPIRED = f"""
    UPDATE jobs SET
        status = CASE WHEN {_REQUEUE} THEN 'queued' ELSE 'running' END,
        started_at = CASE WHEN {_REQUEUE} THEN NULL ELSE started_at END,
        attempts = CASE WHEN {_REQUEUE} THEN attempts ELSE attempts + 1 END,
        lease_until = CASE WHEN {_REQUEUE} THEN NULL ELSE $1 + $2 END,
        worker = CASE WHEN {_REQUEUE} THEN NULL ELSE $3 END
    WHERE id IN (
        SELECT id FROM jobs WHERE status = 'running' AND coalesce(lease_until, 0) < $1 AND platform = ANY($6)
        ORDER BY id LIMIT 100 FOR UPDATE SKIP LOCKED
    )
    RETURNING *
"""


class PostgresQueue:
    """:class:`bot.storage.port.QueueRecords`: the statements of :class:`bot.jobs.shared.SharedScheduler`."""

    def __init__(self, db: PostgresDatabase, link: PostgresLink, clock: Callable[[], float] = time.time) -> None:
        self._db = db
        self._link = link
        self._clock = clock

    async def listen(self, channel: str, callback: Callable[[str], None]) -> None:
        await self._link.listen(channel, callback)

    async def refresh(self) -> bool:
        return await self._link.refresh()

    async def try_lock(self, name: str) -> bool:
        return await self._link.try_lock(name)

    async def release(self, worker: str) -> None:
        # Expired rather than queued: the next take-over applies its rules (a job cut off while it was being
        # delivered is failed, not drawn again), in this process's successor or in any other.
        await self._db.execute("UPDATE jobs SET lease_until = 0 WHERE worker = $1 AND status = 'running'", (worker,))

    async def pace(self, key: str, rate: float, burst: float) -> float:
        row = await self._db.fetchone("SELECT sdbot_pace($1, $2, $3, $4) AS wait", (key, rate, burst, self._clock()))
        return float(row["wait"]) if row else 0.0

    async def claim_next(self, worker: str, platforms: Sequence[str], cap: int, lease: float) -> Job | None:
        row = await self._db.fetchone(
            "SELECT * FROM sdbot_claim($1, $2, $3, $4, $5)", (worker, list(platforms), cap, self._clock(), lease)
        )
        return job_from_row(row) if row else None

    async def renew(self, worker: str, held: Mapping[int, int], lease: float) -> set[int]:
        now = self._clock()
        rows = await self._db.fetchall(
            "UPDATE jobs AS j SET lease_until = $1 FROM unnest($2::bigint[], $3::bigint[]) AS h(id, attempt) "
            "WHERE j.id = h.id AND j.attempts = h.attempt AND j.status = 'running' AND j.worker = $4 "
            "AND j.lease_until > $5 RETURNING j.id",
            (now + lease, list(held), list(held.values()), worker, now),
        )
        return {int(row["id"]) for row in rows}

    async def take_expired(
        self, worker: str, platforms: Sequence[str], lease: float, *, max_attempts: int, max_age: float
    ) -> list[Job]:
        rows = await self._db.fetchall(
            _TAKE_EXPIRED, (self._clock(), lease, worker, max_attempts, max_age, list(platforms))
        )
        return sorted((job_from_row(row) for row in rows), key=lambda job: job.id)

    async def places(self, limit: int | None = None) -> list[tuple[int, int]]:
        rows = await self._db.fetchall(f"{_PLACES} ORDER BY place LIMIT $1", (limit,))
        return [(int(row["id"]), int(row["place"])) for row in rows]

    async def place(self, job_id: int) -> int | None:
        row = await self._db.fetchone(f"SELECT place FROM ({_PLACES}) AS p WHERE id = $1", (job_id,))
        return int(row["place"]) if row else None

    async def unfinished(self, platforms: Sequence[str]) -> int:
        row = await self._db.fetchone(
            "SELECT count(*) FROM jobs WHERE status IN ('queued', 'running') AND platform = ANY($1)",
            (list(platforms),),
        )
        return int(row[0]) if row else 0
