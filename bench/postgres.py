"""Exact admissions per second on PostgreSQL, from one process and from three sharing the database.

    python -m bench.postgres [--decisions 20000] [--inflight 32]

A throwaway PostgreSQL server (tests/postgres_support.py: fsync off, as a benchmark of the bot and not of a
disk) and, for each case, a fresh database. Each process makes its share of ``--decisions`` admissions through
:class:`bot.storage.postgres.PostgresStorage` (per-chat then per-user locks in each admission's transaction),
``--inflight`` at once, for 500 users in one group chat against a daily limit of 20 images each: about half
are refused, and exactly 20 per user are admitted whatever the number of processes (checked). Goal (issue 25):
at least 2,000 decisions/s.
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
GOAL = 2000.0
USERS = 500
DAILY = 20

CHILD = """
import asyncio, json, random, sys, time
from bot.chats.refs import ChatRef, UserRef
from bot.draw.request import DrawRequest
from bot.quotas.rules import Admission, Limits
from bot.storage.postgres import PostgresStorage

async def main(dsn, count, inflight, seed, users, daily):
    storage = await PostgresStorage.open(dsn)
    limits = Limits(daily_images=daily, rate_per_minute=0, max_pending=1_000_000, chat_daily_images=0)
    rng = random.Random(seed)
    plan = [rng.randrange(users) for _ in range(count)]
    chat, request = ChatRef("telegram", "-100", True), DrawRequest("a cat", n=1)
    admitted = 0
    async def client():
        nonlocal admitted
        while plan:
            a = Admission(UserRef("telegram", str(plan.pop())), chat, request, {}, "placeholder", "en", 1, False)
            if await storage.jobs.admit(a, limits, "2027-01-15", time.time()) is not None:
                admitted += 1
    began = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(inflight)))
    seconds = time.perf_counter() - began
    await storage.close()
    print(json.dumps({"admitted": admitted, "seconds": seconds}))

asyncio.run(main(sys.argv[1], *map(int, sys.argv[2:])))
"""


async def run(server: PostgresServer, processes: int, decisions: int, inflight: int) -> tuple[float, int, int]:
    """Decisions per second over all processes, jobs admitted, and the most any user was admitted."""
    dsn = await server.new_database()
    from bot.storage.postgres import PostgresStorage

    await (await PostgresStorage.open(dsn)).close()  # the schema first: migrations are not what is measured
    share = decisions // processes
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CHILD,
            dsn,
            str(share),
            str(inflight),
            str(seed),
            str(USERS),
            str(DAILY),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
        )
        for seed in range(processes)
    ]
    began = time.perf_counter()
    results = [json.loads((await child.communicate())[0]) for child in children]
    seconds = time.perf_counter() - began
    import asyncpg

    conn = await asyncpg.connect(dsn)
    try:
        most = await conn.fetchval("SELECT coalesce(max(images), 0) FROM usage WHERE scope = 'user'")
    finally:
        await conn.close()
    slowest = max(r["seconds"] for r in results)
    return share * processes / min(seconds, slowest), sum(r["admitted"] for r in results), int(most)


def figures(decisions: int, inflight: int) -> list[Figure]:
    server = PostgresServer().start()
    try:
        rows = []
        for processes in (1, 3):
            rate, admitted, most = asyncio.run(run(server, processes, decisions, inflight))
            exact = most <= DAILY
            rows.append(
                Figure(
                    f"postgresql admissions, {processes} process(es) (decisions/s)",
                    f"{rate:,.0f} ({admitted:,} admitted, at most {most} per user)",
                    "-",
                    "-",
                    f">= {GOAL:,.0f}/s, exact",
                    rate >= GOAL and exact,
                )
            )
        return rows
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decisions", type=int, default=20000, help="admissions in all (default 20000)")
    parser.add_argument("--inflight", type=int, default=32, help="admissions at once per process (default 32)")
    args = parser.parse_args(argv)
    rows = figures(args.decisions, args.inflight)
    print_figures(rows)
    return 0 if all(f.met is not False for f in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
