"""The shared queue on PostgreSQL: job claims per second (1 and 3 processes, a short and a long queue), and the
time another process takes to run the jobs of one that died.

    python -m bench.claims [--jobs 6000] [--lease 3]

Claims: a fresh database holds ``--jobs`` queued jobs of 500 users; each process claims with 8 workers at once
through :class:`bot.storage.postgres.queue.PostgresQueue` (``sdbot_claim``: round-robin, the global cap, a
lease) and finishes each job at once (fenced by its attempt), until none is left. Every job must be claimed
exactly once (checked). The same with ten times fewer jobs shows whether a claim costs more as the queue grows.

Takeover: a "process" claims 6 jobs and dies (stops renewing, as after SIGKILL); a real Core on the same
database (the shared scheduler, its heartbeat every third of a lease) runs them. The figure is the time from
the dead process's last renewal to the last of its jobs starting elsewhere: at most a lease and a heartbeat
(4/3 of ``--lease``); the default lease of 30 s scales it to 40 s at most.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.support import Figure, print_figures
from tests.postgres_support import PostgresServer

ROOT = Path(__file__).resolve().parent.parent
USERS = 500
WORKERS = 8

CHILD = """
import asyncio, json, sys, time
from bot.storage.postgres import PostgresStorage

async def main(dsn, name):
    storage = await PostgresStorage.open(dsn)
    claimed = 0
    async def worker(n):
        nonlocal claimed
        while (job := await storage.queue.claim_next(f"{name}-{n}", ["telegram"], 1_000_000, 30.0)) is not None:
            assert await storage.jobs.finish(job.id, delivered=1, charged=1, attempt=job.attempts)
            claimed += 1
    began = time.perf_counter()
    await asyncio.gather(*(worker(n) for n in range(WORKERS)))
    print(json.dumps({"claimed": claimed, "seconds": time.perf_counter() - began}))
    await storage.close()

asyncio.run(main(sys.argv[1], sys.argv[2]))
""".replace("WORKERS", str(WORKERS))


async def fill(dsn: str, jobs: int) -> None:
    """``jobs`` queued jobs, as admissions would leave them (the triggers keep each user's turn)."""
    import asyncpg

    from bot.draw.request import DrawRequest
    from bot.storage.postgres import PostgresStorage

    await (await PostgresStorage.open(dsn)).close()
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "INSERT INTO jobs (user_key, platform, chat_key, group_chat, backend, request, route, lang, status, "
            "images, charged, quota_day, seed, created_at) "
            "SELECT 'telegram:' || (n % $2), 'telegram', 'telegram:' || (n % $2), 0, 'placeholder', $3, '{}', "
            "'en', 'queued', 1, 1, '2027-01-15', n, extract(epoch from now()) FROM generate_series(1, $1) AS n",
            jobs,
            USERS,
            DrawRequest("a cat").to_json(),
        )
    finally:
        await conn.close()


async def claims(server: PostgresServer, processes: int, jobs: int) -> tuple[float, bool]:
    """Claims per second over all processes, and whether every job was claimed exactly once."""
    import asyncpg

    dsn = await server.new_database()
    await fill(dsn, jobs)
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", CHILD, dsn, f"p{n}", cwd=ROOT, stdout=asyncio.subprocess.PIPE
        )
        for n in range(processes)
    ]
    began = time.perf_counter()
    results = [json.loads((await child.communicate())[0]) for child in children]
    seconds = time.perf_counter() - began
    conn = await asyncpg.connect(dsn)
    try:
        once = await conn.fetchval("SELECT count(*) FROM jobs WHERE status = 'done' AND attempts = 1") == jobs
    finally:
        await conn.close()
    total = sum(r["claimed"] for r in results)
    return total / min(seconds, max(r["seconds"] for r in results)), once and total == jobs


async def takeover(server: PostgresServer, lease: float) -> float:
    """Seconds from a dead process's last renewal to its last job starting in another process."""
    from bot.chats.refs import ChatRef, UserRef
    from bot.storage.postgres import PostgresStorage
    from tests.pipeline_support import GatedBackend, open_core

    dsn = await server.new_database()
    dead = await PostgresStorage.open(dsn)
    backend = GatedBackend()
    try:
        async with open_core(dsn, backend, platforms=("telegram",), job_lease=lease, backend_concurrency=6,  # type: ignore[arg-type]
                             daily_images=0, max_pending=10, rate_per_minute=0) as (core, _):  # fmt: skip
            assert core.storage.queue is not None
            stopped = core.scheduler.stop()  # the live process claims nothing until the other one holds its jobs
            await stopped
            for n in range(6):
                await core.submit(UserRef("telegram", str(n)), ChatRef("telegram", str(n), False), "/draw a cat", {})
            assert dead.queue is not None
            held = [await dead.queue.claim_next("dead", ["telegram"], 6, lease) for _ in range(6)]
            assert all(held)
            died = time.monotonic()  # its last renewal: the leases end ``lease`` seconds after this
            core.scheduler.start()
            await backend.wait_started(6)
            return time.monotonic() - died
    finally:
        await dead.close()


def figures(jobs: int, lease: float) -> list[Figure]:
    server = PostgresServer().start()
    try:
        rows = []
        for processes, count in ((1, jobs // 10), (1, jobs), (3, jobs)):
            rate, once = asyncio.run(claims(server, processes, count))
            label = f"shared queue claims, {processes} process(es), {count:,} queued (claims/s)"
            rows.append(Figure(label, f"{rate:,.0f}", "-", "-", "every job claimed once", once))
        seconds = asyncio.run(takeover(server, lease))
        label = f"a dead process's jobs running elsewhere, lease {lease:g} s (seconds)"
        goal, met = f"<= {lease * 4 / 3:.1f} s (lease + heartbeat)", seconds <= lease * 4 / 3 + 0.5
        rows.append(Figure(label, f"{seconds:.2f}", "-", "-", goal, met))
        return rows
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=6000, help="queued jobs to claim (default 6000)")
    parser.add_argument("--lease", type=float, default=3.0, help="SDBOT_JOB_LEASE for the takeover (default 3)")
    args = parser.parse_args(argv)
    rows = figures(args.jobs, args.lease)
    print_figures(rows)
    return 0 if all(f.met is not False for f in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
